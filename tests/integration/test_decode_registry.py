"""Through lambda_handler: registry requests per process (acceptance 3), and undecodable records
reported with topic, partition, offset and reason under each error policy."""

from __future__ import annotations

import pytest

from handler import app
from handler.app import lambda_handler
from handler.errors import BatchFailed
from influx_sink_tools.eventgen import Rec, build_event
from influx_sink_tools.framing import confluent_frame, glue_frame, write_body
from tests.conftest import query_points

pytest_plugins = ["tests.fixtures_registry"]
pytestmark = pytest.mark.influx

A = {"type": "record", "name": "A", "fields": [{"name": "n", "type": "int"}, {"name": "s", "type": "string"}]}
B = {"type": "record", "name": "B", "fields": [{"name": "n", "type": "int"}, {"name": "x", "type": "double"}]}


def _batch(sid_a: int, sid_b: int, start: int, count: int) -> dict:
    recs = []
    for i in range(start, start + count):
        if i % 2:
            value = confluent_frame(sid_a, write_body(A, {"n": i, "s": f"r{i}"}))
        else:
            value = confluent_frame(sid_b, write_body(B, {"n": i, "x": i / 2}))
        recs.append(Rec("avro-topic", i % 3, i, value, timestamp=1_700_000_000_000 + i))
    return build_event(recs)


def test_one_request_per_schema_id_per_process(sink_env, influx, db, registry):
    sid_a = registry.register("avro-topic-value", A)
    sid_b = registry.register("avro-topic-value", B)
    sink_env("INSERT INTO m SELECT * FROM avro-topic WITHTIMESTAMP _timestamp WITHTAG(_partition AS p)",
             CONNECT_INFLUX_SCHEMA_REGISTRY_URL=registry.url)
    for invocation in range(3):
        assert lambda_handler(_batch(sid_a, sid_b, invocation * 200, 200), None) == {"batchItemFailures": []}
    assert registry.requests == {f"/schemas/ids/{sid_a}": 1, f"/schemas/ids/{sid_b}": 1}
    # A new cold start of the handler's wiring in the same process still has the schemas.
    app.reset_runtime()
    assert lambda_handler(_batch(sid_a, sid_b, 600, 10), None) == {"batchItemFailures": []}
    assert registry.schema_requests() == 2
    (count,) = query_points(influx, db, "SELECT count(n) FROM m")
    assert count["count"] == 610


def _bad_event(sid: int) -> dict:
    good = confluent_frame(sid, write_body(A, {"n": 1, "s": "ok"}))
    return build_event([
        Rec("avro-topic", 2, 40, good),
        Rec("avro-topic", 2, 41, good[:-2]),  # truncated
        Rec("avro-topic", 2, 42, confluent_frame(77, b"\x02")),  # unknown schema id
        Rec("avro-topic", 2, 43, b"\x05garbage"),  # neither framed Avro nor JSON
        Rec("avro-topic", 2, 44, None),  # tombstone: skipped, not an error
    ])


def test_throw_names_topic_partition_offset_and_reason(sink_env, influx, db, registry):
    sid = registry.register("avro-topic-value", A)
    sink_env("INSERT INTO m SELECT * FROM avro-topic", CONNECT_INFLUX_SCHEMA_REGISTRY_URL=registry.url)
    with pytest.raises(BatchFailed) as info:
        lambda_handler(_bad_event(sid), None)
    failures = {f.offset: f for f in info.value.failures}
    assert sorted(failures) == [41, 42, 43]
    assert {(f.topic, f.partition, f.kind) for f in failures.values()} == {("avro-topic", 2, "decode")}
    assert failures[41].reason.startswith("value is not valid Avro for schema id 1: truncated")
    assert failures[42].reason == (f"value: schema id 77 is not in the schema registry at {registry.url} "
                                   "(HTTP 404: Schema 77 not found)")
    assert failures[43].reason.startswith("value is not valid JSON: ")
    message = str(info.value)
    assert "topic=avro-topic partition=2 offset=41: value is not valid Avro for schema id 1: truncated" in message
    assert "topic=avro-topic partition=2 offset=42: value: schema id 77 is not in the schema registry" in message
    assert query_points(influx, db, "SELECT * FROM m") == []  # THROW writes nothing


def test_retry_reports_from_the_first_undecodable_record(sink_env, influx, db, registry):
    sid = registry.register("avro-topic-value", A)
    sink_env("INSERT INTO m SELECT * FROM avro-topic", CONNECT_INFLUX_SCHEMA_REGISTRY_URL=registry.url,
             CONNECT_INFLUX_ERROR_POLICY="RETRY")
    response = lambda_handler(_bad_event(sid), None)
    assert response == {"batchItemFailures": [
        {"itemIdentifier": {"partition": "avro-topic-2", "offset": o}} for o in (41, 42, 43, 44)]}
    assert [r["n"] for r in query_points(influx, db, "SELECT n FROM m")] == [1]


def test_noop_writes_the_good_records(sink_env, influx, db, registry, glue):
    sid = registry.register("avro-topic-value", A)
    vid = glue.register(A)
    event = _bad_event(sid)
    event["records"]["avro-topic-2"].append(build_event([
        Rec("avro-topic", 2, 45, glue_frame(vid, write_body(A, {"n": 2, "s": "glue"}), compress=True))
    ])["records"]["avro-topic-2"][0])
    sink_env("INSERT INTO m SELECT * FROM avro-topic", CONNECT_INFLUX_SCHEMA_REGISTRY_URL=registry.url,
             CONNECT_INFLUX_ERROR_POLICY="NOOP")
    assert lambda_handler(event, None) == {"batchItemFailures": []}
    assert sorted(r["s"] for r in query_points(influx, db, "SELECT s FROM m")) == ["glue", "ok"]
