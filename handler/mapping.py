"""Map stage: each KCQL statement compiled once into the function from a decoded record to its line.

``Plan(statements, decoder)`` resolves every path, name, unit and rule of every statement up
front, so mapping a record is a few dict look-ups and calls: no string dispatch on paths, no
parsing per record. How each value is written (field values, tag values, names, times) is
``handler.lineproto``'s; this module decides which values a record's line holds. A value that is
an array is a line per element (``_array_lines``); a line-protocol topic's statements write each
parsed line again (``LineProtocolStatement``).

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
from typing import TYPE_CHECKING, Any

from handler.decode import Decoder, PayloadKind
from handler.errors import ConfigError, FailureKind, RecordError
from handler.lineproto import (
    Other,
    ParsedLine,
    Point,
    PutFields,
    datetime_ms,
    escape_measurement,
    field_key_eq,
    field_writer,
    series_and_time,
    shown,
    tag_pair,
    tag_text,
    timestamp_reader,
    unique_fields,
)
from handler.records import MISSING, KafkaRecord, describe
from kcql import ConstantTag, KcqlError, Path, SelectField, Source, Statement, TimeUnit

if TYPE_CHECKING:
    from handler.message_lines import MessageLines

log = logging.getLogger(__name__)

__all__ = ["MISSING", "CompiledStatement", "Context", "Plan", "Point", "Route", "Stats", "describe_compiled",
           "statement_routes"]

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

    __slots__ = ("non_finite", "overwritten", "tombstones")

    def __init__(self) -> None:
        self.non_finite = 0
        self.tombstones = 0
        # Points of one record (array elements, lines of a line-protocol value) that share
        # measurement, tags and time with an earlier point of the same record: InfluxDB keeps
        # one point for them, the later field values winning.
        self.overwritten = 0


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

    def plain(self, name: str) -> str | None:
        """The ``key=`` text ``learn`` would give ``name``, "" for a name left out; None for what
        only ``learn`` handles (``time``, a name line protocol cannot carry). Changes nothing."""
        if name in self.skip:
            return ""
        if name == "time":
            return None
        try:
            return field_key_eq(name)
        except RecordError:
            return None

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
                     other: Other, put: PutFields, stats: Stats
                     ) -> tuple[FieldWriter, PutFields | None, _FieldKeys]:
    """``*``, ``a.*`` or ``_key.*``: every field below the path, minus IGNOREd paths (full paths).
    For ``*`` over the value, also the field writer that reads the value's fields directly; and
    the names of the fields right below the path, with what each is written as."""
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

    return write, (put_top if on_value else None), own


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
        star_keys: _FieldKeys | None = None
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
            write, star_direct, star_keys = _wildcard_writer(f, ign, state, other, put, stats)
            writers.append(write)
            needs_ctx = needs_ctx or f.path.source is not Source.VALUE or bool(f.path.segments)
        if run:
            writers.append(_explicit_writer(run, put))
        self.writers = tuple(writers)
        # `SELECT *` alone: the line function puts the value's fields itself.
        self.star = star_direct if len(writers) == 1 else None
        self.star_keys = star_keys if self.star is not None else None  # the names it meets, and their texts
        self.field_keys = nested_keys  # the texts of named fields (``SELECT a, b AS c``)
        # Named fields only, each one name at the value's top level: (its field name, that name).
        self.top_fields = (tuple((f.name, f.path.segments[0]) for f in run)
                           if run and not any(f.wildcard for f in statement.fields)
                           and all(f.path.source is Source.VALUE and len(f.path.segments) == 1 for f in run)
                           else None)
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
        self.head, self.read_time = static_head, read_time  # for lines written straight from a message
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
        if st.database is not None or st.retention_policy is not None:
            rp = f", retention policy {st.retention_policy}" if st.retention_policy is not None else ""
            out.append(f"writes to: {st.database or 'the settings database'}{rp}")
        return out


def describe_compiled(statement: Statement) -> list[str]:
    """What a statement compiles to (see ``CompiledStatement.describe``); ``INSERT INTO *`` is
    only for line-protocol topics, so it is described as one (``LineProtocolStatement.describe``)."""
    if statement.keep_measurement:
        try:
            return LineProtocolStatement(statement, Stats()).describe()
        except ConfigError as err:
            return [f"refused at cold start: {str(err).split(chr(10) + '- ', 1)[-1]}"]
    return CompiledStatement(statement, Stats()).describe()


# Where a statement's points go: (database or bucket, retention policy) as its DATABASE and
# RETENTION POLICY clauses name them; None leaves that part to the settings.
Route = tuple[str | None, str | None]
DEFAULT_ROUTE: Route = (None, None)


def statement_routes(statements: tuple[Statement, ...]) -> list[Route]:
    """Every route the statements write to, each once, the settings' own first (index 0): the
    writer has one request target per route, in this order."""
    routes = [DEFAULT_ROUTE]
    for st in statements:
        route = (st.database, st.retention_policy)
        if route not in routes:
            routes.append(route)
    return routes


class Plan:
    """All statements, grouped by topic: ``lines(record)`` maps one record; with statements that
    name their database, ``line_routes`` says where each of its lines goes."""

    def __init__(self, statements: tuple[Statement, ...], decoder: Decoder | None = None) -> None:
        self.statements = statements
        self.decoder = decoder or Decoder()
        self.stats = Stats()
        self.by_topic: dict[str, tuple[CompiledStatement, ...]] = {}
        # With connect.influx.value.format=lineprotocol every statement re-encodes lines instead.
        self.lp_by_topic: dict[str, tuple[LineProtocolStatement, ...]] = {}
        line_protocol = self.decoder.value_kind is PayloadKind.LINEPROTOCOL
        for s in statements:
            if line_protocol:
                self.lp_by_topic[s.topic] = (*self.lp_by_topic.get(s.topic, ()), LineProtocolStatement(s, self.stats))
                continue
            if s.keep_measurement:
                raise _refused(s, "INSERT INTO * keeps the measurement of each line of line protocol; it needs "
                                  "connect.influx.value.format=lineprotocol")
            self.by_topic[s.topic] = (*self.by_topic.get(s.topic, ()), CompiledStatement(s, self.stats))
        self._lines_by_topic: dict[str, Callable[[KafkaRecord], list[str]]] = {}
        self.routes = statement_routes(statements)
        self.routed = len(self.routes) > 1  # False: every line goes to the settings' database
        index = {r: i for i, r in enumerate(self.routes)}
        grouped: dict[str, tuple[CompiledStatement, ...] | tuple[LineProtocolStatement, ...]] = {
            **self.by_topic, **self.lp_by_topic}
        self._routes_by_topic = {topic: tuple(index[(c.statement.database, c.statement.retention_policy)]
                                              for c in compiled) for topic, compiled in grouped.items()}
        self._one_route = {topic: rs[0] for topic, rs in self._routes_by_topic.items() if len(set(rs)) == 1}
        # Every line is the same each time its record is mapped (its time comes from the record, not
        # the clock): writing it again overwrites its point instead of adding one. A line-protocol
        # statement keeps each line's time, else the record's Kafka timestamp, unless sys_time().
        self.repeatable = all(not s.sys_time if line_protocol else s.timestamp is not None for s in statements)

    def line_routes(self, topic: str, count: int) -> list[int]:
        """The route (index into ``routes``) of each of the ``count`` lines ``lines`` gave a record
        of ``topic``: its statement's. Where a topic's statements write to different databases the
        order of ``lines`` tells: one line per statement, in statement order, for each element of an
        array value; on a line-protocol topic, each statement's lines for the whole value in turn."""
        one = self._one_route.get(topic)
        if one is not None:
            return [one] * count
        routes = self._routes_by_topic[topic]
        each, rest = divmod(count, len(routes))
        if rest:
            raise RecordError(f"{count} line(s) for the {len(routes)} statements of topic {topic!r}, which "
                              "write to different databases: which line goes where is unknown", FailureKind.MAPPING)
        if topic in self.lp_by_topic:
            return [r for r in routes for _ in range(each)]
        return list(routes) * each

    def _statements(self, record: KafkaRecord) -> tuple[CompiledStatement, ...]:
        compiled = self.by_topic.get(record.topic)
        if compiled is None:
            raise RecordError(f"no KCQL statement reads topic {record.topic!r} (statements read: "
                              f"{', '.join(sorted({*self.by_topic, *self.lp_by_topic}))})", FailureKind.CONFIG)
        return compiled

    def lines(self, record: KafkaRecord) -> list[str]:
        """The record's lines of line protocol, one per statement of its topic (per element of an
        array value, per line of a line-protocol value); [] for a tombstone."""
        fn = self._lines_by_topic.get(record.topic)
        if fn is None:
            lp = self.lp_by_topic.get(record.topic)
            fn = self._lines_by_topic[record.topic] = (self._topic_lines(self._statements(record)) if lp is None
                                                       else _lp_topic_lines(lp, self.decoder, self.stats))
        return fn(record)

    def _topic_lines(self, compiled: tuple[CompiledStatement, ...]) -> Callable[[KafkaRecord], list[str]]:
        """``lines`` for one topic's statements, with what it needs bound once."""
        stats, decoder, decode = self.stats, self.decoder, self.decoder.value_or_message
        fns = tuple(c.line for c in compiled)
        needs_ctx = any(c.needs_ctx for c in compiled)  # one Context shared: the key decoded once
        each_element = _array_lines(fns, needs_ctx, decoder, stats)
        # A message of a known type (see Decoder.value_or_message): its lines written straight
        # from its fields where ``message_lines`` covers the statements, else its record shape.
        types = decoder.message_types
        by_type: dict[type, tuple[MessageLines | None, Callable[[Any], Any]]] = {}

        def not_dict(record: KafkaRecord, value: Any) -> tuple[list[str] | None, Any]:
            """(the lines, or None; the value for the statements) of a value that is not an object:
            a tombstone writes nothing, an array a line per element, a message of a known type its
            lines straight from its fields or else its record shape; any other value goes on."""
            if value is None:
                stats.tombstones += 1
                return [], None
            if type(value) is list:
                return each_element(record, value), None
            found = by_type.get(type(value))
            if found is None:
                mt = types.get(type(value))
                if mt is None:
                    return None, value  # a JSON text, number or bool: no message
                from handler.message_lines import compile_lines

                found = by_type[type(value)] = (compile_lines(compiled, mt, sys_time_ns), mt.record)
            direct, to_record = found
            if direct is not None:
                lines = direct(record, value)
                if lines is not None:
                    return lines, value
            return None, to_record(value)

        if len(fns) == 1:
            (line_of,) = fns

            def one(record: KafkaRecord) -> list[str]:
                value = decode(record)
                if type(value) is not dict:
                    lines, value = not_dict(record, value)
                    if lines is not None:
                        return lines
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
            if type(value) is not dict:
                done, value = not_dict(record, value)
                if done is not None:
                    return done
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


# ---------------------------------------------------------------- arrays and line-protocol values


def _refused(statement: Statement, problem: str) -> ConfigError:
    """A statement that cannot apply to the topic's payloads: refused at cold start."""
    return ConfigError.invalid([f"connect.influx.kcql (CONNECT_INFLUX_KCQL): {problem} (in: {statement.text})"])


def _overwrites(lines: list[str]) -> int:
    """How many of one record's lines share measurement, tags and time with an earlier one."""
    seen: set[tuple[str, str]] = set()
    for line in lines:
        seen.add(series_and_time(line))
    return len(lines) - len(seen)


def _array_lines(fns: tuple[LineFn, ...], needs_ctx: bool, decoder: Decoder, stats: Stats
                 ) -> Callable[[KafkaRecord, list[Any]], list[str]]:
    """A value that is an array: each element is mapped by every statement as if it were the
    value, one point per element and statement. An empty array has no points. An element that is
    not an object, or that a statement cannot map, fails the whole record (none of its points are
    written), named by its index (0 is the first)."""

    def each(record: KafkaRecord, elements: list[Any]) -> list[str]:
        ctx = Context(record, None, decoder, stats) if needs_ctx else None  # one key decode per record
        out: list[str] = []
        for i, element in enumerate(elements):
            if not isinstance(element, dict):
                raise RecordError(f"array element {i} is {describe(element)}, not an object: each element of an "
                                  "array value is one point")
            if ctx is not None:
                ctx.value = element
            try:
                lines = [f(ctx, element) for f in fns]  # every statement's rules before any line's
            except RecordError as err:
                raise RecordError(f"array element {i}: {err.reason}", err.kind) from None
            except RecursionError:
                raise _nested_too_deeply() from None
            for line in lines:
                if isinstance(line, RecordError):
                    raise RecordError(f"array element {i}: {line.reason}", line.kind)
                out.append(line)
        if len(out) > 1:
            stats.overwritten += _overwrites(out)
        return out

    return each


def _lp_topic_lines(compiled: tuple[LineProtocolStatement, ...], decoder: Decoder, stats: Stats
                    ) -> Callable[[KafkaRecord], list[str]]:
    """``Plan.lines`` for a line-protocol topic: every statement's lines for every line of the value."""
    decode = decoder.value
    fns = tuple(c.points for c in compiled)

    def lines(record: KafkaRecord) -> list[str]:
        parsed = decode(record)
        if parsed is None:
            stats.tombstones += 1
            return []
        if not parsed:  # only blank or comment lines: nothing to write
            return []
        ctx = Context(record, parsed, decoder, stats)
        out: list[str] = []
        for f in fns:
            out.extend(f(ctx, parsed))
        if len(out) > 1:
            stats.overwritten += _overwrites(out)
        return out

    return lines


_LP_TAG_SOURCES = "_topic, _partition, _offset, _timestamp, _key, _header.<name>"
_read_kafka_time = timestamp_reader("_timestamp", TimeUnit.MILLISECONDS.nanos, TimeUnit.MILLISECONDS.nanos)


class LineProtocolStatement:
    """One KCQL statement over a line-protocol topic (``connect.influx.value.format=lineprotocol``).

    ``points(ctx, lines)`` writes every parsed line of a record again through ``handler.lineproto``,
    so each name is checked and escaped by the same rules as every other point. What the clauses
    mean here: ``INSERT INTO *`` keeps each line's measurement, ``INSERT INTO m`` renames it;
    ``SELECT *`` keeps every field, named fields (with ``AS``) pick and rename; ``IGNORE`` drops
    fields from ``*``; ``WITHTAG`` adds constants and record metadata where the line has no tag of
    that name (the line's own tags are kept as written); the time is the line's own, else the
    record's Kafka timestamp (``WITHTIMESTAMP _timestamp``: always the Kafka timestamp,
    ``sys_time()``: the processing time). Everything else is refused at cold start.
    """

    needs_ctx = True

    def __init__(self, statement: Statement, stats: Stats) -> None:
        self.statement = st = statement
        self.state = _StatementState(statement)
        if st.target is not None:
            raise _refused(st, "WITHTARGET does not apply to line protocol: INSERT INTO * keeps each line's "
                               "measurement, INSERT INTO <name> renames it")
        ts = st.timestamp
        if ts is not None and ts.source is not Source.TIMESTAMP:
            raise _refused(st, f"WITHTIMESTAMP {ts.text}: a line of line protocol keeps its own time; "
                               "WITHTIMESTAMP takes _timestamp (the Kafka record's time) or sys_time()")
        self.star = False
        self.explicit: list[tuple[str, str, str]] = []  # (field of the line, name written, path as written)
        for f in st.fields:
            if f.wildcard:
                if f.path.source is not Source.VALUE or f.path.segments:
                    raise _refused(st, f"SELECT {f.path.text}: the fields of a line are not nested; "
                                       "SELECT * takes them all")
                self.star = True
            elif f.path.source is not Source.VALUE or len(f.path.segments) != 1:
                raise _refused(st, f"SELECT {f.path.text}: not a field of a line; SELECT takes * and the "
                                   "names of the lines' fields")
            else:
                self.explicit.append((f.path.segments[0], f.name, f.path.text))
        for p in st.ignores:
            if p.source is not Source.VALUE or len(p.segments) != 1:
                raise _refused(st, f"IGNORE {p.text}: IGNORE takes the names of the lines' fields")
        self.constants: dict[str, str] = {}
        self.from_record: list[tuple[str, Getter]] = []
        for tag in st.tags:
            if tag.name == "time":
                raise _refused(st, "InfluxDB reserves the tag name 'time'")
            if isinstance(tag, ConstantTag):
                try:
                    tag_pair(tag.key, tag.value or "-")
                except RecordError as err:
                    raise _refused(st, f"WITHTAG({tag.key}={tag.value}): {err.reason}") from None
                if tag.value:  # an empty constant leaves the tag out, as for other payloads
                    self.constants[tag.key] = tag.value
            elif tag.path.source is Source.VALUE:
                raise _refused(st, f"WITHTAG({tag.path.text}): a line's own tags are kept as written; WITHTAG adds "
                                   f"constants (name=value) and record metadata ({_LP_TAG_SOURCES})")
            else:
                self.from_record.append((tag.name, compile_getter(tag.path)))
        self.head: str | None = None
        if not st.keep_measurement:
            try:
                self.head = escape_measurement(st.measurement)
            except RecordError as err:
                raise _refused(st, err.reason) from None
        skip = frozenset(p.segments[0] for p in st.ignores) | {src for src, _, _ in self.explicit}
        self._star_keys: dict[str, str] = {}
        self._named_keys: dict[str, str] = {}
        self._put_star = field_writer(self._star_keys, self._learner(self._star_keys, skip), _never, stats)
        self._put_named = field_writer(self._named_keys, self._learner(self._named_keys, frozenset()), _never, stats)
        self.points = self._compile()

    def describe(self) -> list[str]:
        """What the statement writes for each line (for ``influx-sink kcql``)."""
        st = self.statement
        head = "{the line's measurement}" if self.head is None else self.head
        tags = "{the line's tags}" + "".join(f",{k}={v}" for k, v in sorted(self.constants.items()))
        tags += "".join(f",{name}={{{name} of the record}}" for name, _ in self.from_record)
        fields: list[str] = []
        if self.star:
            but = [p.text for p in st.ignores] + [src for src, _, _ in self.explicit]
            fields.append(f"{{every field of the line{' but ' + ', '.join(but) if but else ''}}}")
        fields += [f"{name}={{{src}}}" for src, name, _ in self.explicit]
        when = ("{processing time, ns}" if st.sys_time else "{the record's Kafka timestamp, ns}"
                if st.timestamp is not None else "{the line's time, else the record's Kafka timestamp, ns}")
        return [f"line: {head}{tags} {','.join(fields)} {when}",
                "for: connect.influx.value.format=lineprotocol, each line of a value (tags the line has win)"]

    def _learner(self, known: dict[str, str], skip: frozenset[str]) -> Callable[[str], str]:
        state = self.state

        def learn(name: str) -> str:
            if name in skip:
                text = ""
            elif name == "time":  # as for every payload: InfluxDB 1.x would drop it silently
                state.drop_time_field()
                text = ""
            else:
                text = field_key_eq(name)  # RecordError for a name line protocol cannot carry
            if len(known) >= _KEY_CACHE_LIMIT:
                known.clear()
            known[name] = text
            return text

        return learn

    def _compile(self) -> Callable[[Context, list[ParsedLine]], list[str]]:
        star, explicit, put_star, put_named = self.star, tuple(self.explicit), self._put_star, self._put_named
        constants, from_record, fixed_head = self.constants, tuple(self.from_record), self.head
        may_repeat = star and bool(explicit)
        st = self.statement
        sys_time, kafka_always = st.sys_time, st.timestamp is not None

        def points(ctx: Context, lines: list[ParsedLine]) -> list[str]:
            record = ctx.record
            extra = constants
            if from_record:
                extra = dict(constants)
                for name, get in from_record:
                    try:
                        v = tag_text(get(ctx))
                    except RecordError as err:
                        raise RecordError(f"tag {name!r}: {err.reason}", err.kind) from None
                    if v is not None:
                        extra[name] = v
            kafka_ns: int | None = None
            out: list[str] = []
            for pl in lines:
                try:
                    fields: list[str] = []
                    if star:
                        put_star(fields, pl.fields.items())
                    if explicit:
                        items: list[tuple[str, Any]] = []
                        for src, name, text in explicit:
                            v = pl.fields.get(src, MISSING)
                            if v is MISSING:
                                raise RecordError(f"selected field '{text}' is missing")
                            items.append((name, v))
                        put_named(fields, items)
                    if not fields:
                        raise RecordError(_NO_FIELDS)
                    if may_repeat:
                        fields = unique_fields(fields)
                    head = fixed_head if fixed_head is not None else escape_measurement(pl.measurement)
                    tags: Any = pl.tags
                    if extra:
                        merged = dict(tags)
                        for k, tv in extra.items():
                            merged.setdefault(k, tv)
                        tags = merged.items()
                    tags_text = "".join([tag_pair(k, tv) for k, tv in sorted(tags)])
                    if sys_time:
                        ns = sys_time_ns()
                    elif pl.time_ns is not None and not kafka_always:
                        ns = pl.time_ns
                    else:
                        if kafka_ns is None:
                            if record.timestamp is None:
                                raise RecordError("the line has no time, and the record has no Kafka timestamp "
                                                  "to give it")
                            kafka_ns = _read_kafka_time(record.timestamp)
                        ns = kafka_ns
                    out.append(f"{head}{tags_text} {','.join(fields)} {ns}")
                except RecordError as err:
                    raise RecordError(f"line {pl.number}: {err.reason}", err.kind) from None
            return out

        return points


def _never(out: list[str], name: str, value: Any) -> None:  # pragma: no cover - parsed lines hold the 5 types only
    raise RecordError(f"field {name!r}: a {type(value).__name__} is not a line-protocol value", FailureKind.ENCODE)
