"""``Plan.lines`` gives, for random records, the line the KCQL rules (docs/kcql.md) say.

For every statement shape below and random records (odd names, escapes, non-finite floats,
integers beyond int64, nested objects, arrays, nulls, ``time`` fields, lone surrogates), the
outcome holds what every outcome holds (a RecordError with a reason, or lines that read back with
no raw newline), and what the shape says of the record's own values: each line is read back with
``tests._lines.point_of`` and compared with the record. A record is *plain* when it is an object of
scalars under names line protocol carries as they are; for a plain record the whole line is
stated. Pure mapping: no InfluxDB needed (the round trip through InfluxDB is
tests/integration/test_lineproto.py's, via the handler).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handler.errors import RecordError
from handler.mapping import Plan
from handler.records import KafkaRecord, parse_event
from influx_sink_tools.eventgen import Rec, record_json
from kcql import parse
from tests._lines import point_of

NAMES = ["a", "b", "c", "x", "ts", "time", "", " ", "a b", "a,b", "a=b", 'q"', "back\\", "\\ x", "new\nline",
         "#h", "\t", "\x00", "é", "\ud800"]
# The names of NAMES that line protocol carries as field keys and tag keys (escaped, not refused).
CARRIED = {"a", "b", "c", "x", "ts", "time", " ", "a b", "a,b", "a=b", 'q"', "#h", "é"}
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 0, 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=st.sampled_from(list('ab ,="\\\n\té\ud800x1')), max_size=6),
    st.sampled_from(["", "2024-01-02T03:04:05.123456789Z", "1700000000000", "x"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(NAMES), inner, max_size=3)), max_leaves=8)
documents = st.dictionaries(st.sampled_from(NAMES), values, max_size=7)

Missing = object()
NO_FIELDS = "the point has no fields (InfluxDB cannot store a point without fields)"


def record(value: Any, key: Any, header: bytes | None) -> KafkaRecord:
    rec = Rec("t", 0, 7, None if value is None else json.dumps(value).encode(),
              None if key is None else json.dumps(key).encode(),
              headers=[] if header is None else [("h", header)], timestamp=1_700_000_000_123)
    (parsed,) = parse_event({"eventSource": "aws:kafka", "records": {"t-0": [record_json(rec)]}})
    return parsed


def in_int64(v: Any) -> bool:
    return not isinstance(v, int) or isinstance(v, bool) or -(2**63) <= v < 2**63


def is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, bool | int | float | str)


def plain(doc: Any) -> bool:
    """An object of scalars within int64 under carried names: its whole line can be stated."""
    return isinstance(doc, dict) and all(k in CARRIED and is_scalar(v) and in_int64(v) for k, v in doc.items())


def kept(v: Any) -> bool:
    """A scalar value that is written as a field (null and non-finite floats are left out)."""
    return v is not None and not (isinstance(v, float) and not math.isfinite(v))


def star(doc: dict[str, Any], *, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields ``*`` takes from a plain object: its kept values, but ``time`` and IGNOREd names."""
    return {k: v for k, v in doc.items() if k != "time" and k not in ignore and kept(v)}


def tag_text(v: Any) -> str | None:
    """A plain scalar as a tag value, or None when the tag is left out (missing, null, empty)."""
    if v is None or v is Missing or v == "":
        return None
    return "true" if v is True else "false" if v is False else str(v)


def carried_tag(v: Any) -> bool:
    """A tag value line protocol carries: no control character, backslash or lone surrogate."""
    return not (isinstance(v, str) and any(c in v for c in "\\\n\t\x00\ud800"))


def nanos(v: Any, unit_ns: int) -> int | None:
    """An integer time at ``unit_ns`` ns per unit, when it is one InfluxDB can store."""
    if isinstance(v, int) and not isinstance(v, bool) and abs(v * unit_ns) < 9 * 10**18:
        return v * unit_ns
    return None


Outcome = list[str] | RecordError


def outcome(plan: Plan, rec: KafkaRecord) -> Outcome:
    try:
        return plan.lines(rec)
    except RecordError as err:
        return err


def holds_always(result: Outcome, n_statements: int) -> None:
    """What every outcome holds: a specific failure with a reason, or one readable line per statement."""
    if isinstance(result, RecordError):
        # decode: a key or header the statement reads that does not decode (the value decoded already)
        assert result.reason and str(result.kind) in ("mapping", "encode", "decode"), result
        return
    assert len(result) in (0, n_statements)
    for line in result:  # a newline may only be inside a quoted string field value
        head, time = line.split(" ", 1)[0], line.rsplit(" ", 1)[1]
        assert "\n" not in head and "\r" not in head and time.lstrip("-").isdigit()
        assert point_of(line).fields


def fails(result: Outcome, reason: str | None = None) -> None:
    assert isinstance(result, RecordError), result
    if reason is not None:
        assert result.reason == reason


def point(result: Outcome, i: int = 0) -> Any:
    assert isinstance(result, list) and result, result
    return point_of(result[i])


def star_fields(doc: Any, result: Outcome, *, ignore: tuple[str, ...] = (), line: int = 0) -> dict[str, Any] | None:
    """Checks ``*`` of the value; gives the fields a plain record's line holds, else None."""
    if not isinstance(doc, dict):
        fails(result)  # a payload that is no object: '*' has nothing to select
        assert isinstance(result, RecordError)
        assert result.reason.startswith("'*' selects the fields of an object, but the payload is a")
        return None
    top = {k: v for k, v in doc.items() if k != "time" and k not in ignore}
    if any(not in_int64(v) for v in top.values()):
        fails(result)  # an integer outside int64 fails the record, whatever else it holds
        return None
    if not plain(doc):
        if isinstance(result, list):  # the record's own scalars are its fields, as they are
            fields = point_of(result[line]).fields
            for k, v in top.items():
                if k in CARRIED and is_scalar(v) and kept(v):
                    assert fields[k] == v and type(fields[k]) is type(v)
        return None
    return star(doc, ignore=ignore)


def line_is(result: Outcome, fields: dict[str, Any], *, measurement: str = "m",
            tags: list[tuple[str, str]] | None = None, time: int | None = None, line: int = 0) -> None:
    """The line holds exactly these fields (types kept) and tags; with no fields the record fails."""
    if not fields:
        fails(result, NO_FIELDS)
        return
    p = point(result, line)
    assert (p.measurement, sorted(p.tags)) == (measurement, sorted(tags or []))
    assert p.fields == fields and [type(v) for v in p.fields.values()] == [type(v) for v in fields.values()]
    if time is not None:
        assert p.time_ns == time
    else:
        assert p.time_ns > 1_700_000_000_000_000_000  # processing time, ns


def tags_of(**values: Any) -> list[tuple[str, str]] | None:
    """The tags plain values give (left out when empty); None when one cannot be carried."""
    out = []
    for name, v in values.items():
        if not carried_tag(v):
            return None
        text = tag_text(v)
        if text is not None:
            out.append((name, text))
    return out


def get(doc: Any, *path: str) -> Any:
    for seg in path:
        if not isinstance(doc, dict) or seg not in doc:
            return Missing
        doc = doc[seg]
    return doc


def selected(result: Outcome, doc: Any, *names: str) -> dict[str, Any] | None:
    """Explicitly selected top-level scalars of a plain record, by name (a missing one fails it)."""
    for n in names:
        if get(doc, n) is Missing:  # a record's content is refused before a missing field
            fails(result, f"selected field '{n}' is missing" if plain(doc) else None)
            return None
    return {n: doc[n] for n in names} if plain(doc) else None


Check = Callable[[Any, Any, "bytes | None", Outcome], None]


def s_star(doc: Any, key: Any, header: bytes | None, r: Outcome) -> None:
    f = star_fields(doc, r)
    if f is not None:
        line_is(r, f)


def s_star_ts(doc: Any, key: Any, header: bytes | None, r: Outcome) -> None:
    f = star_fields(doc, r)
    if f is not None:
        ts = doc.get("ts", Missing)
        if not f:
            fails(r, NO_FIELDS)
        elif ts is Missing or ts is None:
            fails(r, f"timestamp 'ts' is {'missing' if ts is Missing else 'null'}")
        elif nanos(ts, 10**6) is not None:
            line_is(r, f, time=nanos(ts, 10**6))


def s_ignore_tags(doc: Any, key: Any, header: bytes | None, r: Outcome) -> None:
    f = star_fields(doc, r, ignore=("a",))
    if f is not None and nanos(doc.get("ts"), 10**6) is not None:
        tags = tags_of(a=doc.get("a", Missing))
        if tags is not None:
            line_is(r, f, tags=tags, time=nanos(doc["ts"], 10**6))


def s_alias_consts(doc: Any, key: Any, header: bytes | None, r: Outcome) -> None:
    f = star_fields(doc, r, ignore=("a",))
    if f is not None:
        z = selected(r, doc, "a")
        tags = tags_of(k="v v", z=1, x=doc.get("x", Missing))
        if z is not None and tags is not None:
            line_is(r, f | ({"z": z["a"]} if kept(z["a"]) else {}), tags=tags)


def s_ignore_time_x(doc: Any, key: Any, header: bytes | None, r: Outcome) -> None:
    f = star_fields(doc, r, ignore=("x",))
    if f is not None:
        line_is(r, f)


def s_select_micro(doc: Any, key: Any, header: bytes | None, r: Outcome) -> None:
    f = selected(r, doc, "a", "b")  # `time` is left out, present or not
    if f is not None and nanos(doc.get("ts"), 1000) is not None:
        line_is(r, {k: v for k, v in {"a": f["a"], "c": f["b"]}.items() if kept(v)}, time=nanos(doc["ts"], 1000))


def s_alias_time(doc: Any, key: Any, header: bytes | None, r: Outcome) -> None:
    f = selected(r, doc, "a", "b")
    tags = None if f is None else tags_of(b=f["b"])
    if f is not None and tags is not None:  # `a AS time` is left out like any field named time
        line_is(r, {k: v for k, v in f.items() if kept(v)}, tags=tags)


def s_alias_flat(doc: Any, key: Any, header: bytes | None, r: Outcome) -> None:
    f = selected(r, doc, "a", "b")
    if f is not None:
        line_is(r, {k: v for k, v in {"b_c": f["a"], "b": f["b"]}.items() if kept(v)})


def s_measurement_refused(doc: Any, key: Any, header: bytes | None, r: Outcome) -> None:
    fails(r)


def s_targets(doc: Any, key: Any, header: bytes | None, r: Outcome) -> None:
    f = star_fields(doc, r)
    if f is not None:
        target, tags = doc.get("a"), tags_of(x=doc.get("x", Missing))
        if carried_tag(target) and tags is not None:
            line_is(r, f, measurement=tag_text(target) or "m", tags=tags)


def s_quoted_names(doc: Any, key: Any, header: bytes | None, r: Outcome) -> None:
    f = star_fields(doc, r)
    if f is not None:
        line_is(r, f, measurement="a b,c", tags=[("a b", "c,d")])


def s_two_statements(doc: Any, key: Any, header: bytes | None, r: Outcome) -> None:
    f = selected(r, doc, "a")
    if f is not None:
        tags = tags_of(a=f["a"])
        g = star(doc, ignore=("a",))
        if tags is not None and kept(f["a"]) and g:
            line_is(r, f, line=0)
            line_is(r, g, measurement="n", tags=tags, line=1)


def s_table_only(doc: Any, key: Any, header: bytes | None, r: Outcome) -> None:
    """Shapes whose outcome for any record would restate the mapping: what always holds, and TABLE."""


SHAPES: list[tuple[str, Check]] = [
    ("INSERT INTO m SELECT * FROM t", s_star),
    ("INSERT INTO m SELECT * FROM t WITHTIMESTAMP ts", s_star_ts),
    ("INSERT INTO m SELECT * FROM t IGNORE a, b.c WITHTAG(a, b.c AS bc) WITHTIMESTAMP ts", s_ignore_tags),
    ("INSERT INTO m SELECT *, a AS z FROM t WITHTAG(k='v v', z=1, x)", s_alias_consts),
    ("INSERT INTO m SELECT *, a FROM t WITHTAG(_header.h, _key)", s_table_only),
    ("INSERT INTO m SELECT * FROM t IGNORE time, x", s_ignore_time_x),
    ("INSERT INTO m SELECT a, b AS c, time FROM t WITHTIMESTAMP ts TIMESTAMPUNIT=MICROSECONDS", s_select_micro),
    ("INSERT INTO m SELECT a, b, a AS time FROM t WITHTAG(b)", s_alias_time),
    ("INSERT INTO m SELECT a AS b_c, b FROM t", s_alias_flat),
    ("INSERT INTO m SELECT a, b.c, _key.k AS kk, _header.h AS hh, _topic, _offset FROM t WITHTAG(ts)", s_table_only),
    ("INSERT INTO m SELECT b.* FROM t IGNORE b.c WITHTAG(a)", s_table_only),
    ("INSERT INTO m SELECT _key.* FROM t", s_table_only),
    ("INSERT INTO m SELECT * FROM t WITHTARGET=a WITHTAG(x)", s_targets),
    ("INSERT INTO `a b,c` SELECT * FROM t WITHTAG(`a b`='c,d')", s_quoted_names),
    ("INSERT INTO `#m` SELECT * FROM t", s_measurement_refused),
    ("INSERT INTO `m\\` SELECT a FROM t", s_measurement_refused),
    ("INSERT INTO m SELECT * FROM t WITHTAG(`x\\`=1)", s_measurement_refused),
    ("INSERT INTO m SELECT a FROM t; INSERT INTO n SELECT * FROM t IGNORE a WITHTAG(a)", s_two_statements),
]
STATEMENTS = [kcql for kcql, _ in SHAPES]


@pytest.mark.parametrize(("kcql", "check"), SHAPES, ids=STATEMENTS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.one_of(documents, values), key=st.one_of(st.none(), documents, scalars),
       header=st.sampled_from([None, b"hv", b"a b", b"\xff", b""]))
def test_lines_are_what_the_rules_say(kcql: str, check: Check, doc: Any, key: Any, header: bytes | None) -> None:
    logging.getLogger("handler.mapping").setLevel(logging.ERROR)
    statements = parse(kcql)
    plan = Plan(statements)
    result = outcome(plan, record(doc, key, header))
    holds_always(result, len(statements) * (len(doc) if type(doc) is list else 1))  # a point per element
    if doc is None:  # a tombstone writes nothing and is counted
        assert result == [] and plan.stats.tombstones == 1
        return
    if type(doc) is list:  # an array value: a point per element, as tests/unit/test_json_arrays.py states
        return
    check(doc, key, header, result)


S4, S9, S10, S11 = STATEMENTS[4], STATEMENTS[9], STATEMENTS[10], STATEMENTS[11]
# The shapes whose outcome for any record would restate the mapping (key, headers, metadata,
# nested wildcards): records with the lines (time left off: processing time) or the reason.
TABLE: list[Any] = [
    (S4, {"a": 1, "b": 2.5}, "kk", b"hv", ["m,_key=kk,h=hv a=1i,b=2.5"]),  # `SELECT *, a`: a written once
    (S4, {"a": "x", "b": None}, None, b"", ['m a="x"']),
    (S4, {"b": 1}, "k", None, "selected field 'a' is missing"),
    (S4, {"a": 1}, "k", b"\xff", "tag 'h': header 'h' is not UTF-8 text ('utf-8' codec can't decode byte 0xff in "
                                 "position 0: invalid start byte)"),
    (S4, {"a": 1}, {"k": 1}, None, "tag '_key': a dict cannot be a tag value"),
    (S9, {"a": True, "b": {"c": "v"}, "ts": 5}, {"k": 3}, b"a b",
     ['m,ts=5 a=true,c="v",kk=3i,hh="a b",_topic="t",_offset=7i']),
    (S9, {"a": 1, "b": {"c": 1}}, {"k": 1}, None, "selected field '_header.h' is missing"),
    (S9, {"a": 1, "b": {"c": 1}}, "k", b"h", "selected field '_key.k' is missing"),
    (S9, {"a": 1, "b": {"c": [1, 2]}, "ts": "t s"}, {"k": {"z": 1}}, b"h",
     ['m,ts=t\\ s a=1i,c0=1i,c1=2i,kk_z=1i,hh="h",_topic="t",_offset=7i']),
    (S10, {"a": "t", "b": {"c": 1, "d": {"e": 2}, "f": [True, None]}}, None, None, ["m,a=t d_e=2i,f0=true"]),
    (S10, {"b": {"c": 1}}, None, None, NO_FIELDS),
    (S10, {"a": 1}, None, None, "'b.*': there is no b in the record"),
    (S10, {"b": [1]}, None, None, "'b.*' selects the fields of an object, but the b is a list"),
    (S11, {}, {"k": 1, "x": {"y": "z"}, "n": None}, None, ['m k=1i,x_y="z"']),
    (S11, {}, None, None, NO_FIELDS),
    (S11, {}, [1], None, "'_key.*' selects the fields of an object, but the payload is a list"),
    (S11, {}, {"time": 1, "t": 2**64}, None, "field 't': integer 18446744073709551616 is outside int64"),
]


@pytest.mark.parametrize(("kcql", "doc", "key", "header", "expected"), TABLE)
def test_a_record_of_the_table_gives_its_line(kcql: str, doc: Any, key: Any, header: bytes | None,
                                              expected: list[str] | str) -> None:
    result = outcome(Plan(parse(kcql)), record(doc, key, header))
    if isinstance(expected, str):
        fails(result, expected)
    else:
        assert isinstance(result, list) and [line.rsplit(" ", 1)[0] for line in result] == expected



def test_a_flat_record_gives_its_line() -> None:
    plan = Plan(parse("INSERT INTO sensors SELECT * FROM t IGNORE device, ts WITHTIMESTAMP ts WITHTAG(device, k=v)"))
    doc = {"device": "d 1", "ts": 1_700_000_000_000, "t": 1.5, "n": 3, "ok": True, "s": 'a"b\\', "nan": float("nan"),
           "null": None}
    rec = record(doc, None, None)
    assert plan.lines(rec) == ['sensors,device=d\\ 1,k=v t=1.5,n=3i,ok=true,s="a\\"b\\\\" 1700000000000000000']
    assert plan.stats.non_finite == 1


def test_a_failing_record_is_named_and_counts_once() -> None:
    plan = Plan(parse("INSERT INTO m SELECT * FROM t WITHTIMESTAMP ts"))
    with pytest.raises(RecordError) as info:
        plan.lines(record({"v": float("inf"), "big": 2**63, "ts": 1}, None, None))
    assert (info.value.reason, info.value.kind) == ("field 'big': integer 9223372036854775808 is outside int64",
                                                    "mapping")
    assert plan.stats.non_finite == 1  # the infinity before the failing field, once
    with pytest.raises(RecordError) as info:
        plan.lines(record({"bad\n": 1, "ts": 1}, None, None))
    assert (info.value.kind, info.value.reason.split(" cannot")[0]) == ("encode", "field key 'bad\\n'")


def test_a_record_is_refused_for_its_content_before_a_name_it_produces() -> None:
    # A field key that line protocol cannot carry, and a later field outside int64: the KCQL rule
    # names the record, in this statement and across the statements of the topic.
    plan = Plan(parse("INSERT INTO m SELECT * FROM t WITHTIMESTAMP ts"))
    with pytest.raises(RecordError) as info:
        plan.lines(record({"bad\n": 1, "big": 2**63, "ts": 1}, None, None))
    assert (info.value.reason, info.value.kind) == ("field 'big': integer 9223372036854775808 is outside int64",
                                                    "mapping")
    plan = Plan(parse("INSERT INTO m SELECT * FROM t; INSERT INTO n SELECT v FROM t WITHTIMESTAMP ts"))
    with pytest.raises(RecordError) as info:
        plan.lines(record({"bad\n": 1, "v": 1, "ts": "x"}, None, None))
    assert info.value.kind == "mapping" and info.value.reason.startswith("timestamp 'x' is not an ISO-8601")


def test_a_flattened_name_that_repeats_keeps_its_first_place_and_last_value() -> None:
    plan = Plan(parse("INSERT INTO m SELECT * FROM t WITHTIMESTAMP ts"))
    assert plan.lines(record({"a_b": 1, "c": 2, "a": {"b": 3}, "ts": 5}, None, None)) == ["m a_b=3i,c=2i,ts=5i 5000000"]


def test_what_a_statement_compiles_to_can_be_shown() -> None:
    from handler.mapping import describe_compiled

    (statement,) = parse("INSERT INTO `my m` SELECT * FROM readings IGNORE device WITHTIMESTAMP ts "
                         "TIMESTAMPUNIT=SECONDS WITHTAG(device, k=v)")
    assert describe_compiled(statement) == [
        "line: my\\ m,device={device},k=v {every field of the value but device} "
        "{ts: integers in seconds, floats in seconds → ns}",
        "reads: the decoded value's top level only",
        "fields: the value's own fields, each name's escaped text learnt once",
    ]
    assert Plan((statement,)).by_topic["readings"][0].describe() == describe_compiled(statement)
    (statement,) = parse("INSERT INTO `#m` SELECT v FROM t WITHTAG(_key.id AS id)")
    assert describe_compiled(statement) == [
        "line: {'#m': cannot be written},id={_key.id} v={v} {processing time, ns}",
        "reads: a Context (key, headers, nested paths or WITHTARGET; the key decoded once per record)",
        "fails every record: the measurement cannot be written",
    ]


# Values the JSON decoder never yields but the Avro one does (datetimes, dates, times, decimals,
# bytes, tuples), given to the compiled statement directly.
rich_scalars = st.one_of(
    scalars,
    st.datetimes(timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-3))])),
    st.datetimes(), st.dates(), st.times(), st.decimals(allow_nan=True), st.binary(max_size=2),
)
rich_values = st.recursive(rich_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.tuples(inner, inner),
    st.dictionaries(st.sampled_from(NAMES), inner, max_size=3)), max_leaves=6)


@pytest.mark.parametrize(("kcql", "check"), [(k, c) for k, c in SHAPES if "_key" not in k and "_header" not in k
                                             and ";" not in k], ids=lambda v: v if isinstance(v, str) else "")
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.dictionaries(st.sampled_from(NAMES), rich_values, max_size=6))
def test_decoded_avro_types_give_the_line_the_rules_say(kcql: str, check: Check, doc: dict[str, Any]) -> None:
    from handler.decode import Decoder
    from handler.mapping import Context

    logging.getLogger("handler.mapping").setLevel(logging.ERROR)
    statements = parse(kcql)
    plan = Plan(statements)
    rec = record({}, None, None)
    result: Outcome = []
    try:
        for c in plan.by_topic["t"]:
            line = c.line(Context(rec, doc, Decoder(), plan.stats), doc)
            if isinstance(line, RecordError):
                raise line
            result.append(line)
    except RecordError as err:
        result = err
    holds_always(result, len(statements) * (len(doc) if type(doc) is list else 1))  # a point per element
    check(doc, None, None, result)
    top = {k: v for k, v in doc.items() if k not in ("time", "a", "x")}
    if "SELECT * FROM t" in kcql and "`" not in kcql and any(isinstance(v, bytes) for v in top.values()):
        fails(result)  # bytes cannot be written
    if kcql == "INSERT INTO m SELECT * FROM t" and isinstance(result, list):
        fields = point_of(result[0]).fields
        for k, v in top.items():
            if k in CARRIED and isinstance(v, dt.datetime) and v.tzinfo is not None:
                epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
                assert fields[k] == (v - epoch) // dt.timedelta(milliseconds=1)  # epoch ms, floored, exactly
            elif k in CARRIED and isinstance(v, dt.date) and not isinstance(v, dt.datetime):
                assert fields[k] == (v - dt.date(1970, 1, 1)).days * 86_400_000
