"""The local runner against a real broker and a real InfluxDB.

JSON and Confluent-framed Avro records go to a 3-partition topic; ``python -m influx_sink_tools.consume``
feeds them to ``lambda_handler``; every record must be found in InfluxDB. ``WITHTIMESTAMP
_timestamp`` with ``WITHTAG(_partition, _offset)`` makes every point distinct, so the count of
points is the count of records and the tags say exactly which records arrived.
"""

from __future__ import annotations

import json

import pytest

from influx_sink_tools.framing import confluent_frame, write_body
from tests.e2e.conftest import (
    KCQL,
    committed,
    coordinates,
    count,
    produce,
    runner_env,
    stored,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.influx]

USER = {"type": "record", "name": "User",
        "fields": [{"name": "company", "type": "string"}, {"name": "address", "type": "string"},
                   {"name": "latitude", "type": "float"}, {"name": "longitude", "type": "float"}]}


def test_json_records_all_arrive(kafka, influx, db, topic, start_runner):
    values = [json.dumps({"sensor": f"s{i % 7}", "reading": i * 0.5, "ok": i % 2 == 0}).encode()
              for i in range(450)]
    sent = produce(kafka.bootstrap, topic, values)
    group = unique("g-")
    runner = start_runner(topic, group, runner_env(influx.url, db, KCQL.format(m="readings", topic=topic)),
                          "--until-idle", "1", "--batch-size", "100", cli=True)  # as `influx-sink consume`
    assert runner.wait() == 0, runner.log()

    rows = stored(influx, db, "readings")
    assert coordinates(rows) == sorted(sent)
    by_offset = {(int(r["_partition"]), int(r["_offset"])): r for r in rows}
    for i, coord in enumerate(sent):
        assert by_offset[coord]["reading"] == i * 0.5
        assert by_offset[coord]["sensor"] == f"s{i % 7}"
    assert runner.handled() == 450
    assert committed(kafka.bootstrap, group, topic) == {p: 150 for p in range(3)}


def test_avro_records_all_arrive(kafka, influx, db, topic, start_runner, schema_registry):
    schema_id = schema_registry.register(USER)
    records = [{"company": f"c{i}", "address": "MontainTop", "latitude": -49.5 + i, "longitude": 141.25}
               for i in range(120)]
    # What a Confluent Avro serializer produces: magic byte 0, the 4-byte schema id, the body.
    values = [confluent_frame(schema_id, write_body(USER, r)) for r in records]
    sent = produce(kafka.bootstrap, topic, values)
    env = runner_env(influx.url, db, KCQL.format(m="users", topic=topic),
                     CONNECT_INFLUX_SCHEMA_REGISTRY_URL=schema_registry.url)
    runner = start_runner(topic, unique("g-"), env, "--until-idle", "1")
    assert runner.wait() == 0, runner.log()

    rows = stored(influx, db, "users")
    assert coordinates(rows) == sorted(sent)
    by_offset = {(int(r["_partition"]), int(r["_offset"])): r for r in rows}
    for rec, coord in zip(records, sent, strict=True):
        row = by_offset[coord]
        assert (row["company"], row["address"], row["latitude"], row["longitude"]) == (
            rec["company"], rec["address"], rec["latitude"], rec["longitude"])
    # One schema fetch per schema id per process: the runner is one warm "Lambda".
    assert schema_registry.requests == {f"/schemas/ids/{schema_id}": 1}


def test_sigterm_then_restart_resumes_from_committed_offsets(kafka, influx, db, topic, start_runner):
    values = [json.dumps({"n": i}).encode() for i in range(1500)]
    sent = produce(kafka.bootstrap, topic, values)
    group = unique("g-")
    env = runner_env(influx.url, db, KCQL.format(m="m", topic=topic))
    first = start_runner(topic, group, env, "--batch-size", "10", "--batch-window-ms", "0")
    wait_until(lambda: count(influx, db, "m") > 0, "the first runner to write something")
    first.terminate()
    assert first.wait() == 0, first.log()
    assert "SIGTERM received; stopping after the current batch" in first.log()
    handled_first = first.handled()
    offsets = committed(kafka.bootstrap, group, topic)
    assert sum(offsets.values()) == handled_first  # exactly what it handled, committed before leaving

    more = [json.dumps({"n": i}).encode() for i in range(1500, 1800)]
    sent += produce(kafka.bootstrap, topic, more, start=1500)
    second = start_runner(topic, group, env, "--until-idle", "1", "--batch-size", "200")
    assert second.wait() == 0, second.log()

    assert coordinates(stored(influx, db, "m")) == sorted(sent)
    # The second runner started where the first one committed: nothing read twice, nothing skipped.
    assert handled_first + second.handled() == 1800
    assert committed(kafka.bootstrap, group, topic) == {p: 600 for p in range(3)}


def test_sigint_stops_after_the_current_batch(kafka, influx, db, topic, start_runner):
    produce(kafka.bootstrap, topic, [json.dumps({"n": i}).encode() for i in range(30)])
    group = unique("g-")
    runner = start_runner(topic, group, runner_env(influx.url, db, KCQL.format(m="m", topic=topic)))
    wait_until(lambda: count(influx, db, "m") == 30, "all 30 records in InfluxDB")
    runner.proc.send_signal(2)
    assert runner.wait() == 0, runner.log()
    assert "SIGINT received" in runner.log()
    assert committed(kafka.bootstrap, group, topic) == {p: 10 for p in range(3)}


def test_bad_settings_fail_before_consuming(kafka, topic, start_runner):
    env = runner_env("http://127.0.0.1:1", "db", "INSERT INTO m SELECT FROM")
    runner = start_runner(topic, unique("g-"), env)
    assert runner.wait() == 2
    assert "connect.influx.kcql" in runner.log()
    assert "consuming" not in runner.log()  # never joined the group
