"""Acceptance 4 of issue 7: the README's main job through Kafka (scripts/demo-kafka).

The script starts its own broker and InfluxDB, produces the seed's Avro record, consumes it with
``influx-sink consume --until-idle`` and prints ``select * from influxMeasure``; it stops both.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def test_demo_kafka_shows_the_seed_record():
    result = subprocess.run([str(ROOT / "scripts" / "demo-kafka")], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    table = out[out.index("> select * from influxMeasure;"):].splitlines()
    assert table[1] == "name: influxMeasure"
    assert table[3].split() == ["time", "address", "company", "latitude", "longitude"]
    (row,) = [line.split() for line in table[4:] if line.strip()]
    # The seed's row: Avro floats as InfluxDB stores them, time from sys_time().
    assert row[1:] == ["MontainTop", "DataMountaineer", "-49.817962646484375", "-141.64581298828125"]
    assert int(row[0]) > 0
    assert "stopped: 1 record(s) written or handled" in result.stderr
