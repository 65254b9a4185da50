"""``--invoke direct`` (the records to the handler's pipeline) writes exactly what ``--invoke event`` does.

The same records — keys, repeated and null-valued headers, a tombstone, a record that fails — are
read by two runners of different groups, one per mode, into two databases of the same InfluxDB;
the stored points must be identical, and the failed record reported by both.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import committed, produce, runner_env, stored, unique

pytestmark = [pytest.mark.e2e, pytest.mark.influx]

KCQL = ("INSERT INTO m SELECT *, _key AS key, _header.trace AS trace FROM {topic} "
        "WITHTIMESTAMP _timestamp WITHTAG(_partition, _offset, _topic)")


@pytest.mark.parametrize("backend", ["librdkafka", "kafka-python"])
def test_direct_and_event_invocations_store_the_same_points(backend, kafka, influx, topic, start_runner):
    values: list[bytes | None] = [json.dumps({"n": i, "label": f"é{i}", "ok": i % 2 == 0}).encode()
                                  for i in range(30)]
    values[4] = None  # a tombstone: skipped by the handler in both modes
    values[11] = b"{not json"  # fails its record in both modes
    keys = [f"k{i}".encode() for i in range(30)]
    produce(kafka.bootstrap, topic, values, keys=keys, headers=[("trace", b"t-\xc3\xa9"), ("trace", b"second")])
    rows = {}
    logs = {}
    for mode in ("direct", "event"):
        db = unique(f"db_{mode}_")
        influx.query(f'CREATE DATABASE "{db}"')
        group = unique("g-")
        env = runner_env(influx.url, db, KCQL.format(topic=topic), CONNECT_INFLUX_ERROR_POLICY="NOOP")
        runner = start_runner(topic, group, env, "--until-idle", "1", "--invoke", mode, "--backend", backend)
        assert runner.wait() == 0, runner.log()
        rows[mode] = sorted(stored(influx, db, "m"), key=lambda r: (r["_partition"], int(r["_offset"])))
        logs[mode] = runner.stdout_path.read_text(errors="replace")
        assert committed(kafka.bootstrap, group, topic) == {p: 10 for p in range(3)}
    assert len(rows["direct"]) == 28
    assert rows["direct"] == rows["event"]
    first = next(r for r in rows["direct"] if r["n"] == 0)
    assert (first["key"], first["trace"], first["label"]) == ("k0", "t-é", "é0")
    failed = f"record failed: topic={topic} partition=2 offset=3: value is not valid JSON"  # record 11
    for mode in ("direct", "event"):  # the handler's own log line for the failed record, in both modes
        assert failed in logs[mode]
