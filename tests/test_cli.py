"""The ``influx-sink`` CLI: kcql, event and invoke, against the real parser, fastavro and InfluxDB.

``invoke`` runs in a child process, as a developer runs it: its stdout must hold the response alone.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import fastavro
import pytest

from handler import cli
from handler.records import parse_event
from tests.conftest import ROOT, query_points

SEED_KCQL = "INSERT INTO influxMeasure SELECT * FROM influx-topic WITHTIMESTAMP sys_time()"
SEED_VALUE = {"company": "DataMountaineer", "address": "MontainTop", "latitude": -49.817964,
              "longitude": -141.645812}
USER_SCHEMA = {"type": "record", "name": "User", "fields": [
    {"name": "company", "type": "string"}, {"name": "address", "type": "string"},
    {"name": "latitude", "type": "float"}, {"name": "longitude", "type": "float"}]}


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
             stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m handler.cli ARGS`` with no CONNECT_* variables inherited from the test process."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECT_", "POWERTOOLS_"))}
    return subprocess.run([sys.executable, "-m", "handler.cli", *args], cwd=ROOT, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=60, check=False)


def write_env(tmp_path: Path, section: dict[str, str], name: str = "InfluxSinkFunction") -> str:
    path = tmp_path / "env.json"
    path.write_text(json.dumps({name: section}))
    return str(path)


# ---------------------------------------------------------------- kcql


def test_kcql_explains_the_seed_statement(capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_main(["kcql", SEED_KCQL], capsys, monkeypatch)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "Statement 1 of 1 (line 1, column 1)"
    rows = {ln.split()[0]: ln.split(None, 1)[1] for ln in lines[1:]}
    assert rows["topic"] == "influx-topic"
    assert rows["measurement"] == "influxMeasure"
    assert rows["fields"].startswith("*: every field of the value")
    assert rows["tags"] == "(none)"
    assert "sys_time()" in rows["timestamp"]


def test_kcql_json_lists_every_part(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    kcql = ("INSERT INTO m SELECT a, b.c AS d FROM t IGNORE x WITHTARGET = company "
            "WITHTIMESTAMP ts TIMESTAMPUNIT = SECONDS WITHTAG(host, region=eu);\n"
            "INSERT INTO m2 SELECT _key.* FROM t2")
    code, out, _ = run_main(["kcql", "--json", kcql], capsys, monkeypatch)
    assert code == 0
    first, second = json.loads(out)
    assert first["topic"] == "t" and first["measurement"] == "m" and first["target"] == "company"
    assert [(f["path"], f["name"]) for f in first["fields"]] == [("a", "a"), ("b.c", "d")]
    assert first["ignore"] == ["x"]
    assert first["tags"] == [{"name": "host", "path": "host"}, {"name": "region", "value": "eu"}]
    assert (first["timestamp"], first["timestamp_unit"]) == ("ts", "SECONDS")
    assert second["line"] == 2 and second["fields"][0]["wildcard"] and second["fields"][0]["source"] == "_key"


def test_kcql_reads_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run_main(["kcql", "-"], capsys, monkeypatch, stdin=SEED_KCQL + "\n")
    assert code == 0 and "influxMeasure" in out


@pytest.mark.parametrize(("kcql", "line", "column"), [
    ("INSERT INTO m SELECT * FROM t WITHTARGET company", 1, 42),
    ("INSERT INTO m SELECT * FROM t;\nINSERT INTO m2 SELECT * FROM t2 PK a", 2, 33),
])
def test_kcql_error_shows_line_column_and_caret(kcql: str, line: int, column: int,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_main(["kcql", kcql], capsys, monkeypatch)
    assert code == 1
    assert out == ""
    head, source, caret = err.rstrip("\n").split("\n")
    assert head.startswith(f"KCQL syntax error at line {line}, column {column}: ")
    assert source == "  " + kcql.splitlines()[line - 1]
    assert caret == "  " + " " * (column - 1) + "^"


# ---------------------------------------------------------------- event


def test_event_json_lines_round_trip(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [json.dumps(SEED_VALUE), "", '{"company": "Acme", "n": 1.0}', "null"]
    code, out, err = run_main(["event", "--topic", "influx-topic", "--partition", "3", "--offset", "40",
                               "--key", "k-1", "--header", "trace=abc", "--timestamp", "1700000000000"],
                              capsys, monkeypatch, stdin="\n".join(lines) + "\n")
    assert code == 0, err
    event = json.loads(out)
    assert event["eventSource"] == "aws:kafka" and "eventSourceArn" in event
    assert list(event["records"]) == ["influx-topic-3"]
    records = parse_event(event)
    assert [(r.topic, r.partition, r.offset, r.timestamp) for r in records] == [
        ("influx-topic", 3, 40, 1700000000000), ("influx-topic", 3, 41, 1700000000000),
        ("influx-topic", 3, 42, 1700000000000)]
    assert records[0].value_bytes() == lines[0].encode()  # the producer's own bytes
    assert records[1].value_bytes() == b'{"company": "Acme", "n": 1.0}'
    assert records[2].value_bytes() is None  # `null` is a tombstone
    assert all(r.key_bytes() == b"k-1" and r.headers() == {"trace": "abc"} for r in records)


def test_event_self_managed(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run_main(["event", "--topic", "t", "--self-managed", "--bootstrap-servers", "k1:9092"],
                            capsys, monkeypatch, stdin='{"a": 1}\n{"a": 2}\n')
    assert code == 0
    event = json.loads(out)
    assert event["eventSource"] == "SelfManagedKafka" and "eventSourceArn" not in event
    assert event["bootstrapServers"] == "k1:9092"
    records = parse_event(event)
    assert [r.offset for r in records] == [0, 1]
    first, second = records[0].timestamp, records[1].timestamp
    assert first is not None and second == first + 1  # default: now, one ms apart
    assert records[0].key_bytes() is None


def test_event_avro_confluent_framing_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    schema = tmp_path / "user.avsc"
    schema.write_text(json.dumps(USER_SCHEMA))
    code, out, err = run_main(["event", "--topic", "influx-topic", "--format", "avro", "--schema", str(schema),
                               "--schema-id", "258"], capsys, monkeypatch, stdin=json.dumps(SEED_VALUE) + "\n")
    assert code == 0, err
    (record,) = parse_event(json.loads(out))
    data = record.value_bytes()
    assert data is not None
    assert data[:5] == b"\x00\x00\x00\x01\x02"  # magic byte 0, schema id 258 big-endian
    decoded = fastavro.schemaless_reader(io.BytesIO(data[5:]), fastavro.parse_schema(USER_SCHEMA), None)
    assert decoded == {"company": "DataMountaineer", "address": "MontainTop",
                       "latitude": -49.817962646484375, "longitude": -141.64581298828125}


def test_event_avro_unframed_without_schema_id(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    schema = tmp_path / "user.avsc"
    schema.write_text(json.dumps(USER_SCHEMA))
    code, out, _ = run_main(["event", "--topic", "t", "--format", "avro", "--schema", str(schema)],
                            capsys, monkeypatch, stdin=json.dumps(SEED_VALUE) + "\n")
    assert code == 0
    (record,) = parse_event(json.loads(out))
    data = record.value_bytes()
    assert data is not None
    decoded = fastavro.schemaless_reader(io.BytesIO(data), fastavro.parse_schema(USER_SCHEMA), None)
    assert isinstance(decoded, dict) and decoded["company"] == "DataMountaineer"


@pytest.mark.parametrize(("argv", "stdin", "message"), [
    (["--format", "avro"], "{}\n", "--format avro needs --schema FILE"),
    (["--schema-id", "1"], "{}\n", "--schema and --schema-id go with --format avro"),
    ([], '{"a": 1}\nnot json\n', "stdin line 2 is not JSON"),
    (["--header", "novalue"], "{}\n", "expected NAME=VALUE"),
])
def test_event_usage_errors(argv: list[str], stdin: str, message: str, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_main(["event", "--topic", "t", *argv], capsys, monkeypatch, stdin=stdin)
    assert code == 2 and out == ""
    assert message in err


def test_event_avro_value_not_matching_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    schema = tmp_path / "user.avsc"
    schema.write_text(json.dumps(USER_SCHEMA))
    code, _, err = run_main(["event", "--topic", "t", "--format", "avro", "--schema", str(schema)],
                            capsys, monkeypatch, stdin=json.dumps(SEED_VALUE) + '\n{"company": "x"}\n')
    assert code == 2
    assert "stdin line 2" in err and "does not match the schema" in err


# ---------------------------------------------------------------- invoke


def test_load_env_vars_formats(tmp_path: Path) -> None:
    path = tmp_path / "env.json"
    path.write_text(json.dumps({"Parameters": {"A": "global", "B": "global", "N": 5, "F": False},
                                "InfluxSinkFunction": {"B": "own", "C": None}, "Other": {"A": "x"}}))
    assert cli.load_env_vars(str(path)) == {"A": "global", "B": "own", "N": "5", "F": "false", "C": None}
    path.write_text(json.dumps({"Other": {"A": "x"}}))
    with pytest.raises(cli.UsageError, match="no 'InfluxSinkFunction' or 'Parameters' section"):
        cli.load_env_vars(str(path))


def test_invoke_sample_event_writes_to_influxdb(influx: Any, db: str, tmp_path: Path) -> None:
    env = write_env(tmp_path, {"CONNECT_INFLUX_KCQL": SEED_KCQL, "CONNECT_INFLUX_URL": influx.url,
                               "CONNECT_INFLUX_DB": db})
    proc = run_cli("invoke", "events/msk-json.json", "--env-vars", env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"batchItemFailures": []}  # stdout is the response alone
    rows = query_points(influx, db, 'SELECT * FROM "influxMeasure"')
    assert len(rows) == 5
    seed = [r for r in rows if r["address"] == "MontainTop"]
    assert len(seed) == 1
    assert (seed[0]["company"], seed[0]["latitude"], seed[0]["longitude"]) == ("DataMountaineer", -49.817964,
                                                                               -141.645812)


def test_invoke_parameters_section_and_function_error(influx: Any, db: str, tmp_path: Path) -> None:
    """A record that cannot be decoded under THROW: Lambda's error object, exit 1, nothing written."""
    bad = {"eventSource": "SelfManagedKafka", "records": {"t-0": [
        {"topic": "t", "partition": 0, "offset": 5, "timestamp": 1, "value": base64.b64encode(b"{nope").decode()}]}}
    event = tmp_path / "bad.json"
    event.write_text(json.dumps(bad))
    path = tmp_path / "env.json"
    path.write_text(json.dumps({"Parameters": {"CONNECT_INFLUX_KCQL": "INSERT INTO m SELECT * FROM t",
                                               "CONNECT_INFLUX_URL": influx.url, "CONNECT_INFLUX_DB": db,
                                               "CONNECT_INFLUX_ERROR_POLICY": "THROW"}}))
    proc = run_cli("invoke", str(event), "--env-vars", str(path))
    assert proc.returncode == 1
    error = json.loads(proc.stdout)
    assert error["errorType"] == "BatchFailed"
    assert "topic=t partition=0 offset=5" in error["errorMessage"]
    assert query_points(influx, db, "SHOW MEASUREMENTS") == []


def test_invoke_retry_policy_reports_the_failed_record(influx: Any, db: str, tmp_path: Path) -> None:
    event = tmp_path / "ev.json"
    values = [b'{"v": 1}', b"{nope", b'{"v": 3}']
    event.write_text(json.dumps({"eventSource": "aws:kafka", "records": {"t-2": [
        {"topic": "t", "partition": 2, "offset": 10 + i, "timestamp": 1700000000000 + i,
         "value": base64.b64encode(v).decode()} for i, v in enumerate(values)]}}))
    env = write_env(tmp_path, {"CONNECT_INFLUX_KCQL": "INSERT INTO m SELECT * FROM t WITHTIMESTAMP _timestamp",
                               "CONNECT_INFLUX_URL": influx.url, "CONNECT_INFLUX_DB": db,
                               "CONNECT_INFLUX_ERROR_POLICY": "RETRY"})
    proc = run_cli("invoke", str(event), "--env-vars", env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"batchItemFailures": [
        {"itemIdentifier": {"partition": "t-2", "offset": 11}}, {"itemIdentifier": {"partition": "t-2", "offset": 12}}]}
    assert [r["v"] for r in query_points(influx, db, 'SELECT * FROM "m"')] == [1]


def test_invoke_dry_run_prints_line_protocol_and_writes_nothing(influx: Any, db: str, tmp_path: Path) -> None:
    env = write_env(tmp_path, {
        "CONNECT_INFLUX_KCQL": "INSERT INTO influxMeasure SELECT * FROM influx-topic WITHTIMESTAMP _timestamp "
                               "WITHTAG(company)",
        "CONNECT_INFLUX_URL": influx.url, "CONNECT_INFLUX_DB": db})
    proc = run_cli("invoke", "events/self-managed-json.json", "--env-vars", env, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        'influxMeasure,company=DataMountaineer company="DataMountaineer",address="MontainTop",'
        "latitude=-49.817964,longitude=-141.645812 1732000000000000000",
        'influxMeasure,company=DataMountaineer company="DataMountaineer",address="MontainTop",'
        'latitude=-49.817964,longitude=-141.645812,note="same place, later" 1732000001000000000',
        'influxMeasure,company=Lenses company="Lenses",address="Basecamp",latitude=51.507351,longitude=-0.127758 '
        "1732000003000000000",
        'influxMeasure,company=Lenses company="Lenses",address="Basecamp",latitude=51.507352,longitude=-0.127759,'
        'tags0="eu",tags1="uk" 1732000004000000000',
    ]
    assert "5 record(s) -> 4 line(s); 1 tombstone(s), 0 failed" in proc.stderr
    assert query_points(influx, db, "SHOW MEASUREMENTS") == []


def test_invoke_dry_run_needs_no_server_and_names_failed_records(tmp_path: Path) -> None:
    event = tmp_path / "ev.json"
    event.write_text(json.dumps({"eventSource": "aws:kafka", "records": {"t-0": [
        {"topic": "t", "partition": 0, "offset": 1, "timestamp": 1, "value": base64.b64encode(b'{"a": 1}').decode()},
        {"topic": "t", "partition": 0, "offset": 2, "timestamp": 2, "value": base64.b64encode(b"[1,").decode()}]}}))
    # Port 9 on loopback: nothing listens; a dry run must not try.
    env = write_env(tmp_path, {"CONNECT_INFLUX_KCQL": "INSERT INTO m SELECT a FROM t WITHTIMESTAMP _timestamp",
                               "CONNECT_INFLUX_URL": "http://127.0.0.1:9", "CONNECT_INFLUX_DB": "none"})
    proc = run_cli("invoke", str(event), "--env-vars", env, "--dry-run")
    assert proc.returncode == 1
    assert proc.stdout == "m a=1i 1000000\n"
    assert "record failed (decode): topic=t partition=0 offset=2: value is not valid JSON" in proc.stderr


def test_invoke_dry_run_bad_settings(tmp_path: Path) -> None:
    env = write_env(tmp_path, {"CONNECT_INFLUX_KCQL": "INSERT INTO m SELECT * FROM", "CONNECT_INFLUX_URL": "nope"})
    proc = run_cli("invoke", "events/msk-json.json", "--env-vars", env, "--dry-run")
    assert proc.returncode == 2
    for name in ("CONNECT_INFLUX_KCQL", "CONNECT_INFLUX_URL", "CONNECT_INFLUX_DB"):
        assert name in proc.stderr


# ---------------------------------------------------------------- wiring


def test_cli_imports_lazily_and_the_lambda_never_imports_it() -> None:
    code = ("import sys, handler.cli; heavy = {'pyparsing', 'fastavro', 'boto3', 'aws_lambda_powertools', "
            "'handler.app', 'influxdb_client', 'kafka'} & set(sys.modules); print(sorted(heavy))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines()[0] == "[]"
    proc = subprocess.run([sys.executable, "-c", "import sys, handler.app; print('handler.cli' in sys.modules)"],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"


def test_subcommands_are_registered() -> None:
    parser = cli.build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    names = set(action.choices)
    assert {"kcql", "event", "invoke"} <= names
    assert ("consume" in names) == (Path(ROOT, "handler", "consume.py").exists())
