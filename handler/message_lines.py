"""Lines written straight from a message of a known type (a Protobuf message on the decoder's
fast path), for the statements of its topic.

For a topic's compiled statements and a ``MessageType`` whose fields are all scalars, text or
enums, one function is generated and compiled once: it reads each field the statements use once,
by name, and builds each statement's line in one f-string, with no record shape (dict) in
between and no test of a value's type per field. It writes only what needs no decision: a float
that is not finite, text that needs escaping, an integer above int64, an enum number the schema
does not name, a tag value not met before that cannot be carried, a field or time that is not
there, a time InfluxDB cannot store — on any of these the function gives None and the record
takes the general path (its record shape through the compiled statements), which writes,
counts or refuses it as for any record. So a line from here is the general path's line for the
same record; the unit tests compare the two on random messages and statements.

A statement whose rules this does not cover (nested paths, the key or headers, WITHTARGET,
fields named twice, names line protocol cannot carry) leaves every record of its topic to the
general path. How each value is written is ``handler.lineproto``'s (``plain_value_code``,
``tag_pair`` through the statement's tags, the statement's time reader).
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from handler.errors import RecordError
from handler.lineproto import BOOL_TEXT, INT64_MAX, TEXT_ESCAPED, plain_value_code
from handler.message_shape import FieldKind, MessageType, ShapeField
from kcql import Source

if TYPE_CHECKING:
    from handler.mapping import CompiledStatement
    from handler.records import KafkaRecord

# (the record, its message) → one line per statement, or None: the general path decides.
MessageLines = Callable[["KafkaRecord", Any], "list[str] | None"]

_PLAIN_TYPE = {FieldKind.FLOAT: float, FieldKind.INT: int, FieldKind.UINT64: int, FieldKind.BOOL: bool,
               FieldKind.STR: str, FieldKind.ENUM: str}


def compile_lines(compiled: Sequence[CompiledStatement], mt: MessageType,
                  sys_time: Callable[[], int]) -> MessageLines | None:
    """The function writing the lines of ``compiled`` (a topic's statements, in order) from a
    message of type ``mt``; None when a statement or the type is not one it covers."""
    if mt.fields is None:
        return None
    source = _Source(mt, sys_time)
    names = []
    for c in compiled:
        name = source.statement(c)
        if name is None:
            return None
        names.append(name)
    return source.build(names)


def _literal(text: str) -> str:
    """``text`` as the literal part of an f-string (the names and constants are known at compile time)."""
    return text.replace("{", "{{").replace("}", "}}")


class _Source:
    """The generated function's text, its globals, and the fields it reads so far."""

    def __init__(self, mt: MessageType, sys_time: Callable[[], int]) -> None:
        self.mt = mt
        self.fields = {f.name: f for f in mt.fields or ()}
        self.env: dict[str, Any] = {"RecordError": RecordError, "BOOL_TEXT": BOOL_TEXT, "_sys": sys_time}
        self.body: list[str] = []
        self.built: list[str] = []  # the lines, built after every check of ``body``
        self.read: dict[str, str] = {}  # field name → the local holding its value
        self.set: dict[str, str] = {}  # presence field name → the local saying it is set
        self.checked: set[tuple[str, str]] = set()
        self.finite: list[str] = []  # floats written, checked all at once
        self.n = 0
        for f in self.fields.values():  # the converter refuses an unnamed enum number wherever it is
            if f.kind is FieldKind.ENUM:
                self.value(f)

    def name(self, prefix: str, value: Any = None) -> str:
        self.n += 1
        key = f"{prefix}{self.n}"
        if value is not None:
            self.env[key] = value
        return key

    def value(self, f: ShapeField) -> str:
        """The local holding ``f``'s value, read once (an enum: its name)."""
        var = self.read.get(f.name)
        if var is not None:
            return var
        attr = f"m.{f.name}" if f.name.isidentifier() and not keyword.iskeyword(f.name) else f"getattr(m, {f.name!r})"
        var = self.name("v")
        self.body.append(f"{var} = {attr}")
        if f.presence:
            has = self.name("h")
            test = f"m.HasField({f.name!r})" if f.truthy_default else f"{var} or m.HasField({f.name!r})"
            self.body.append(f"{has} = {test}")
            self.set[f.name] = has
        if f.kind is FieldKind.ENUM:
            table, number = self.name("_names", dict(f.names or {})), var
            var = self.name("e")
            self.body += [f"{var} = {table}.get({number})", f"if {var} is None: return None"]
        self.read[f.name] = var
        return var

    def check(self, f: ShapeField, var: str) -> None:
        """What a written field value must be for its plain text (else the general path)."""
        if (f.name, var) in self.checked:
            return
        self.checked.add((f.name, var))
        if f.kind is FieldKind.FLOAT:
            self.finite.append(var)
        elif f.kind is FieldKind.UINT64:
            self.body.append(f"if {var} > {INT64_MAX}: return None")
        elif f.kind is FieldKind.STR or (f.kind is FieldKind.ENUM and any(
                c in n for n in (f.names or {}).values() for c in TEXT_ESCAPED)):
            self.body.append(f"if {' or '.join(f'{c!r} in {var}' for c in TEXT_ESCAPED)}: return None")

    def statement(self, c: CompiledStatement) -> str | None:
        """Emit ``c``'s line into a local and name it; None when ``c`` is not covered."""
        if c.target is not None or c.may_repeat or not c.static_ok:
            return None
        fields = self._written(c)
        if not fields:
            return None  # none, or not covered: the general path writes or refuses each record
        tags = self._tags(c)
        when = self._time(c)
        if tags is None or when is None:
            return None
        pieces: list[str] = []  # each with its leading comma
        for f, key, optional in fields:
            var = self.value(f)
            self.check(f, var)
            text = f",{_literal(key)}{plain_value_code(_PLAIN_TYPE[f.kind], var)}"
            if optional:
                seg = self.name("s")
                self.body.append(f"{seg} = f{text!r} if {self.set[f.name]} else ''")
                pieces.append(f"{{{seg}}}")
            else:
                pieces.append(text)
        line = self.name("line")
        if fields[0][2]:  # the first field may be absent: the comma before the first one present goes
            body = self.name("b")
            self.body += [f"{body} = f{''.join(pieces)!r}", f"if not {body}: return None"]
            fields_text = f"{{{body}[1:]}}"
        else:
            fields_text = "".join(pieces)[1:]
        self.built.append(f"{line} = f{_literal(c.head) + tags + ' ' + fields_text + ' ' + when!r}")
        return line

    def _written(self, c: CompiledStatement) -> list[tuple[ShapeField, str, bool]] | None:
        """(field, its ``key=`` text, written only when set) of each field ``c`` writes, in order."""
        out: list[tuple[ShapeField, str, bool]] = []
        if c.star_keys is not None:
            for f in self.fields.values():
                key = c.star_keys.plain(f.name)
                if key is None:
                    if f.name != "time":
                        return None
                    c.state.drop_time_field()  # left out, as the general path leaves it (warned once)
                    continue
                if key:
                    out.append((f, key, f.presence))
            return out
        if c.top_fields is None:
            return None
        for name, top in c.top_fields:
            named = self.fields.get(top)
            key = c.field_keys.plain(name)
            if named is None or not key:
                return None  # missing from every message: every record fails on the general path
            self.value(named)
            if named.presence:
                self.body.append(f"if not {self.set[named.name]}: return None")  # "selected field ... is missing"
            out.append((named, key, False))
        return out

    def _tags(self, c: CompiledStatement) -> str | None:
        """The f-string text of ``c``'s tags (in key order), or None when one is not covered."""
        text = ""
        for t in c.tags:
            if t.const is not None:
                text += _literal(t.const)
                continue
            if t.top is None:  # a path below the top, the key, a header; or a constant that cannot be carried
                return None
            f = self.fields.get(t.top)
            if f is None:
                continue  # never in the message: the tag is left out, as for a missing value
            var = self.value(f)
            pair, tag = self.name("t"), self.name("_tag", t)
            lines = [f"{pair} = {tag}.pair({var})", f"if {pair} is None: {pair} = ''",
                     f"elif type({pair}) is not str: return None"]
            if f.kind in (FieldKind.STR, FieldKind.ENUM):  # the pairs the tag has met, first
                pairs = self.name("_pairs", t.pairs)
                lines = [f"{pair} = {pairs}.get({var})", f"if {pair} is None:"] + ["    " + x for x in lines]
            if f.presence:
                lines = [f"if {self.set[f.name]}:"] + ["    " + x for x in lines] + ["else:", f"    {pair} = ''"]
            self.body += lines
            text += f"{{{pair}}}"
        return text

    def _time(self, c: CompiledStatement) -> str | None:
        """The f-string text of ``c``'s time, or None when it is read from elsewhere."""
        ts = c.statement.timestamp
        ns = self.name("ns")
        if ts is None:
            self.body.append(f"{ns} = _sys()")
            return f"{{{ns}}}"
        read = self.name("_rt", c.read_time)
        if c.ts_top is not None:
            f = self.fields.get(c.ts_top)
            if f is None:
                return None  # missing from every message
            var = self.value(f)
            if f.presence:
                self.body.append(f"if not {self.set[f.name]}: return None")
            self.body.append(f"{ns} = {read}({var})")
        elif ts.source is Source.TIMESTAMP:
            self.body.append(f"{ns} = {read}(r.timestamp)")
        else:
            return None
        return f"{{{ns}}}"

    def build(self, lines: list[str]) -> MessageLines:
        body = list(self.body)
        if self.finite:  # inf - inf and nan - nan are nan, which no sum brings back to 0.0
            body.append(f"if {' + '.join(f'({v} - {v})' for v in self.finite)} != 0.0: return None")
        src = ["def lines(r, m):", "    try:"] + ["        " + x for x in body + self.built] + [
            f"        return [{', '.join(lines)}]", "    except RecordError:", "        return None"]
        code = "\n".join(src)
        exec(compile(code, f"<lines of {self.mt.name}>", "exec"), self.env)
        fn: MessageLines = self.env["lines"]
        fn.source = code  # type: ignore[attr-defined]  # for ``influx-sink kcql`` and the tests
        return fn
