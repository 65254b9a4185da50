"""``influx-sink invoke --dry-run --schema ID=FILE.proto``: Protobuf records mapped offline."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

from influx_sink_tools.eventgen import Rec, build_event
from influx_sink_tools.framing import confluent_frame, confluent_protobuf_body, glue_frame, glue_protobuf_body
from tests.conftest import ROOT
from tests.fixtures_registry import protobuf_classes

SCHEMA = '''syntax = "proto3";
package demo;
import "google/protobuf/timestamp.proto";
message Reading { string device = 1; double level = 2; google.protobuf.Timestamp at = 3; }
'''


def _dry_run(tmp_path: Path, value: bytes, sid: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "reading.proto").write_text(SCHEMA)
    (tmp_path / "ev.json").write_text(json.dumps(build_event([Rec("demo", 0, 0, value)])))
    (tmp_path / "env.json").write_text(json.dumps({"InfluxSinkFunction": {
        "CONNECT_INFLUX_URL": "http://127.0.0.1:9", "CONNECT_INFLUX_DB": "x",
        "CONNECT_INFLUX_KCQL": "INSERT INTO m SELECT device, level FROM demo WITHTIMESTAMP at"}}))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "influx_sink_tools.cli", "invoke", str(tmp_path / "ev.json"),
                           "--env-vars", str(tmp_path / "env.json"), "--dry-run",
                           "--schema", f"{sid}={tmp_path / 'reading.proto'}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


def _message() -> bytes:
    msg = protobuf_classes({"reading.proto": SCHEMA})["demo.Reading"](device="d-1", level=0.5)
    msg.at.seconds, msg.at.nanos = 1_700_000_000, 42
    return msg.SerializeToString()


def test_confluent_framed_protobuf_offline(tmp_path: Path) -> None:
    proc = _dry_run(tmp_path, confluent_frame(4, confluent_protobuf_body([0], _message())), "4")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == 'm device="d-1",level=0.5 1700000000000000042\n'


def test_glue_framed_protobuf_offline(tmp_path: Path) -> None:
    version = str(uuid.uuid4())
    proc = _dry_run(tmp_path, glue_frame(version, glue_protobuf_body(0, _message()), compress=True), version)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == 'm device="d-1",level=0.5 1700000000000000042\n'
