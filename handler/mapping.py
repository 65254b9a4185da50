"""Map stage: each KCQL statement compiled once into the function from a decoded record to its line.

``Plan(statements, decoder)`` resolves every path, name, unit and rule of every statement up
front, so mapping a record is a few dict look-ups and calls: no string dispatch on paths, no
parsing per record. How each value is written (field values, tag values, names, times) is
``handler.lineproto``'s; this module decides which values a record's line holds.

A record that cannot be mapped raises ``RecordError`` with the reason (the caller adds the
record's coordinates). When a record has several problems, the one named is always the same:
first what the KCQL rules refuse — fields in selection order, a point without fields, tags by
name, WITHTARGET, the timestamp — for every statement of the topic, and only then what line
protocol cannot carry — the measurement, tags by name, field keys in field order. So a record
is refused for its content before it is refused for a name the content happens to produce.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from handler.decode import Decoder
from handler.errors import FailureKind, RecordError
from handler.lineproto import (
    Other,
    Point,
    PutFields,
    datetime_ms,
    escape_measurement,
    field_key_eq,
    field_writer,
    shown,
    tag_pair,
    tag_text,
    timestamp_reader,
    unique_fields,
)
from handler.records import MISSING, KafkaRecord
from kcql import ConstantTag, KcqlError, Path, SelectField, Source, Statement, TimeUnit

log = logging.getLogger(__name__)

__all__ = ["MISSING", "CompiledStatement", "Context", "Plan", "Point", "Stats", "describe_compiled"]

# Per statement: distinct field names (and tag values per tag) whose escaped text is kept.
_KEY_CACHE_LIMIT = 10_000
_NO_FIELDS = "the point has no fields (InfluxDB cannot store a point without fields)"


def _nested_too_deeply() -> RecordError:
    """A decoded value whose objects or arrays nest past the recursion limit while flattened."""
    import sys

    return RecordError(f"the value is nested too deeply (about {sys.getrecursionlimit()} levels or more) to be "
                       "flattened into fields", FailureKind.MAPPING)


class Context:
    """One record being mapped: its decoded parts, decoded at most once and only if used."""

    __slots__ = ("_headers", "_key", "decoder", "record", "stats", "value")

    def __init__(self, record: KafkaRecord, value: Any, decoder: Decoder, stats: Stats) -> None:
        self.record = record
        self.value = value
        self._key: Any = MISSING
        self._headers: dict[str, Any] | None = None
        self.decoder = decoder
        self.stats = stats

    @property
    def key(self) -> Any:
        if self._key is MISSING:
            self._key = self.decoder.key(self.record)
        return self._key

    def header(self, name: str) -> Any:
        """One header as text (MISSING when absent, None when null), decoded once per record."""
        cache = self._headers
        if cache is None:
            cache = self._headers = {}
        value = cache.get(name, MISSING)
        if value is MISSING:
            value = cache[name] = self.record.header(name)
        return value


class Stats:
    """Counters of what mapping left out on purpose (reported as metrics)."""

    __slots__ = ("non_finite", "tombstones")

    def __init__(self) -> None:
        self.non_finite = 0
        self.tombstones = 0


Getter = Callable[[Context], Any]


def _dig(value: Any, segments: tuple[str, ...]) -> Any:
    for seg in segments:
        if type(value) is dict:
            value = value.get(seg, MISSING)
            if value is MISSING:
                return MISSING
        elif value is None:
            return None
        else:
            return MISSING
    return value


def compile_getter(path: Path) -> Getter:
    """A function that reads ``path`` from a Context: MISSING when absent, None when null."""
    segs = path.segments
    src = path.source
    if src is Source.VALUE:
        if not segs:
            return lambda ctx: ctx.value
        if len(segs) == 1:
            (seg,) = segs
            return lambda ctx: ctx.value.get(seg, MISSING) if type(ctx.value) is dict else MISSING
        return lambda ctx: _dig(ctx.value, segs)
    if src is Source.KEY:
        return (lambda ctx: ctx.key) if not segs else (lambda ctx: _dig(ctx.key, segs))
    if src is Source.HEADER:
        name = segs[0]
        return lambda ctx: ctx.header(name)
    if src is Source.TOPIC:
        return lambda ctx: ctx.record.topic
    if src is Source.PARTITION:
        return lambda ctx: ctx.record.partition
    if src is Source.OFFSET:
        return lambda ctx: ctx.record.offset
    if src is Source.TIMESTAMP:
        return lambda ctx: ctx.record.timestamp
    raise KcqlError(f"unknown path source {src}")  # pragma: no cover - exhaustive above


def _top_level(path: Path | None) -> str | None:
    """The name when ``path`` is one name at the top of the value: read from the value itself,
    without a Context."""
    if path is not None and path.source is Source.VALUE and len(path.segments) == 1:
        return path.segments[0]
    return None


_last_sys_ns = [0]


def sys_time_ns() -> int:
    """Processing time in nanoseconds, strictly increasing within the process (across every
    statement), so two points of one batch never share a time and overwrite each other."""
    t = time.time_ns()
    last = _last_sys_ns[0]
    if t <= last:
        t = last + 1
    _last_sys_ns[0] = t
    return t


# ---------------------------------------------------------------- field names and values


class _FieldKeys:
    """The escaped ``key=`` texts of the field names one part of a statement meets, learnt once
    each: a name's look-up also says whether the statement leaves it out ("")."""

    __slots__ = ("known", "skip", "state")

    def __init__(self, state: _StatementState, skip: frozenset[str] = frozenset()) -> None:
        self.known: dict[str, str] = {}
        self.skip = skip
        self.state = state

    def learn(self, name: str) -> str:
        if name in self.skip:
            text = ""
        elif name == "time":
            self.state.drop_time_field()
            text = ""
        else:
            try:
                text = field_key_eq(name)
            except RecordError as err:
                # The field still counts (a point with it has fields) and stands in the line as a
                # numbered placeholder; the record fails once every KCQL rule has been applied, so
                # its content is judged first. Not cached: each record learns it again.
                return self.state.placeholder(name, err)
        if len(self.known) >= _KEY_CACHE_LIMIT:
            self.known.clear()
        self.known[name] = text
        return text


class _StatementState:
    """Per-statement mutable bits: the warn-once flag, the field names that cannot be carried,
    and ``unusual``: what the current record did that its line must be checked for (a value
    flattened, so a field name may repeat; a name that cannot be carried). Empty for most
    records, so one test of it per record is all they pay."""

    __slots__ = ("statement", "unencodable", "unencodable_errors", "unusual", "warned_time")

    def __init__(self, statement: Statement) -> None:
        self.statement = statement
        self.warned_time = False
        self.unencodable: dict[str, int] = {}
        self.unencodable_errors: list[RecordError] = []
        self.unusual: list[str] = []

    def placeholder(self, name: str, err: RecordError) -> str:
        """``key=`` text standing for a name that cannot be carried: NUL (never in a written key)
        and the name's number, so equal names stay equal and different ones apart."""
        self.unusual.append("unencodable")
        n = self.unencodable.get(name)
        if n is None:
            n = self.unencodable[name] = len(self.unencodable_errors)
            self.unencodable_errors.append(err)
        return f"\x00{n}="

    def drop_time_field(self) -> None:
        if not self.warned_time:
            self.warned_time = True
            log.warning("a field named 'time' is left out: InfluxDB reserves it; select it with an "
                        "alias to keep it (statement: %s)", self.statement.text)

    def settle(self, out: list[str], may_repeat: bool) -> list[str] | RecordError:
        """A line's fields after an unusual record, or of a statement whose fields may name one
        field twice (``SELECT *, a``): each name once; or the error of the first field, in field
        order, whose name cannot be carried."""
        flattened, unencodable = "flattened" in self.unusual, "unencodable" in self.unusual
        self.unusual.clear()  # in place: the statement's line function holds this list
        if flattened or may_repeat:
            out = unique_fields(out)
        if unencodable:
            found = next((self.unencodable_errors[int(t[1:t.index("=")])] for t in out if t[0] == "\x00"), None)
            self.unencodable.clear()
            self.unencodable_errors.clear()
            if found is not None:
                return found
        return out


def _storable(name: str, value: Any) -> Any:
    """The field value InfluxDB stores for a rarer type (Avro decimals, dates and times, number
    subclasses); RecordError for what it cannot store."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, (float, Decimal)):
        try:
            return float(value)
        except (ValueError, OverflowError):  # a signalling NaN Decimal
            raise RecordError(f"field {name!r}: {shown(value)} is not a number InfluxDB can store") from None
    if isinstance(value, _dt.datetime):
        return datetime_ms(value)
    if isinstance(value, _dt.date):
        return (value - _dt.date(1970, 1, 1)).days * 86_400_000
    if isinstance(value, _dt.time):
        return ((value.hour * 60 + value.minute) * 60 + value.second) * 1000 + value.microsecond // 1000
    if isinstance(value, bytes | bytearray | memoryview):
        raise RecordError(f"field {name!r}: bytes cannot be written to InfluxDB")
    raise RecordError(f"field {name!r}: values of type {type(value).__name__} cannot be written")


def _nested(keys: _FieldKeys, state: _StatementState, stats: Stats) -> tuple[Other, PutFields]:
    """What a field that is not a plain bool/int/float/str becomes: an object flattens into
    ``a_b`` fields, an array into ``a0``, ``a1``…; a rarer type is converted, or refused. Also
    the field writer of the names that flattening makes."""

    def other(out: list[str], name: str, value: Any) -> None:
        if isinstance(value, dict):
            state.unusual.append("flattened")
            put(out, [(f"{name}_{k}", v) for k, v in value.items()])
        elif isinstance(value, list | tuple):
            state.unusual.append("flattened")
            put(out, [(f"{name}{i}", v) for i, v in enumerate(value)])
        else:
            put(out, ((name, _storable(name, value)),))

    put = field_writer(keys.known, keys.learn, other, stats)
    return other, put


# A part of a statement's SELECT: puts its fields into ``out``, from a Context when the
# statement needs one (else None) or from the decoded value.
FieldWriter = Callable[[Any, Any, list[str]], None]


def _wildcard_writer(field: SelectField, ignored: frozenset[tuple[str, ...]], state: _StatementState,
                     other: Other, put: PutFields, stats: Stats) -> tuple[FieldWriter, PutFields | None]:
    """``*``, ``a.*`` or ``_key.*``: every field below the path, minus IGNOREd paths (full paths).
    For ``*`` over the value, also the field writer that reads the value's fields directly."""
    base = compile_getter(field.path)
    root = field.path.segments
    on_value = field.path.source is Source.VALUE and not root
    # Paths relative to the wildcard's root that are ignored, and their proper prefixes.
    rel = {p[len(root):] for p in ignored if p[:len(root)] == root and len(p) > len(root)}
    top = frozenset(p[0] for p in rel if len(p) == 1)
    deep = frozenset(rel - {(n,) for n in top})
    prefixes = frozenset(p[:i] for p in deep for i in range(1, len(p)))
    what = field.path.text
    own = _FieldKeys(state, top)

    def put_filtered(out: list[str], name: str, rel_path: tuple[str, ...], value: Any) -> None:
        if rel_path in deep:
            return
        if type(value) is dict and rel_path in prefixes:
            for k, v in value.items():
                put_filtered(out, f"{name}_{k}", (*rel_path, k), v)
        else:
            put(out, ((name, value),))

    def other_top(out: list[str], name: str, value: Any) -> None:
        if type(value) is dict and (name,) in prefixes:
            state.unusual.append("flattened")
            put_filtered(out, name, (name,), value)
        else:
            other(out, name, value)

    put_top = field_writer(own.known, own.learn, other_top if prefixes else other, stats)

    def write(ctx: Any, value: Any, out: list[str]) -> None:
        if not on_value:
            value = base(ctx)
        if type(value) is dict:
            put_top(out, value.items())
        elif value is MISSING:
            raise RecordError(f"'{what}': there is no {'.'.join(root) or 'value'} in the record")
        elif value is not None:
            raise RecordError(f"'{what}' selects the fields of an object, but the "
                              f"{'.'.join(root) or 'payload'} is a {type(value).__name__}")

    return write, (put_top if on_value else None)


def _explicit_writer(fields: list[SelectField], put: PutFields) -> FieldWriter:
    """A run of named fields, in selection order; a missing one fails the record."""
    run = tuple((compile_getter(f.path), f.name, f.path.text) for f in fields)

    def write(ctx: Any, value: Any, out: list[str]) -> None:
        items: list[tuple[str, Any]] = []
        for get, name, text in run:
            v = get(ctx)
            if v is MISSING:
                put(out, items)  # the fields before it are judged first
                raise RecordError(f"selected field '{text}' is missing")
            items.append((name, v))
        put(out, items)

    return write


# ---------------------------------------------------------------- tags


class _Tag:
    """One tag of a statement, in key order: a constant (its ``,k=v`` text, or why it cannot be
    written) or a path, whose pairs are kept per value."""

    __slots__ = ("const", "const_error", "get", "name", "pairs", "path_text", "top")

    def __init__(self, name: str, const: str | None, path: Path | None) -> None:
        self.name = name
        self.path_text = path.text if path is not None else ""
        self.const: str | None = None
        self.const_error: RecordError | None = None
        self.top = _top_level(path)
        self.get = compile_getter(path) if path is not None and self.top is None else None
        self.pairs: dict[str, str] = {}
        if const is not None:
            try:
                self.const = tag_pair(name, const)
            except RecordError as err:
                self.const_error = err

    def read(self, ctx: Context) -> str | RecordError | None:
        """``pair`` of the value at the tag's path (the key, a header: decoded on first use);
        for a constant, why it cannot be carried."""
        if self.get is None:
            return self.const_error
        try:
            v = self.get(ctx)
        except RecordError as err:
            raise RecordError(f"tag {self.name!r}: {err.reason}", err.kind) from None
        return self.pair(v)

    def pair(self, v: Any) -> str | RecordError | None:
        """``,k=v`` for the value read, None when the tag is left out, or the line-protocol
        error (returned: it is raised only after the record's KCQL rules)."""
        if type(v) is str:
            found = self.pairs.get(v)
            if found is not None:
                return found
            if not v:
                return None
            text = v
        else:
            try:
                tv = tag_text(v)
            except RecordError as err:
                raise RecordError(f"tag {self.name!r}: {err.reason}", err.kind) from None
            if tv is None:
                return None
            text = tv
        try:
            found = tag_pair(self.name, text)
        except RecordError as err:
            return err
        if type(v) is str:
            if len(self.pairs) >= _KEY_CACHE_LIMIT:
                self.pairs.clear()
            self.pairs[v] = found
        return found


# ---------------------------------------------------------------- statements

# (the record's Context, when the statement reads more than the value's top level; the decoded
# value) → the line, or the line-protocol error to raise once every statement of the topic has
# applied its KCQL rules to the record.
LineFn = Callable[["Context | None", Any], "str | RecordError"]


class CompiledStatement:
    """One KCQL statement compiled: ``line(ctx, value)`` is its line for a decoded record (``ctx``
    may be None unless ``needs_ctx``)."""

    def __init__(self, statement: Statement, stats: Stats) -> None:
        self.statement = statement
        state = self.state = _StatementState(statement)
        nested_keys = _FieldKeys(state)
        other, put = _nested(nested_keys, state, stats)
        ignored_value = frozenset(p.segments for p in statement.ignores if p.source is Source.VALUE)
        ignored_key = frozenset(p.segments for p in statement.ignores if p.source is Source.KEY)
        # `SELECT *, name AS who`: an aliased path leaves what * selects (from the value or the key).
        aliased = {src: frozenset(f.path.segments for f in statement.fields
                                  if not f.wildcard and f.alias is not None and f.path.source is src)
                   for src in (Source.VALUE, Source.KEY)}
        writers: list[FieldWriter] = []
        run: list[SelectField] = []
        star_direct: PutFields | None = None
        needs_ctx = False
        for f in statement.fields:
            if not f.wildcard:
                if f.name == "time":
                    state.drop_time_field()
                else:
                    run.append(f)
                    needs_ctx = True
                continue
            if run:
                writers.append(_explicit_writer(run, put))
                run = []
            # A bare IGNORE name also applies to `_key.*` (`SELECT _key.* ... IGNORE index`).
            ign = (ignored_value | aliased[Source.VALUE] if f.path.source is Source.VALUE
                   else ignored_key | ignored_value | aliased[Source.KEY])
            write, star_direct = _wildcard_writer(f, ign, state, other, put, stats)
            writers.append(write)
            needs_ctx = needs_ctx or f.path.source is not Source.VALUE or bool(f.path.segments)
        if run:
            writers.append(_explicit_writer(run, put))
        self.writers = tuple(writers)
        # `SELECT *` alone: the line function puts the value's fields itself.
        self.star = star_direct if len(writers) == 1 else None
        # Names that may repeat in a line even when nothing is flattened.
        explicit = [f.name for f in statement.fields if not f.wildcard]
        self.may_repeat = len(writers) > 1 or len(set(explicit)) < len(explicit)

        tags: dict[str, _Tag] = {}
        for tag in statement.tags:
            name = tag.name
            if name in tags:  # the parser refuses this; a Statement built in code may not
                raise KcqlError(f"tag {name!r} is given twice in: {statement.text}")
            if name == "time":
                log.warning("tag 'time' is left out: InfluxDB reserves it; use WITHTAG(path AS other) "
                            "(statement: %s)", statement.text)
                tags[name] = _Tag(name, None, None)  # holds the name, so a second 'time' is refused
                continue
            if isinstance(tag, ConstantTag):
                tags[name] = _Tag(name, tag.value or None, None)
            else:
                tags[name] = _Tag(name, None, tag.path)
                needs_ctx = needs_ctx or tags[name].get is not None
        # In key order, so lines come out with sorted tags without sorting per record.
        self.tags = tuple(t for n, t in sorted(tags.items())
                          if n != "time" and (t.const or t.const_error or t.top is not None or t.get is not None))
        self.measurement = statement.measurement
        self.target = compile_getter(statement.target) if statement.target else None
        needs_ctx = needs_ctx or self.target is not None
        ts = statement.timestamp
        self.ts_top = _top_level(ts)
        self.ts_get = compile_getter(ts) if ts is not None and self.ts_top is None else None
        needs_ctx = needs_ctx or self.ts_get is not None
        self.needs_ctx = needs_ctx
        self.line = self._compile()

    def _compile(self) -> LineFn:
        writers, state, tags, measurement, target = self.writers, self.state, self.tags, self.measurement, self.target
        single = writers[0] if len(writers) == 1 else None
        ts_top, ts_get, may_repeat = self.ts_top, self.ts_get, self.may_repeat
        statement = self.statement
        unit = statement.timestamp_unit
        # Integers count the unit (milliseconds without one); a float without one is epoch seconds.
        read_time = timestamp_reader(statement.timestamp.text if statement.timestamp else "",
                                     (unit or TimeUnit.MILLISECONDS).nanos, (unit or TimeUnit.SECONDS).nanos)
        static_tags = "".join(t.const for t in tags if t.const) if all(t.const for t in tags) else None
        static_head = ""
        static_late: RecordError | None = None  # a measurement that cannot be carried fails every record
        try:
            static_head = escape_measurement(measurement)
        except RecordError as err:
            static_late = err
        self.static_ok = static_late is None
        unusual = state.unusual
        # The tags as tuples, read without attribute look-ups: (the ``,k=v`` text of a constant,
        # the top-level name a tag reads from the value, the pairs known per value, the tag);
        # a tag with neither reads through a Context or is a constant that cannot be carried.
        steps = tuple((t.const, t.top, t.pairs, t) for t in tags)
        star = self.star

        def line(ctx: Context | None, value: Any) -> str | RecordError:
            obj = type(value) is dict
            out: list[str] = []
            if star is not None and obj:
                star(out, value.items())
            elif single is not None:
                single(ctx, value, out)
            else:
                for write in writers:
                    write(ctx, value, out)
            if not out:
                raise RecordError(_NO_FIELDS)
            late = static_late if target is None else None  # the first name line protocol cannot carry
            if static_tags is not None:
                tags_text = static_tags
            else:
                tags_text = ""
                for const, top, pairs, tag in steps:
                    if const is not None:
                        tags_text += const
                        continue
                    if top is not None:
                        v = value.get(top, MISSING) if obj else MISSING
                        if type(v) is str:
                            pair = pairs.get(v)
                            if pair is not None:
                                tags_text += pair
                                continue
                        found = tag.pair(v)
                    else:
                        found = tag.read(ctx)  # type: ignore[arg-type]
                    if type(found) is str:
                        tags_text += found
                    elif found is not None:
                        late = late or found  # type: ignore[assignment]
            head = static_head
            if target is not None:
                named = target(ctx)  # type: ignore[arg-type]
                if named is MISSING or named is None:
                    late = static_late or late
                else:
                    try:
                        name = tag_text(named) or measurement
                    except RecordError as err:
                        raise RecordError(f"WITHTARGET: {err.reason}", err.kind) from None
                    try:
                        head = escape_measurement(name)
                    except RecordError as err:
                        late = err  # the measurement is named before the tags
            if ts_top is not None:
                ns = read_time(value.get(ts_top, MISSING) if obj else MISSING)
            elif ts_get is not None:
                ns = read_time(ts_get(ctx))  # type: ignore[arg-type]
            else:
                ns = sys_time_ns()
            if late is not None:
                return late
            if unusual or may_repeat:
                settled = state.settle(out, may_repeat)
                if type(settled) is not list:
                    return settled  # type: ignore[return-value]
                out = settled
            return f"{head}{tags_text} {','.join(out)} {ns}"

        return line

    def describe(self) -> list[str]:
        """What the statement compiled to: the template of its line, what each record's mapping
        reads, and what fails every record (for ``influx-sink kcql``)."""
        st = self.statement
        if st.target is not None:
            head = f"{{{st.target.text}, else {st.measurement}}}"
        elif self.static_ok:
            head = escape_measurement(st.measurement)
        else:
            head = f"{{{st.measurement!r}: cannot be written}}"
        tags = "".join(t.const if t.const else f",{t.name}={{{t.path_text}}}" for t in self.tags
                       if t.const_error is None)
        fields: list[str] = []
        for f in st.fields:
            if f.wildcard:
                below = f.path.text[:-2] if f.path.text.endswith(".*") else "the value"
                but = [p.text for p in st.ignores]
                fields.append(f"{{every field of {below}{' but ' + ', '.join(but) if but else ''}}}")
            elif f.name != "time":
                fields.append(f"{f.name}={{{f.path.text}}}")
        unit = st.timestamp_unit
        when = ("{processing time, ns}" if st.timestamp is None else
                f"{{{st.timestamp.text}: integers in {(unit or TimeUnit.MILLISECONDS).name.lower()}, "
                f"floats in {(unit or TimeUnit.SECONDS).name.lower()} → ns}}")
        out = [f"line: {head}{tags} {','.join(fields)} {when}"]
        out.append("reads: " + ("a Context (key, headers, nested paths or WITHTARGET; the key decoded once "
                                "per record)" if self.needs_ctx else "the decoded value's top level only"))
        if self.star is not None:
            out.append("fields: the value's own fields, each name's escaped text learnt once")
        failing = [t.const_error.reason for t in self.tags if t.const_error is not None]
        if not self.static_ok and st.target is None:
            failing.insert(0, "the measurement cannot be written")
        out += [f"fails every record: {reason}" for reason in failing]
        return out


def describe_compiled(statement: Statement) -> list[str]:
    """What a statement compiles to (see ``CompiledStatement.describe``)."""
    return CompiledStatement(statement, Stats()).describe()


class Plan:
    """All statements, grouped by topic: ``lines(record)`` maps one record."""

    def __init__(self, statements: tuple[Statement, ...], decoder: Decoder | None = None) -> None:
        self.statements = statements
        self.decoder = decoder or Decoder()
        self.stats = Stats()
        self.by_topic: dict[str, tuple[CompiledStatement, ...]] = {}
        for s in statements:
            self.by_topic[s.topic] = (*self.by_topic.get(s.topic, ()), CompiledStatement(s, self.stats))
        self._lines_by_topic: dict[str, Callable[[KafkaRecord], list[str]]] = {}
        # Every line is the same each time its record is mapped (every statement takes its time from
        # the record, not the clock): writing it again overwrites its point instead of adding one.
        self.repeatable = all(s.timestamp is not None for s in statements)

    def _statements(self, record: KafkaRecord) -> tuple[CompiledStatement, ...]:
        compiled = self.by_topic.get(record.topic)
        if compiled is None:
            raise RecordError(f"no KCQL statement reads topic {record.topic!r} (statements read: "
                              f"{', '.join(sorted(self.by_topic))})", FailureKind.CONFIG)
        return compiled

    def lines(self, record: KafkaRecord) -> list[str]:
        """The record's lines of line protocol, one per statement of its topic; [] for a tombstone."""
        fn = self._lines_by_topic.get(record.topic)
        if fn is None:
            fn = self._lines_by_topic[record.topic] = self._topic_lines(self._statements(record))
        return fn(record)

    def _topic_lines(self, compiled: tuple[CompiledStatement, ...]) -> Callable[[KafkaRecord], list[str]]:
        """``lines`` for one topic's statements, with what it needs bound once."""
        stats, decoder, decode = self.stats, self.decoder, self.decoder.value
        fns = tuple(c.line for c in compiled)
        needs_ctx = any(c.needs_ctx for c in compiled)  # one Context shared: the key decoded once

        if len(fns) == 1:
            (line_of,) = fns

            def one(record: KafkaRecord) -> list[str]:
                value = decode(record)
                if value is None:
                    stats.tombstones += 1
                    return []
                try:
                    line = line_of(Context(record, value, decoder, stats) if needs_ctx else None, value)
                except RecursionError:
                    raise _nested_too_deeply() from None
                if type(line) is str:
                    return [line]
                raise line  # type: ignore[misc]

            return one

        def several(record: KafkaRecord) -> list[str]:
            value = decode(record)
            if value is None:
                stats.tombstones += 1
                return []
            ctx = Context(record, value, decoder, stats) if needs_ctx else None
            try:
                lines = [f(ctx, value) for f in fns]  # every statement's rules before any line's
            except RecursionError:
                raise _nested_too_deeply() from None
            for line in lines:
                if type(line) is not str:
                    raise line  # type: ignore[misc]
            return lines  # type: ignore[return-value]

        return several
