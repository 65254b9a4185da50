"""The ``influx-sink`` CLI: kcql, event, invoke and frame, against the real parser, fastavro,
registry and InfluxDB.

``invoke`` runs in a child process, as a developer runs it: its stdout must hold the response alone.
Every error is one readable message on stderr (exit 1 or 2), never a traceback; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import pty
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import fastavro
import pytest

from handler.records import parse_event
from influx_sink_tools import cli
from influx_sink_tools.framing import confluent_frame, glue_frame, write_body
from tests.conftest import ROOT, query_points

pytest_plugins = ["tests.fixtures_registry"]

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


def clean_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without CONNECT_* / POWERTOOLS_* variables, plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECT_", "POWERTOOLS_"))}
    return {**base, **(env or {})}


def run_cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None
            ) -> subprocess.CompletedProcess[str]:
    """``python -m influx_sink_tools.cli ARGS`` with no CONNECT_* variables inherited from the test process."""
    return subprocess.run([sys.executable, "-m", "influx_sink_tools.cli", *args], cwd=ROOT, env=clean_env(env),
                          capture_output=True, text=True, timeout=60, check=False, input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL)


def assert_one_message(proc: subprocess.CompletedProcess[str], code: int, *parts: str) -> None:
    """A failed command: its exit code, readable text on stderr naming ``parts``, no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "\\n" not in proc.stderr, proc.stderr
    for part in parts:
        assert part in proc.stderr, proc.stderr


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


def test_kcql_shows_what_a_statement_compiles_to(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    kcql = "INSERT INTO sensors SELECT * FROM t IGNORE device WITHTAG(device, k=v) WITHTIMESTAMP ts"
    code, out, err = run_main(["kcql", kcql], capsys, monkeypatch)
    assert code == 0, err
    compiled = out[out.index("compiled to:\n") + len("compiled to:\n"):].splitlines()
    assert compiled[0] == ("  line: sensors,device={device},k=v {every field of the value but device} "
                           "{ts: integers in milliseconds, floats in seconds → ns}")
    code, out, err = run_main(["kcql", "--json", kcql], capsys, monkeypatch)
    assert code == 0, err
    (doc,) = json.loads(out)
    assert doc["compiled"] == [line.strip() for line in compiled]


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


def test_kcql_json_prints_an_error_as_json(capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    kcql = "INSERT INTO m SELECT * FROM t WITHTARGET company"
    code, out, err = run_main(["kcql", "--json", kcql], capsys, monkeypatch)
    assert code == 1 and err == ""
    error = json.loads(out)["error"]
    assert error["type"] == "KcqlSyntaxError"
    assert (error["line"], error["column"]) == (1, 42)
    assert error["reason"] == "expected '=' after WITHTARGET, found 'company'"
    assert error["message"].splitlines()[1] == "  " + kcql


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
    assert 'response: {"batchItemFailures": []}' in proc.stderr
    assert "5 record(s), 1 tombstone(s), 0 failed; 4 line(s) would be written under THROW" in proc.stderr
    assert query_points(influx, db, "SHOW MEASUREMENTS") == []


def _mixed_event(tmp_path: Path) -> str:
    """Partition 0: a good record, one that is not JSON, a good one; partition 1: one good record."""
    def rec(partition: int, offset: int, value: bytes) -> dict[str, Any]:
        return {"topic": "t", "partition": partition, "offset": offset, "timestamp": offset,
                "value": base64.b64encode(value).decode()}

    event = tmp_path / "ev.json"
    event.write_text(json.dumps({"eventSource": "aws:kafka", "records": {
        "t-0": [rec(0, 1, b'{"a": 1}'), rec(0, 2, b"[1,"), rec(0, 3, b'{"a": 3}')],
        "t-1": [rec(1, 7, b'{"a": 7}')]}}))
    return str(event)


@pytest.mark.parametrize(("policy", "code", "lines", "response"), [
    # THROW: a record error fails the invocation and nothing of the batch is written.
    ("THROW", 1, [], None),
    # RETRY: per partition, only the records before the failed one; it and the later ones are reported.
    ("RETRY", 0, ["m a=1i 1000000", "m a=7i 7000000"],
     {"batchItemFailures": [{"itemIdentifier": {"partition": "t-0", "offset": 2}},
                            {"itemIdentifier": {"partition": "t-0", "offset": 3}}]}),
    # NOOP: every good record is written, nothing is reported.
    ("NOOP", 0, ["m a=1i 1000000", "m a=3i 3000000", "m a=7i 7000000"], {"batchItemFailures": []}),
])
def test_invoke_dry_run_honours_the_error_policy_and_needs_no_url(
        policy: str, code: int, lines: list[str], response: dict[str, Any] | None, tmp_path: Path) -> None:
    # No URL, no database: a dry run writes nothing, so it needs only what shapes the lines.
    env = write_env(tmp_path, {"CONNECT_INFLUX_KCQL": "INSERT INTO m SELECT a FROM t WITHTIMESTAMP _timestamp",
                               "CONNECT_INFLUX_ERROR_POLICY": policy})
    proc = run_cli("invoke", _mixed_event(tmp_path), "--env-vars", env, "--dry-run")
    assert proc.returncode == code, proc.stderr
    assert proc.stdout.splitlines() == lines
    assert "Traceback" not in proc.stderr
    assert "record failed (decode): topic=t partition=0 offset=2: value is not valid JSON" in proc.stderr
    if response is None:
        assert "the invocation would fail (BatchFailed): 1 record(s) failed" in proc.stderr
    else:
        assert f"response: {json.dumps(response)}" in proc.stderr


def test_invoke_dry_run_bad_settings(tmp_path: Path) -> None:
    env = write_env(tmp_path, {"CONNECT_INFLUX_KCQL": "INSERT INTO m SELECT * FROM", "CONNECT_INFLUX_URL": "nope"})
    proc = run_cli("invoke", "events/msk-json.json", "--env-vars", env, "--dry-run")
    assert_one_message(proc, 2, "CONNECT_INFLUX_KCQL", "CONNECT_INFLUX_URL", "\n  INSERT INTO m SELECT * FROM\n")
    assert "CONNECT_INFLUX_DB" not in proc.stderr  # a dry run needs no database
    assert proc.stdout == ""


SEED_ENV = {"CONNECT_INFLUX_KCQL": SEED_KCQL}


def test_invoke_dry_run_contacts_no_registry_and_takes_schemas_offline(registry: Any, tmp_path: Path) -> None:
    sid = registry.register("influx-topic-value", USER_SCHEMA)
    event = tmp_path / "ev.json"
    event.write_text(json.dumps(cli_event(confluent_frame(sid, write_body(USER_SCHEMA, SEED_VALUE)))))
    schema = tmp_path / "user.avsc"
    schema.write_text(json.dumps(USER_SCHEMA))
    env = write_env(tmp_path, {**SEED_ENV, "CONNECT_INFLUX_SCHEMA_REGISTRY_URL": registry.url})

    proc = run_cli("invoke", str(event), "--env-vars", env, "--dry-run")
    assert_one_message(proc, 1, f"value needs schema id {sid}, and --dry-run contacts no schema registry: give it "
                                f"with --schema {sid}=FILE")
    assert proc.stdout == ""

    proc = run_cli("invoke", str(event), "--env-vars", env, "--dry-run", "--schema", f"{sid}={schema}")
    assert proc.returncode == 0, proc.stderr
    fields = proc.stdout.split(" ")[1]
    assert fields == ('company="DataMountaineer",address="MontainTop",latitude=-49.817962646484375,'
                      "longitude=-141.64581298828125")
    assert registry.requests == {}  # the registry the settings name was never asked


def test_invoke_dry_run_glue_framing_offline_imports_no_boto3(tmp_path: Path) -> None:
    version = str(uuid.uuid4())
    event = tmp_path / "ev.json"
    event.write_text(json.dumps(cli_event(glue_frame(version, write_body(USER_SCHEMA, SEED_VALUE), compress=True))))
    schema = tmp_path / "user.avsc"
    schema.write_text(json.dumps(USER_SCHEMA))
    env = write_env(tmp_path, SEED_ENV)
    code = ("import sys; from influx_sink_tools import cli; rc = cli.main(sys.argv[1:]); "
            "print('boto3' in sys.modules, file=sys.stderr); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "invoke", str(event), "--env-vars", env, "--dry-run",
                           "--schema", f"{version.upper()}={schema}"], cwd=ROOT, env=clean_env(),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith('influxMeasure company="DataMountaineer",address="MontainTop",latitude=-49.8179')
    assert proc.stderr.rstrip().endswith("False")  # AWS Glue was not even imported


@pytest.mark.parametrize(("argv", "message"), [
    (["--schema", "1=x.avsc"], "--schema goes with --dry-run"),
    (["--dry-run", "--schema", "nope"], "expected ID=FILE"),
    (["--dry-run", "--schema", "1=/does/not/exist.avsc"], "/does/not/exist.avsc: No such file or directory"),
    (["--dry-run", "--schema", "1=README.md"], "--schema 1=README.md is not JSON"),
])
def test_invoke_schema_option_errors(argv: list[str], message: str) -> None:
    assert_one_message(run_cli("invoke", "events/msk-json.json", *argv), 2, message)


def cli_event(value: bytes) -> dict[str, Any]:
    from influx_sink_tools.eventgen import Rec, build_event

    return build_event([Rec("influx-topic", 0, 0, value)])


def test_invoke_function_error_is_readable_on_stderr(tmp_path: Path) -> None:
    env = write_env(tmp_path, {"CONNECT_INFLUX_KCQL": "INSERT INTO m SELECT * FROM t WITHTARGET company"})
    proc = run_cli("invoke", "events/msk-json.json", "--env-vars", env)
    assert proc.returncode == 1
    # Before it: the handler's own logs (JSON lines, as in CloudWatch). The message itself is text.
    message = proc.stderr[proc.stderr.index("influx-sink invoke: function error (ConfigError): "):]
    assert message.startswith("influx-sink invoke: function error (ConfigError): invalid settings:\n- ")
    assert "\n  INSERT INTO m SELECT * FROM t WITHTARGET company\n" in message
    assert "\\n" not in message and "Traceback" not in proc.stderr
    assert json.loads(proc.stdout)["errorType"] == "ConfigError"  # Lambda's error object, as sam prints it


@pytest.mark.parametrize(("argv", "code", "message"), [
    (["invoke", "/does/not/exist.json"], 2, "influx-sink invoke: event /does/not/exist.json: [Errno 2]"),
    (["invoke", "README.md", "--dry-run"], 2, "influx-sink invoke: event README.md: Expecting value"),
    (["invoke", "events/msk-json.json", "--env-vars", "README.md"], 2, "--env-vars README.md: Expecting value"),
    (["kcql", "INSERT INTO m SELECT"], 1, "KCQL syntax error at line 1"),
    (["event", "--topic", "t", "--format", "avro", "--schema", "README.md"], 2, "--schema README.md"),
    (["frame", "confluent", "--id", "1", "--schema", "events/schemas/user.avsc", "{bad"], 2,
     "influx-sink frame: the record is not JSON"),
    (["frame", "confluent", "--id", "1", "--schema", "events/schemas/user.avsc", '{"company": 1}'], 2,
     "the record does not match the schema in events/schemas/user.avsc: User.company is <1>"),
    (["frame", "glue", "--version-id", "v1", "--schema", "events/schemas/user.avsc", "{}"], 2,
     "--version-id 'v1' is not a UUID"),
    (["frame", "avro", "--schema", "/does/not/exist.avsc", "{}"], 2, "--schema /does/not/exist.avsc: No such file"),
    (["nope"], 2, "invalid choice: 'nope'"),
])
def test_bad_input_is_one_message_without_traceback(argv: list[str], code: int, message: str) -> None:
    assert_one_message(run_cli(*argv, stdin="{}\n"), code, message)


def test_frame_builds_what_the_sink_decodes() -> None:
    proc = run_cli("frame", "confluent", "--id", "1", "--schema", "events/schemas/user.avsc", json.dumps(SEED_VALUE))
    assert proc.returncode == 0, proc.stderr
    data = base64.b64decode(proc.stdout)
    assert data == confluent_frame(1, write_body(USER_SCHEMA, SEED_VALUE))
    legacy = subprocess.run([sys.executable, "-m", "influx_sink_tools.framing", "confluent", "--id", "1", "--schema",
                             "events/schemas/user.avsc", "{bad"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=False)
    assert_one_message(legacy, 2, "python -m influx_sink_tools.framing: the record is not JSON")


# ---------------------------------------------------------------- at a terminal


def _at_terminal(*args: str) -> tuple[subprocess.Popen[bytes], int]:
    """The CLI with a pseudo-terminal as stdin (what a person typing gives it); the pty's fd to type on."""
    typing_end, tty_end = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "influx_sink_tools.cli", *args], cwd=ROOT, env=clean_env(),
                            stdin=tty_end, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(tty_end)
    return proc, typing_end


def _read_stderr_line(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stderr is not None
    return proc.stderr.readline().decode()


def test_event_at_a_terminal_says_what_it_waits_for() -> None:
    proc, tty = _at_terminal("event", "--topic", "t")
    try:
        assert _read_stderr_line(proc).startswith(
            "influx-sink event: waiting for record values on stdin, one JSON document per line; end with Ctrl-D")
        os.write(tty, b'{"a": 1}\n\x04')  # a line, then Ctrl-D: end of input
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(tty)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    (record,) = parse_event(json.loads(out))
    assert record.value_bytes() == b'{"a": 1}'


def test_ctrl_c_exits_130_without_a_traceback() -> None:
    proc, tty = _at_terminal("event", "--topic", "t")
    try:
        assert "waiting for record values" in _read_stderr_line(proc)  # it is reading stdin now
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(tty)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert out == b""
    assert err.decode().strip() == "influx-sink event: interrupted"


# ---------------------------------------------------------------- wiring


def test_cli_imports_lazily_and_the_lambda_never_imports_it() -> None:
    code = ("import sys, influx_sink_tools.cli; heavy = {'pyparsing', 'fastavro', 'boto3', 'aws_lambda_powertools', "
            "'handler.app', 'influxdb_client', 'kafka'} & set(sys.modules); print(sorted(heavy))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines()[0] == "[]"
    tools_loaded = "import sys, handler.app; print(any(m.startswith('influx_sink_tools') for m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", tools_loaded], cwd=ROOT, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"


def test_subcommands_are_registered() -> None:
    parser = cli.build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    names = set(action.choices)
    assert {"kcql", "event", "invoke", "frame"} <= names
    assert ("consume" in names) == (Path(ROOT, "influx_sink_tools", "consume.py").exists())


def _actions(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.Action]]:
    """Every argument of ``parser`` and its subcommands, as (command path, action)."""
    found: list[tuple[str, argparse.Action]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _actions(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            found.append((path, action))
    return found


def test_every_option_has_help_text() -> None:
    actions = _actions(cli.build_parser(), "influx-sink")
    assert {p for p, _ in actions} >= {"influx-sink kcql", "influx-sink event", "influx-sink invoke",
                                       "influx-sink frame"}
    missing = [f"{p} {'/'.join(a.option_strings) or a.dest}" for p, a in actions
               if not a.help or a.help == argparse.SUPPRESS]
    assert missing == []
