"""``Plan.lines`` gives, for random records, the line the mapping rules say.

The rules are held by ``tests/_mapping_reference.py``: a frozen copy of the mapping as first
written (values collected into a point, then encoded). For every statement shape below and random
records (odd names, escapes, non-finite floats, integers beyond int64, nested objects, arrays,
nulls, ``time`` fields, lone surrogates), ``Plan.lines`` gives the same lines, or fails with the
same RecordError (reason and kind), and counts the same left-out values. Pure mapping: no
InfluxDB needed (the round trip through InfluxDB is tests/integration/test_lineproto.py's, via the handler).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handler.errors import RecordError
from handler.mapping import Plan
from handler.records import KafkaRecord, parse_event
from influx_sink_tools.eventgen import Rec, record_json
from kcql import parse
from tests import _mapping_reference as reference

STATEMENTS = [
    "INSERT INTO m SELECT * FROM t",
    "INSERT INTO m SELECT * FROM t WITHTIMESTAMP ts",
    "INSERT INTO m SELECT * FROM t IGNORE a, b.c WITHTAG(a, b.c AS bc) WITHTIMESTAMP ts",
    "INSERT INTO m SELECT *, a AS z FROM t WITHTAG(k='v v', z=1, x)",
    "INSERT INTO m SELECT *, a FROM t WITHTAG(_header.h, _key)",
    "INSERT INTO m SELECT * FROM t IGNORE time, x",
    "INSERT INTO m SELECT a, b AS c, time FROM t WITHTIMESTAMP ts TIMESTAMPUNIT=MICROSECONDS",
    "INSERT INTO m SELECT a, b, a AS time FROM t WITHTAG(b)",
    "INSERT INTO m SELECT a AS b_c, b FROM t",
    "INSERT INTO m SELECT a, b.c, _key.k AS kk, _header.h AS hh, _topic, _offset FROM t WITHTAG(ts)",
    "INSERT INTO m SELECT b.* FROM t IGNORE b.c WITHTAG(a)",
    "INSERT INTO m SELECT _key.* FROM t",
    "INSERT INTO m SELECT * FROM t WITHTARGET=a WITHTAG(x)",
    "INSERT INTO `a b,c` SELECT * FROM t WITHTAG(`a b`='c,d')",
    "INSERT INTO `#m` SELECT * FROM t",
    "INSERT INTO `m\\` SELECT a FROM t",
    "INSERT INTO m SELECT * FROM t WITHTAG(`x\\`=1)",
    "INSERT INTO m SELECT a FROM t; INSERT INTO n SELECT * FROM t IGNORE a WITHTAG(a)",
]

NAMES = ["a", "b", "c", "x", "ts", "time", "", " ", "a b", "a,b", "a=b", 'q"', "back\\", "\\ x", "new\nline",
         "#h", "\t", "\x00", "é", "\ud800"]
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


def record(value: Any, key: Any, header: bytes | None) -> KafkaRecord:
    rec = Rec("t", 0, 7, None if value is None else json.dumps(value).encode(),
              None if key is None else json.dumps(key).encode(),
              headers=[] if header is None else [("h", header)], timestamp=1_700_000_000_123)
    (parsed,) = parse_event({"eventSource": "aws:kafka", "records": {"t-0": [record_json(rec)]}})
    return parsed


def outcome(plan: Plan | reference.Plan, rec: KafkaRecord, sys_time: bool) -> tuple[Any, ...]:
    try:
        lines = plan.lines(rec) if isinstance(plan, Plan) else reference.reference_lines(plan, rec)
    except RecordError as err:
        return ("error", err.reason, err.kind, plan.stats.non_finite)
    if sys_time:  # processing time differs between the two calls: compare the rest of the line
        lines = [line.rsplit(" ", 1)[0] for line in lines]
    return ("lines", lines, plan.stats.non_finite, plan.stats.tombstones)


@pytest.mark.parametrize("kcql", STATEMENTS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.one_of(documents, values), key=st.one_of(st.none(), documents, scalars),
       header=st.sampled_from([None, b"hv", b"a b", b"\xff", b""]))
def test_lines_are_what_the_rules_say(kcql: str, doc: Any, key: Any, header: bytes | None) -> None:
    logging.getLogger("handler.mapping").setLevel(logging.ERROR)
    statements = parse(kcql)
    sys_time = any(s.timestamp is None for s in statements)
    rec = record(doc, key, header)
    assert outcome(Plan(statements), rec, sys_time) == outcome(reference.Plan(statements), rec, sys_time)


def test_a_flat_record_gives_its_line() -> None:
    plan = Plan(parse("INSERT INTO sensors SELECT * FROM t IGNORE device, ts WITHTIMESTAMP ts WITHTAG(device, k=v)"))
    doc = {"device": "d 1", "ts": 1_700_000_000_000, "t": 1.5, "n": 3, "ok": True, "s": 'a"b\\', "nan": float("nan"),
           "null": None}
    rec = record(doc, None, None)
    assert plan.lines(rec) == ['sensors,device=d\\ 1,k=v t=1.5,n=3i,ok=true,s="a\\"b\\\\" 1700000000000000000']
    assert plan.stats.non_finite == 1
    assert reference.reference_lines(reference.Plan(plan.statements), rec) == plan.lines(rec)


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


@pytest.mark.parametrize("kcql", [s for s in STATEMENTS if "_key" not in s and "_header" not in s and ";" not in s])
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.dictionaries(st.sampled_from(NAMES), rich_values, max_size=6))
def test_decoded_avro_types_give_the_line_the_rules_say(kcql: str, doc: dict[str, Any]) -> None:
    from handler.decode import Decoder
    from handler.mapping import Context

    logging.getLogger("handler.mapping").setLevel(logging.ERROR)
    statements = parse(kcql)
    sys_time = any(s.timestamp is None for s in statements)
    rec = record({}, None, None)

    def ours() -> tuple[Any, ...]:
        plan = Plan(statements)
        try:
            lines = []
            for c in plan.by_topic["t"]:
                line = c.line(Context(rec, doc, Decoder(), plan.stats), doc)
                if isinstance(line, RecordError):
                    raise line
                lines.append(line)
        except RecordError as err:
            return ("error", err.reason, err.kind)
        return ("lines", [line.rsplit(" ", 1)[0] if sys_time else line for line in lines], plan.stats.non_finite)

    def theirs() -> tuple[Any, ...]:
        plan = reference.Plan(statements)
        try:
            ctx = reference.Context(rec, doc, plan.decoder, plan.stats)
            lines = [reference.encode(c.point(ctx)) for c in plan.by_topic["t"]]
        except RecordError as err:
            return ("error", err.reason, err.kind)
        return ("lines", [line.rsplit(" ", 1)[0] if sys_time else line for line in lines], plan.stats.non_finite)

    assert ours() == theirs()
