"""The README's main command (scripts/demo) and the same job through Kafka (scripts/demo-kafka).

``scripts/demo`` starts its own InfluxDB and schema registry, registers the quickstart's Avro ``User``
schema, runs the handler on the quickstart's record in Confluent framing and prints
``select * from influxMeasure`` as the influx shell does: the record's values, Avro floats as
InfluxDB stores them. ``scripts/demo-kafka`` produces the same record to a real broker and
consumes it with ``influx-sink consume --until-idle``. Both stop what they started.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

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
    # The quickstart's row: Avro floats as InfluxDB stores them, time from sys_time().
    assert row[1:] == ["MontainTop", "DataMountaineer", "-49.817962646484375", "-141.64581298828125"]
    assert int(row[0]) > 0
    assert "stopped: 1 record(s) written or handled" in result.stderr


SEED_ROW = ["MontainTop", "DataMountaineer", "-49.817962646484375", "-141.64581298828125"]


def test_demo_prints_the_seed_quickstart_table(tmp_path: Path):
    before = time.time_ns()
    scratch = tmp_path / "tmp"  # the demo's temporary folders go here, and must all be gone after
    scratch.mkdir()
    result = subprocess.run([str(ROOT / "scripts" / "demo")], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, stdin=subprocess.DEVNULL, env={**os.environ, "TMPDIR": str(scratch)})
    assert list(scratch.iterdir()) == []
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "User registered under influx-topic-value, id 1" in out
    assert 'handler response: {"batchItemFailures": []}' in out
    table = out[out.index("> select * from influxMeasure;"):].splitlines()
    # The influx shell's layout (tab stops of 8), as the influx shell lays it out.
    assert table[1:4] == ["name: influxMeasure", "-------------------",
                          "time\t\t\taddress\t\tcompany\t\tlatitude\t\tlongitude"]
    (row,) = [line.split("\t") for line in table[4:] if line.strip()]
    assert row[1:] == SEED_ROW
    assert before <= int(row[0]) <= time.time_ns()  # sys_time(): when the handler ran


def test_demo_dry_run_prints_the_line_and_starts_nothing():
    result = subprocess.run([str(ROOT / "scripts" / "demo"), "--dry-run"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    (line,) = [ln for ln in result.stdout.splitlines() if ln.startswith("influxMeasure")]
    head, fields, ts = line.split(" ")
    assert (head, fields) == ("influxMeasure", 'company="DataMountaineer",address="MontainTop",'
                                               "latitude=-49.817962646484375,longitude=-141.64581298828125")
    assert int(ts) > 0
    assert "nothing written (--dry-run)" in result.stderr
    assert "InfluxDB 1.x at" not in result.stdout
