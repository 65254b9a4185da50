"""Hostile input: a bad record fails alone, under the error policy, with a reason naming it.

Each case puts one malformed record at partition 0, offset 2 of a batch of good records (partition
0 offsets 0..4, partition 1 offsets 0..2) and runs the batch against the real InfluxDB:

- THROW raises BatchFailed naming ``topic=t partition=0 offset=2`` and writes nothing;
- RETRY writes partition 0's offsets 0 and 1 and all of partition 1, and reports offsets 2..4 of
  partition 0;
- NOOP writes every good record and logs the bad one.

What InfluxDB holds afterwards is compared with what the good records carry, field by field, so
a bad record that was silently written with made-up values (a header byte 300 read as 44, a
Python repr as a field name) fails the test as surely as an exception would.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest

from handler.delivery import run_batch
from handler.errors import BatchFailed
from handler.records import EventError, parse_event
from handler.runtime import build
from tests.conftest import query_points

pytestmark = pytest.mark.influx

KCQL = ("INSERT INTO m SELECT v, _key.k AS k FROM t WITHTIMESTAMP _timestamp "
        "WITHTAG(_partition, _offset, _header.h AS h)")
POLICIES = ("THROW", "RETRY", "NOOP")
BAD = (0, 2)
GOOD = [(0, o) for o in range(5) if o != 2] + [(1, o) for o in range(3)]
DEEP = 5000


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def entry(partition: int, offset: int) -> dict[str, Any]:
    """A good record as the event source sends it."""
    return {"topic": "t", "partition": partition, "offset": offset, "timestamp": 1_700_000_000_000 + offset,
            "timestampType": "CREATE_TIME", "key": b64(json.dumps({"k": offset}).encode()),
            "value": b64(json.dumps({"v": partition * 100 + offset}).encode()),
            "headers": [{"h": list(b"hdr")}]}


def connect(schema: Any, payload: Any) -> str:
    return b64(json.dumps({"schema": schema, "payload": payload}).encode())


def nested(depth: int, inner: str = "1") -> bytes:
    return ('{"v": ' + '{"a": ' * depth + inner + "}" * depth + "}").encode()


# Each case: what replaces fields of the bad record's entry, and a word its reason must contain.
CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    # ---- values and keys nested deeply (msgspec and json.loads both give up) and flattened deeply
    "value nested 100k deep": ({"value": b64(b"[" * 100_000 + b"]" * 100_000)}, "nested too deeply"),
    "value object 990 deep": ({"value": b64(nested(990))}, "nested too deeply"),
    "value object 5000 deep": ({"value": b64(nested(DEEP))}, "nested too deeply"),
    "key nested 100k deep": ({"key": b64(b"[" * 100_000 + b"]" * 100_000)}, "key is nested too deeply"),
    "key object 5000 deep": ({"key": b64(b'{"k": ' + b'{"a": ' * DEEP + b"1" + b"}" * DEEP + b"}")},
                             "nested too deeply"),
    "Connect string payload deep": ({"value": connect({"type": "string"}, "[" * DEEP + "]" * DEEP)},
                                    "nested too deeply"),
    "Connect schema deep": ({"value": b64(b'{"schema": ' + b'{"type": "array", "items": ' * DEEP + b"{}"
                                          + b"}" * DEEP + b', "payload": ' + b"[" * DEEP + b"]" * DEEP + b"}")},
                            "nested too deeply"),
    "Connect key envelope deep": ({"key": connect({"type": "string"}, "[" * DEEP + "]" * DEEP)},
                                  "nested too deeply"),
    # ---- malformed Connect envelopes
    "Connect fields not a list": ({"value": connect({"type": "struct", "fields": 5}, {"v": 1})}, "not a list"),
    "Connect fields an object": ({"value": connect({"type": "struct", "fields": {"v": {"type": "int32"}}},
                                                   {"v": 1})}, "not a list"),
    "Connect fields text": ({"value": connect({"type": "struct", "fields": "v"}, {"v": 1})}, "not a list"),
    "Connect type a list": ({"value": connect({"type": ["struct"]}, {"v": 1})}, "not a name"),
    "Connect field type an object": ({"value": connect({"type": "struct", "fields": [
        {"field": "v", "type": {"x": 1}}]}, {"v": 1})}, "not a name"),
    "Connect float64 beyond double": ({"value": b64(b'{"schema": {"type": "struct", "fields": [{"field": "v", '
                                                    b'"type": "float64"}]}, "payload": {"v": 1' + b"0" * 400
                                                    + b"}}")}, "beyond the range"),
    "Connect int32 beyond range": ({"value": connect({"type": "struct", "fields": [
        {"field": "v", "type": "int32"}]}, {"v": 2**31})}, "beyond the range"),
    "Connect Decimal number beyond double": ({"value": b64(
        b'{"schema": {"type": "struct", "fields": [{"field": "v", "type": "bytes", "name": '
        b'"org.apache.kafka.connect.data.Decimal"}]}, "payload": {"v": 1' + b"0" * 400 + b"}}")},
        "beyond the range"),
    "Connect Decimal parameters a list": ({"value": connect({"type": "struct", "fields": [
        {"field": "v", "type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": [2]}]},
        {"v": "AQ=="})}, "scale"),
    "Connect Decimal scale huge": ({"value": connect({"type": "struct", "fields": [
        {"field": "v", "type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
         "parameters": {"scale": "9" * 5000}}]}, {"v": "AQ=="})}, "scale"),
    "Connect map key an object": ({"value": connect({"type": "map", "values": {"type": "int32"}},
                                                    [[{"a": 1}, 1]])}, "key of the map"),
    "Connect map pair text": ({"value": connect({"type": "map", "values": {"type": "string"}}, ["vb"])},
                              "pairs"),
    # ---- the event's own fields of the wrong type
    "value a number": ({"value": 5}, "value is a number (5) in the event, not base64 text"),
    "value a list": ({"value": [1, 2]}, "not base64 text"),
    "value an object": ({"value": {"v": 1}}, "not base64 text"),
    "value a boolean": ({"value": True}, "not base64 text"),
    "value not ASCII": ({"value": "é"}, "not valid base64"),
    "key a number": ({"key": 7}, "key is a number (7) in the event, not base64 text"),
    "key an object": ({"key": {"k": 1}}, "not base64 text"),
    "headers an object": ({"headers": {"h": list(b"hdr")}}, "headers are an object"),
    "headers text": ({"headers": "h"}, "not a list of headers"),
    "headers a number": ({"headers": 3}, "not a list of headers"),
    "header entry a list": ({"headers": [["h", list(b"hdr")]]}, "headers[0] is a list"),
    "header value a number": ({"headers": [{"h": 104}]}, "header 'h' is a number (104)"),
    "header value an object": ({"headers": [{"h": {"a": 1}}]}, "header 'h' is an object"),
    "header byte 300": ({"headers": [{"h": [104, 300]}]}, "-128..127"),
    "header byte -200": ({"headers": [{"h": [-200]}]}, "-128..127"),
    "header byte 256": ({"headers": [{"h": [256]}]}, "-128..127"),
    "header bytes booleans": ({"headers": [{"h": [True, False]}]}, "boolean"),
    "header bytes floats": ({"headers": [{"h": [104.0]}]}, "-128..127"),
    "header bytes text": ({"headers": [{"h": ["h"]}]}, "-128..127"),
    "header value bad base64": ({"headers": [{"h": "!!"}]}, "base64"),
    "header not UTF-8": ({"headers": [{"h": [-1]}]}, "not UTF-8"),
    "topic a number": ({"topic": 5}, "topic for this record is a number (5)"),
    "topic a list": ({"topic": ["t"]}, "topic for this record is a list"),
    "timestamp of 5000 digits": ({"timestamp": "1" * 5000}, "outside what InfluxDB can store"),
    "timestamp of 5000 zeros then 1": ({"timestamp": "0" * 5000 + "1"}, None),  # 1 ms after the epoch: valid
    "timestamp a boolean": ({"timestamp": True}, "bool, not a time"),
    "timestamp an object": ({"timestamp": {}}, "not a time"),
    "timestamp beyond int64 ns": ({"timestamp": 10**30}, "outside what InfluxDB can store"),
    "timestamp NaN": ({"timestamp": float("nan")}, "nan"),
    "timestamp null": ({"timestamp": None}, "null"),
    # ---- payload values InfluxDB cannot store
    "integer beyond int64": ({"value": b64(b'{"v": 1' + b"0" * 30 + b"}")}, "outside int64"),
    "integer of 5000 digits": ({"value": b64(b'{"v": 1' + b"0" * 5000 + b"}")}, "more than 4300 digits"),
    "lone surrogate": ({"value": b64(b'{"v": "\\ud800"}')}, "not valid Unicode"),
    "invalid UTF-8": ({"value": b64(b'{"v": "\xff"}')}, "not valid JSON"),
    "key of 5000 digits": ({"key": b64(b'{"k": 1' + b"0" * 5000 + b"}")}, "more than 4300 digits"),
}


def event_with(bad: dict[str, Any]) -> dict[str, Any]:
    entries = [entry(0, o) for o in range(5)] + [entry(1, o) for o in range(3)]
    entries[2] = {**entries[2], **bad}
    records: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        records.setdefault(f"t-{e['partition']}", []).append(e)
    return {"eventSource": "aws:kafka", "records": records}


def runtime(url: str, db: str, policy: str) -> Any:
    return build({"CONNECT_INFLUX_URL": url, "CONNECT_INFLUX_DB": db, "CONNECT_INFLUX_KCQL": KCQL,
                  "CONNECT_INFLUX_ERROR_POLICY": policy, "CONNECT_INFLUX_RETRY_INTERVAL": "100"})


def stored(influx: Any, db: str) -> dict[tuple[int, int], tuple[Any, ...]]:
    """Every point in InfluxDB: (partition, offset) → (v, k, h, time), exactly as stored."""
    rows = query_points(influx, db, 'SELECT * FROM m')
    out = {}
    for r in rows:
        key = (int(r["_partition"]), int(r["_offset"]))
        assert key not in out, f"two points for {key}"
        out[key] = (r["v"], r["k"], r["h"], r["time"])
        assert set(r) == {"time", "v", "k", "h", "_partition", "_offset", "_measurement"}, r
    return out


def expected(keys: list[tuple[int, int]]) -> dict[tuple[int, int], tuple[Any, ...]]:
    return {(p, o): (p * 100 + o, o, "hdr", (1_700_000_000_000 + o) * 1_000_000) for p, o in keys}


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_record_fails_alone_under_the_policy(influx, db, caplog, case, policy):
    bad, reason = CASES[case]
    rt = runtime(influx.url, db, policy)
    records = parse_event(event_with(bad))
    if reason is None:  # a case that looks odd but is a valid record: everything is written
        result = run_batch(records, rt.plan, rt.writer, policy)
        assert result.failures == [] and result.response == {"batchItemFailures": []}
        assert set(stored(influx, db)) == set(GOOD) | {BAD}
        return
    if policy == "THROW":
        with pytest.raises(BatchFailed) as err:
            run_batch(records, rt.plan, rt.writer, policy)
        assert [(f.topic, f.partition, f.offset) for f in err.value.failures] == [("t", *BAD)]
        assert "topic=t partition=0 offset=2: " in str(err.value) and reason in str(err.value)
        assert stored(influx, db) == {}
        return
    with caplog.at_level(logging.ERROR, logger="handler.delivery"):
        result = run_batch(records, rt.plan, rt.writer, policy)
    assert [(f.topic, f.partition, f.offset) for f in result.failures] == [("t", *BAD)]
    assert reason in result.failures[0].reason
    assert len(result.failures[0].reason) < 400  # a reason, not a dump of the payload
    logged = [r.getMessage() for r in caplog.records if r.name == "handler.delivery"]
    assert any("topic=t partition=0 offset=2" in m and reason in m for m in logged)
    if policy == "RETRY":
        assert result.response == {"batchItemFailures": [
            {"itemIdentifier": {"partition": "t-0", "offset": o}} for o in (2, 3, 4)]}
        assert stored(influx, db) == expected([(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)])
    else:
        assert result.response == {"batchItemFailures": []}
        assert stored(influx, db) == expected(GOOD)


def test_through_the_handler_retry_reports_the_bad_record_and_the_rest_of_its_partition(sink_env, influx, db):
    from handler.app import lambda_handler

    sink_env(KCQL, CONNECT_INFLUX_ERROR_POLICY="RETRY")
    response = lambda_handler(event_with({"headers": [{"h": [104, 300]}]}), None)
    assert response == {"batchItemFailures": [{"itemIdentifier": {"partition": "t-0", "offset": o}}
                                              for o in (2, 3, 4)]}
    assert stored(influx, db) == expected([(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)])


def test_through_the_handler_throw_names_the_record(sink_env, influx, db):
    from handler.app import lambda_handler

    sink_env(KCQL)
    with pytest.raises(BatchFailed, match=r"topic=t partition=0 offset=2: .*nested too deeply"):
        lambda_handler(event_with({"value": b64(nested(DEEP))}), None)
    assert stored(influx, db) == {}


# ------------------------------------------------------------------ the last guard

def test_an_unexpected_exception_in_one_record_fails_that_record_only(influx, db, monkeypatch, caplog):
    # A stand-in for a bug not found yet: the decoder raises TypeError for one record only.
    rt = runtime(influx.url, db, "NOOP")
    decode = rt.plan.decoder.value_or_message  # what the mapping stage calls

    def flaky(record: Any) -> Any:
        if record.offset == 2 and record.partition == 0:
            raise TypeError("unhashable type: 'list'")
        return decode(record)

    monkeypatch.setattr(rt.plan.decoder, "value_or_message", flaky)
    rt.plan._lines_by_topic.clear()
    with caplog.at_level(logging.WARNING, logger="handler.delivery"):
        result = run_batch(parse_event(event_with({})), rt.plan, rt.writer, "NOOP")
    assert [(f.partition, f.offset, f.kind) for f in result.failures] == [(0, 2, "mapping")]
    assert "TypeError: unhashable type: 'list'" in result.failures[0].reason
    assert any(r.exc_info for r in caplog.records if "unexpected TypeError" in r.getMessage())
    assert stored(influx, db) == expected(GOOD)


# ------------------------------------------------------------------ event-level problems, in plain words

@pytest.mark.parametrize("change, message", [
    (lambda rs: rs["t-0"].__setitem__(3, None), "records['t-0'][3] is null, not a record object"),
    (lambda rs: rs["t-0"].__setitem__(3, [1]), "records['t-0'][3] is a list, not a record object"),
    (lambda rs: rs["t-0"].__setitem__(3, "x"), "records['t-0'][3] is the text 'x', not a record object"),
    (lambda rs: rs["t-0"][3].pop("partition"), "records['t-0'][3].partition is missing"),
    (lambda rs: rs["t-0"][3].__setitem__("partition", None), "records['t-0'][3].partition is null"),
    (lambda rs: rs["t-0"][3].pop("offset"), "records['t-0'][3].offset is missing"),
    (lambda rs: rs["t-0"][3].__setitem__("offset", None), "records['t-0'][3].offset is null"),
    (lambda rs: rs["t-0"][3].pop("topic"), "records['t-0'][3].topic is missing"),
    (lambda rs: rs["t-0"][3].__setitem__("topic", None), "records['t-0'][3].topic is null"),
    (lambda rs: rs["t-0"][3].__setitem__("offset", -1), "records['t-0'][3].offset is a number (-1), not a whole "
                                                        "number from 0 to 9223372036854775807"),
    (lambda rs: rs["t-0"][3].__setitem__("offset", 2.5), "records['t-0'][3].offset is a number (2.5)"),
    (lambda rs: rs["t-0"][3].__setitem__("offset", True), "records['t-0'][3].offset is a boolean (true)"),
    (lambda rs: rs["t-0"][3].__setitem__("offset", "1" * 5000), "records['t-0'][3].offset is the text '111"),
    (lambda rs: rs["t-0"][3].__setitem__("offset", float("inf")), "records['t-0'][3].offset is a number (inf)"),
    (lambda rs: rs["t-0"][3].__setitem__("partition", "zero"), "records['t-0'][3].partition is the text 'zero'"),
    (lambda rs: rs["t-0"][3].__setitem__("partition", 2**40), "records['t-0'][3].partition is a number"),
    (lambda rs: rs.__setitem__("t-0", 5), "records['t-0'] is a number (5), not a list of records"),
])
def test_a_record_without_usable_coordinates_is_an_event_error_in_plain_words(change, message):
    event = event_with({})
    change(event["records"])
    with pytest.raises(EventError) as err:
        parse_event(event)
    assert message in str(err.value)
    assert "Error(" not in str(err.value) and "Traceback" not in str(err.value)  # no Python exception repr


def test_offsets_and_partitions_given_as_digit_strings_are_taken():
    event = event_with({"offset": "2", "partition": "0"})
    records = parse_event(event)
    assert [(r.partition, r.offset) for r in records][:3] == [(0, 0), (0, 1), (0, 2)]
    assert all(type(r.offset) is int and type(r.partition) is int for r in records)


def test_a_topic_that_is_not_text_is_reported_under_its_group():
    records = parse_event(event_with({"topic": {"name": "t"}}))
    bad = records[2]
    assert (bad.topic, bad.partition, bad.offset, bad.partition_id) == ("t", 0, 2, "t-0")
