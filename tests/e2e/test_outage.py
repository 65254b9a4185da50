"""InfluxDB stopped for several seconds mid-stream, then started again.

The runner keeps consuming while InfluxDB is down; failed attempts are sought back and retried
with backoff, offsets are committed only past written records, and once the server is back (same
port, same data folder) every record is there. Under RETRY the handler reports the unwritten
records (batchItemFailures); under THROW it raises and the runner retries the whole batch.
"""

from __future__ import annotations

import json
import time
import urllib.parse

import pytest

from influx_sink_tools import local_influxdb
from tests.e2e.conftest import KCQL, committed, coordinates, count, produce, runner_env, stored, unique, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.influx]


@pytest.mark.parametrize("policy", ["RETRY", "THROW"])
def test_influx_outage_mid_stream_loses_nothing(kafka, topic, start_runner, tmp_path, policy):
    root = str(tmp_path / "influxd")
    server = local_influxdb.start(root)
    port = urllib.parse.urlsplit(server.url).port
    try:
        server.query('CREATE DATABASE "outage"')
        env = runner_env(server.url, "outage", KCQL.format(m="m", topic=topic),
                         CONNECT_INFLUX_ERROR_POLICY=policy, CONNECT_INFLUX_RETRY_INTERVAL="200",
                         CONNECT_INFLUX_CONNECT_TIMEOUT_MS="500", CONNECT_INFLUX_READ_TIMEOUT_MS="2000")
        group = unique("g-")
        sent = produce(kafka.bootstrap, topic, [json.dumps({"n": i}).encode() for i in range(300)])
        runner = start_runner(topic, group, env, "--batch-size", "50", "--until-idle", "1.5",
                              "--function-timeout", "2", "--retry-backoff-ms", "200", "--max-backoff-ms", "1000",
                              "--max-retries", "-1")
        wait_until(lambda: count(server, "outage", "m") == 300, "the first 300 records in InfluxDB")

        server.stop()
        sent += produce(kafka.bootstrap, topic, [json.dumps({"n": i}).encode() for i in range(300, 600)],
                        start=300)
        wait_until(lambda: "retry 2 from offset" in runner.log(), "the runner to retry while InfluxDB is down")
        time.sleep(2)  # keep the outage going a while longer (not an assertion on time)
        assert runner.proc.poll() is None  # still waiting for InfluxDB, not idle, not given up
        server = local_influxdb.start(root, port=port)

        assert runner.wait() == 0, runner.log()
        assert coordinates(stored(server, "outage", "m")) == sorted(sent)
        assert runner.retries() >= 2
        assert "giving up" not in runner.log() and "gave up" not in runner.log()
        assert committed(kafka.bootstrap, group, topic) == {p: 200 for p in range(3)}
    finally:
        server.stop()
