"""The mapping rules as they were first written, kept as the oracle of tests/unit/test_mapping_lines.py.

A frozen copy of the reference path the sink had when it kept two (``Plan.points`` + ``encode``):
the one path of ``handler.mapping`` must give, for any record, the line this gives, or the same
error. Test code only: nothing in the product imports it.

Original summary: KCQL statements compiled once into a plan of closures; records → points.

``compile_plan(statements)`` resolves every path, name, unit and rule up front, so mapping a
record is a few dict look-ups and calls: no string dispatch on paths, no parsing in the hot loop.
A record that cannot be mapped raises ``RecordError`` with the reason (the caller adds the
record's coordinates).

Two paths give the same result: ``Plan.points(record)`` (the reference: ``Point`` objects, for
tests and tools, encoded by ``lineproto.encode``) and ``Plan.lines(record)`` (what the delivery
stage runs: each statement fused into one function from the decoded record to its line; see
"fused" below).
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import re
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from handler.decode import Decoder
from handler.errors import FailureKind, RecordError
from handler.lineproto import Point, escape_measurement, field_key_eq, tag_pair
from handler.records import MISSING, KafkaRecord
from kcql import ConstantTag, KcqlError, Path, PathTag, SelectField, Source, Statement, TimeUnit

log = logging.getLogger(__name__)

__all__ = ["MISSING", "CompiledStatement", "Context", "Plan", "Point", "Stats", "compile_plan"]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# InfluxDB stores times from 1677-09-21T00:12:43.145224194Z to 2262-04-11T23:47:16.854775806Z.
TIME_MIN_NS, TIME_MAX_NS = -9223372036854775806, 9223372036854775806
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_ONE_US = _dt.timedelta(microseconds=1)
_ISO_RE = re.compile(
    r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)(?:[.,](\d{1,9}))?(Z|z|[+-]\d{2}(?::?\d{2})?)$")
_DIGITS_RE = re.compile(r"[+-]?\d+$")
# More significant digits than this cannot be a time InfluxDB stores, in any unit (int64 ns has 19).
_MAX_TIME_DIGITS = 19


def _short(value: Any) -> str:
    """A value for a message: a huge integer or text is cut, never printed whole."""
    if type(value) is int and value.bit_length() > 128:  # more than ~38 digits
        digits = len(str(abs(value))) if value.bit_length() < 14_000 else None
        return f"{str(value)[:20]}... ({digits} digits)" if digits else "an integer of thousands of digits"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _nested_too_deeply() -> RecordError:
    """A decoded value whose objects or arrays nest past the recursion limit while flattened."""
    import sys

    return RecordError(f"the value is nested too deeply (about {sys.getrecursionlimit()} levels or more) to be "
                       "flattened into fields", "mapping")


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


# ---------------------------------------------------------------- field values


def _special_field(fields: dict[str, Any], name: str, value: Any, st: _StatementState) -> None:
    """The rarer value types: decimals, dates and times, bytes, and anything unexpected."""
    if isinstance(value, bool | str):
        fields[name] = value
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise RecordError(f"field {name!r}: integer {_short(value)} is outside int64")
        fields[name] = int(value)
    elif isinstance(value, (float, Decimal)):
        try:
            number = float(value)
        except (ValueError, OverflowError):  # a signalling NaN Decimal
            raise RecordError(f"field {name!r}: {_short(value)} is not a number InfluxDB can store") from None
        _put(fields, name, number, st)
    elif isinstance(value, _dt.datetime):
        fields[name] = _datetime_ns(value) // 1_000_000
    elif isinstance(value, _dt.date):
        fields[name] = (value - _dt.date(1970, 1, 1)).days * 86_400_000
    elif isinstance(value, _dt.time):
        fields[name] = ((value.hour * 60 + value.minute) * 60 + value.second) * 1000 + value.microsecond // 1000
    elif isinstance(value, bytes | bytearray | memoryview):
        raise RecordError(f"field {name!r}: bytes cannot be written to InfluxDB")
    elif isinstance(value, dict):
        for k, v in value.items():
            _put(fields, f"{name}_{k}", v, st)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _put(fields, f"{name}{i}", v, st)
    else:
        raise RecordError(f"field {name!r}: values of type {type(value).__name__} cannot be written")


def _put(fields: dict[str, Any], name: str, value: Any, st: _StatementState) -> None:
    """Add one field, flattening objects (``a_b``) and arrays (``a0``); nulls are left out."""
    t = type(value)
    if name == "time":
        st.drop_time_field()
        return
    if t is str or t is bool:
        fields[name] = value
    elif t is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise RecordError(f"field {name!r}: integer {_short(value)} is outside int64")
        fields[name] = value
    elif t is float:
        if value - value == 0.0:  # finite: inf - inf and nan - nan are nan
            fields[name] = value
        else:
            st.stats_non_finite()
    elif t is dict:
        for k, v in value.items():
            _put(fields, f"{name}_{k}", v, st)
    elif t is list:
        for i, v in enumerate(value):
            _put(fields, f"{name}{i}", v, st)
    elif value is None:
        pass
    else:
        _special_field(fields, name, value, st)


class _StatementState:
    """Per-statement mutable bits: the warn-once flags and the current record's counters."""

    __slots__ = ("statement", "stats", "warned_time")

    def __init__(self, statement: Statement) -> None:
        self.statement = statement
        self.warned_time = False
        self.stats: Stats | None = None

    def drop_time_field(self) -> None:
        if not self.warned_time:
            self.warned_time = True
            log.warning("a field named 'time' is left out: InfluxDB reserves it; select it with an "
                        "alias to keep it (statement: %s)", self.statement.text)

    def stats_non_finite(self) -> None:
        if self.stats is not None:
            self.stats.non_finite += 1


# ---------------------------------------------------------------- wildcards

FieldWriter = Callable[[Context, dict[str, Any]], None]


def _wildcard_writer(field: SelectField, ignored: frozenset[tuple[str, ...]], st: _StatementState) -> FieldWriter:
    """``*``, ``a.*`` or ``_key.*``: every field below the path, minus IGNOREd paths (full paths)."""
    base = compile_getter(field.path)
    root = field.path.segments
    # Paths relative to the wildcard's root that are ignored, and their proper prefixes.
    rel = {p[len(root):] for p in ignored if p[:len(root)] == root and len(p) > len(root)}
    top = frozenset(p[0] for p in rel if len(p) == 1)
    deep = frozenset(rel - {(n,) for n in top})
    prefixes = frozenset(p[:i] for p in deep for i in range(1, len(p)))
    what = field.path.text

    def put_filtered(fields: dict[str, Any], name: str, rel_path: tuple[str, ...], value: Any) -> None:
        if rel_path in deep:
            return
        if type(value) is dict and rel_path in prefixes:
            for k, v in value.items():
                put_filtered(fields, f"{name}_{k}", (*rel_path, k), v)
        else:
            _put(fields, name, value, st)

    def write(ctx: Context, fields: dict[str, Any]) -> None:
        value = base(ctx)
        if value is MISSING:
            raise RecordError(f"'{what}': there is no {'.'.join(root) or 'value'} in the record")
        if value is None:
            return
        if type(value) is not dict:
            raise RecordError(f"'{what}' selects the fields of an object, but the "
                              f"{'.'.join(root) or 'payload'} is a {type(value).__name__}")
        for k, v in value.items():
            if k in top:
                continue
            if prefixes and (k,) in prefixes:
                put_filtered(fields, k, (k,), v)
            else:
                _put(fields, k, v, st)

    return write


def _explicit_writer(field: SelectField, st: _StatementState) -> FieldWriter | None:
    get = compile_getter(field.path)
    name = field.name
    text = field.path.text
    if name == "time":
        st.drop_time_field()
        return None

    def write(ctx: Context, fields: dict[str, Any]) -> None:
        value = get(ctx)
        if value is MISSING:
            raise RecordError(f"selected field '{text}' is missing")
        _put(fields, name, value, st)

    return write


# ---------------------------------------------------------------- tags


def tag_text(value: Any) -> str | None:
    """A tag value as text: None (tag left out) for missing, null or empty values."""
    t = type(value)
    if t is str:
        return value or None
    if value is None or value is MISSING:
        return None
    if t is bool:
        return "true" if value else "false"
    if t is int or t is float or isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    raise RecordError(f"a {type(value).__name__} cannot be a tag value")


TagReader = Callable[[Context], str | None]


def _tag_reader(tag: PathTag) -> TagReader:
    get = compile_getter(tag.path)
    name = tag.name

    def read(ctx: Context) -> str | None:
        try:
            return tag_text(get(ctx))
        except RecordError as err:
            raise RecordError(f"tag {name!r}: {err.reason}", err.kind) from None

    return read


# ---------------------------------------------------------------- timestamps


def _datetime_ns(value: _dt.datetime) -> int:
    if value.tzinfo is None:
        raise RecordError("timestamp has no time zone")
    return (value - _EPOCH) // _ONE_US * 1000  # exact: a timedelta // a timedelta is an int


def parse_iso(text: str) -> int:
    """An ISO-8601 instant with a zone → epoch nanoseconds, keeping all nine fraction digits."""
    m = _ISO_RE.match(text.strip())
    if not m:
        raise RecordError(f"timestamp {_short(text)} is not an ISO-8601 instant with a zone (Z or +hh:mm)")
    date, clock, frac, zone = m.groups()
    if len(clock) == 5:
        clock += ":00"
    zone = "+00:00" if zone in ("Z", "z") else zone
    if len(zone) == 3:
        zone += ":00"
    elif ":" not in zone:
        zone = zone[:3] + ":" + zone[3:]
    try:
        whole = _dt.datetime.fromisoformat(f"{date}T{clock}{zone}")
    except ValueError as err:
        raise RecordError(f"timestamp {text!r}: {err}") from None
    return _datetime_ns(whole) + (int((frac or "0").ljust(9, "0")) if frac else 0)


_last_sys_ns = [0]


def sys_time_ns(_ctx: Context | None = None) -> int:
    """Processing time in nanoseconds, strictly increasing within the process (across every
    statement), so two points of one batch never share a time and overwrite each other."""
    t = time.time_ns()
    last = _last_sys_ns[0]
    if t <= last:
        t = last + 1
    _last_sys_ns[0] = t
    return t


def _timestamp_reader(path: Path, unit: TimeUnit | None) -> Callable[[Context], int]:
    get = compile_getter(path)
    text = path.text
    factor = (unit or TimeUnit.MILLISECONDS).nanos
    float_factor = (unit or TimeUnit.SECONDS).nanos  # a float without TIMESTAMPUNIT is epoch seconds

    def read(ctx: Context) -> int:
        value = get(ctx)
        t = type(value)
        if t is int:
            ns = value * factor
        elif t is float:
            if not math.isfinite(value):
                raise RecordError(f"timestamp '{text}' is {value}")
            # Exact decimal arithmetic on the shortest repr: 1.56937031387e9 s is 1569370313870 ms,
            # where float arithmetic would give 1569370313869999872 ns.
            ns = round(Decimal(repr(value)) * float_factor)
        elif t is str:
            if _DIGITS_RE.match(value):
                digits = value.lstrip("+-").lstrip("0")
                if len(digits) > _MAX_TIME_DIGITS:  # also: int() refuses more than 4300 digits
                    raise RecordError(f"timestamp '{text}' = {_short(value)} is outside what InfluxDB can store "
                                      "(1677-09-21 .. 2262-04-11)")
                ns = int(digits or "0") * factor * (-1 if value[0] == "-" else 1)
            else:
                ns = parse_iso(value)
        elif value is MISSING or value is None:
            raise RecordError(f"timestamp '{text}' is {'missing' if value is MISSING else 'null'}")
        elif isinstance(value, _dt.datetime):
            ns = _datetime_ns(value)
        elif isinstance(value, _dt.date):
            ns = (value - _dt.date(1970, 1, 1)).days * 86_400 * 1_000_000_000
        elif isinstance(value, Decimal):
            if not value.is_finite() or value.adjusted() > _MAX_TIME_DIGITS:
                raise RecordError(f"timestamp '{text}' = {_short(value)} is outside what InfluxDB can store "
                                  "(1677-09-21 .. 2262-04-11)")
            ns = round(value * factor)
        else:
            raise RecordError(f"timestamp '{text}' is a {type(value).__name__}, not a time")
        if not TIME_MIN_NS <= ns <= TIME_MAX_NS:
            raise RecordError(f"timestamp '{text}' = {_short(value)} is outside what InfluxDB can store "
                              "(1677-09-21 .. 2262-04-11)")
        return ns

    return read


# ---------------------------------------------------------------- statements


class CompiledStatement:
    """One KCQL statement as closures: ``point(ctx)`` builds its point or raises RecordError."""

    def __init__(self, statement: Statement) -> None:
        self.statement = statement
        self.state = _StatementState(statement)
        st = self.state
        ignored_value = frozenset(p.segments for p in statement.ignores if p.source is Source.VALUE)
        ignored_key = frozenset(p.segments for p in statement.ignores if p.source is Source.KEY)
        # `SELECT *, name AS who`: an aliased path leaves what * selects (from the value or the key).
        aliased = {src: frozenset(f.path.segments for f in statement.fields
                                  if not f.wildcard and f.alias is not None and f.path.source is src)
                   for src in (Source.VALUE, Source.KEY)}
        writers: list[FieldWriter] = []
        for f in statement.fields:
            if f.wildcard:
                # A bare IGNORE name also applies to `_key.*` (`SELECT _key.* ... IGNORE index`).
                ign = (ignored_value | aliased[Source.VALUE] if f.path.source is Source.VALUE
                       else ignored_key | ignored_value | aliased[Source.KEY])
                writers.append(_wildcard_writer(f, ign, st))
            else:
                w = _explicit_writer(f, st)
                if w is not None:
                    writers.append(w)
        self.writers = tuple(writers)

        names: dict[str, object] = {}
        constants: list[tuple[str, str]] = []
        readers: list[tuple[str, TagReader]] = []
        for tag in statement.tags:
            name = tag.name
            if name in names:
                raise KcqlError(f"tag {name!r} is given twice in: {statement.text}")
            names[name] = tag
            if name == "time":
                log.warning("tag 'time' is left out: InfluxDB reserves it; use WITHTAG(path AS other) "
                            "(statement: %s)", statement.text)
                continue
            if isinstance(tag, ConstantTag):
                if tag.value:
                    constants.append((name, tag.value))
            else:
                readers.append((name, _tag_reader(tag)))
        self.constant_tags = sorted(constants)
        self.tag_readers = tuple(sorted(readers, key=lambda r: r[0]))
        # One merged, sorted order of all tags, so points come out sorted without sorting per record.
        self.tag_plan = tuple(sorted([(n, v, None) for n, v in constants]
                                     + [(n, None, r) for n, r in readers], key=lambda t: t[0]))
        self.measurement = statement.measurement
        self.target = compile_getter(statement.target) if statement.target else None
        self.time: Callable[[Context], int]
        if statement.timestamp is None:
            self.time = sys_time_ns
        else:
            self.time = _timestamp_reader(statement.timestamp, statement.timestamp_unit)
        self.uses_key = _uses(statement, Source.KEY)
        self.star_skip = ignored_value | aliased[Source.VALUE]  # what `SELECT *` leaves out (fused path)

    def point(self, ctx: Context) -> Point:
        self.state.stats = ctx.stats
        fields: dict[str, Any] = {}
        for write in self.writers:
            write(ctx, fields)
        if not fields:
            raise RecordError("the point has no fields (InfluxDB cannot store a point without fields)")
        if self.tag_readers:
            tags: list[tuple[str, str]] = []
            for name, const, reader in self.tag_plan:
                text = const if reader is None else reader(ctx)
                if text is not None:
                    tags.append((name, text))
        else:
            tags = self.constant_tags
        measurement = self.measurement
        if self.target is not None:
            found = self.target(ctx)
            if found is not MISSING and found is not None:
                try:
                    measurement = tag_text(found) or measurement
                except RecordError as err:
                    raise RecordError(f"WITHTARGET: {err.reason}", err.kind) from None
        return Point(measurement, tags, fields, self.time(ctx))


def _uses(statement: Statement, source: Source) -> bool:
    paths: list[Path] = [f.path for f in statement.fields]
    paths += [t.path for t in statement.tags if isinstance(t, PathTag)]
    paths += [p for p in (statement.target, statement.timestamp) if p is not None]
    return any(p.source is source for p in paths)


class Plan:
    """All statements, grouped by topic: ``points(record)`` maps one record."""

    def __init__(self, statements: tuple[Statement, ...], decoder: Decoder | None = None) -> None:
        self.statements = statements
        self.decoder = decoder or Decoder()
        self.by_topic: dict[str, tuple[CompiledStatement, ...]] = {}
        for s in statements:
            self.by_topic[s.topic] = (*self.by_topic.get(s.topic, ()), CompiledStatement(s))
        self.stats = Stats()

    @property
    def topics(self) -> list[str]:
        return list(self.by_topic)

    def _statements(self, record: KafkaRecord) -> tuple[CompiledStatement, ...]:
        compiled = self.by_topic.get(record.topic)
        if compiled is None:
            raise RecordError(f"no KCQL statement reads topic {record.topic!r} (statements read: "
                              f"{', '.join(sorted(self.by_topic))})", "config")
        return compiled

    def points(self, record: KafkaRecord) -> list[Point]:
        """The record's points (one per statement of its topic); [] for a tombstone."""
        compiled = self._statements(record)
        value = self.decoder.value(record)
        if value is None:
            self.stats.tombstones += 1
            return []
        ctx = Context(record, value, self.decoder, self.stats)
        try:
            return [c.point(ctx) for c in compiled]
        except RecursionError:
            raise _nested_too_deeply() from None



def compile_plan(statements: tuple[Statement, ...], decoder: Decoder | None = None) -> Plan:
    return Plan(statements, decoder)


def field_value(value: Any) -> str:
    t = type(value)
    if t is float:
        return repr(value)
    if t is int:
        return f"{value}i"
    if t is str:
        if "\\" in value or '"' in value:
            value = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{value}"'
    if t is bool:
        return "true" if value else "false"
    raise RecordError(f"cannot encode a {t.__name__} field", FailureKind.ENCODE)


def encode(point: Point) -> str:
    measurement, tags, fields, time_ns = point
    head = escape_measurement(measurement) + "".join([tag_pair(k, v) for k, v in tags])
    return f"{head} {','.join(field_key_eq(k) + field_value(v) for k, v in fields.items())} {time_ns}"


def reference_lines(plan: Plan, record: KafkaRecord) -> list[str]:
    return [encode(p) for p in plan.points(record)]
