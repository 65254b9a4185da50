"""The built package under AWS's runtime interface client, as the python3.12 runtime runs it.

The package is built once per session by the Makefile (what ``sam build`` runs), then started as
``python3.12 -S -m awslambdaric handler.app.lambda_handler`` with a read-only task root, awslambdaric
and boto3 from a stand-in for the runtime's /var/runtime (influx_sink_tools/lambda_sandbox.py), and a Runtime API
on loopback (influx_sink_tools/lambda_runtime_api.py: a stand-in, since AWS's emulator is a downloaded binary).
Events go through that API; InfluxDB is the real one of tests/conftest.py.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from influx_sink_tools import lambda_sandbox as sandbox
from influx_sink_tools import local_influxdb
from influx_sink_tools.lambda_runtime_api import OutcomeKind, RuntimeAPI
from tests.conftest import ROOT, json_event, query_points

pytestmark = pytest.mark.influx

HANDLER = "handler.app.lambda_handler"
SAMPLE = ROOT / "events" / "msk-json.json"
_runs = itertools.count()


def template_log_format() -> str:
    """The function's LoggingConfig LogFormat in template.yaml (Lambda's default: Text)."""
    text = (ROOT / "template.yaml").read_text()
    block = text.split("InfluxSinkFunction:", 1)[1].split("\n  InfluxSinkRole:", 1)[0]
    found = re.search(r"LoggingConfig:(?:\n {8}.*)*?\n {8}LogFormat: *(\w+)", block)
    return found.group(1) if found else "Text"


@pytest.fixture(scope="session")
def python312() -> str:
    return sandbox.python312()


@pytest.fixture(scope="session")
def runtime_dir(python312: str) -> Path:
    return sandbox.ensure_runtime_dir(sandbox.DEFAULT_RUNTIME_DIR, python312)


@pytest.fixture(scope="session")
def artifact(tmp_path_factory: pytest.TempPathFactory, python312: str) -> Path:
    """``make build-InfluxSinkFunction`` into a fresh folder, once per session (or INFLUX_SINK_ARTIFACT: a build)."""
    if os.environ.get("INFLUX_SINK_ARTIFACT"):
        return Path(os.environ["INFLUX_SINK_ARTIFACT"]).resolve()
    return sandbox.build_artifact(tmp_path_factory.mktemp("sam-build") / "InfluxSinkFunction", python312)


Runner = Callable[..., tuple[RuntimeAPI, sandbox.FunctionProcess]]


@pytest.fixture
def run_function(python312: str, runtime_dir: Path, tmp_path: Path) -> Iterator[Runner]:
    """Start the function (a task root) under awslambdaric with its own Runtime API; stopped after the test."""
    started: list[tuple[RuntimeAPI, sandbox.FunctionProcess]] = []

    def start(task_root: Path, env: dict[str, str]) -> tuple[RuntimeAPI, sandbox.FunctionProcess]:
        api = RuntimeAPI()
        env = {"AWS_LAMBDA_LOG_FORMAT": template_log_format(), **env}
        fn = sandbox.FunctionProcess(task_root, HANDLER, api.address, runtime_dir=runtime_dir, python=python312,
                                     function_env=env, log_dir=tmp_path / f"logs-{next(_runs)}")
        started.append((api, fn))
        return api, fn

    yield start
    for api, fn in started:
        fn.stop()
        api.stop()


def sink_settings(server: local_influxdb.InfluxServer | str, db: str, **extra: str) -> dict[str, str]:
    """events/env.json (what `sam local invoke --env-vars` uses), pointed at the test database (or a URL)."""
    env = json.loads((ROOT / "events" / "env.json").read_text())["InfluxSinkFunction"]
    url = server if isinstance(server, str) else server.url
    return {**env, "CONNECT_INFLUX_URL": url, "CONNECT_INFLUX_DB": db, **extra}


def log_records(lines: list[str]) -> list[dict[str, Any]]:
    """The function's structured log lines (Powertools Logger), not the metrics (EMF) documents."""
    docs = [json.loads(ln) for ln in lines]
    return [d for d in docs if isinstance(d, dict) and "level" in d and "_aws" not in d]


def sample_values(event: dict[str, Any]) -> list[bytes | None]:
    return [None if r["value"] is None else base64.b64decode(r["value"])
            for recs in event["records"].values() for r in recs]


# ---------------------------------------------------------------- (a) the response the event source expects

def test_sample_event_is_written_and_answered(artifact: Path, run_function: Runner,
                                              influx: local_influxdb.InfluxServer, db: str) -> None:
    event = json.loads(SAMPLE.read_text())
    before = sandbox.tree_state(artifact)
    api, fn = run_function(artifact, sink_settings(influx, db))
    outcome = api.wait(api.invoke(event), process=fn)
    assert outcome.kind is OutcomeKind.RESPONSE, fn.output()
    assert outcome.json() == {"batchItemFailures": []}
    values = [json.loads(v) for v in sample_values(event) if v is not None]
    rows = query_points(influx, db, 'SELECT * FROM "influxMeasure"')
    assert len(rows) == len(values)
    assert sorted(r["company"] for r in rows) == sorted(v["company"] for v in values)
    assert api.problems == []
    assert sandbox.tree_state(artifact) == before  # nothing written into the task root


def test_retry_reports_the_bad_record_and_the_rest_of_its_partition(
        artifact: Path, run_function: Runner, influx: local_influxdb.InfluxServer, db: str) -> None:
    event = json_event([{"v": 1}, b"not json", {"v": 3}], topic="influx-topic", start_offset=40)
    api, fn = run_function(artifact, sink_settings(influx, db, CONNECT_INFLUX_ERROR_POLICY="RETRY"))
    outcome = api.wait(api.invoke(event), process=fn)
    assert outcome.kind is OutcomeKind.RESPONSE, fn.output()
    assert outcome.json() == {"batchItemFailures": [
        {"itemIdentifier": {"partition": "influx-topic-0", "offset": 41}},
        {"itemIdentifier": {"partition": "influx-topic-0", "offset": 42}}]}
    assert [r["v"] for r in query_points(influx, db, 'SELECT * FROM "influxMeasure"')] == [1]


# ---------------------------------------------------------------- (b) every line is JSON, even for bad settings

def test_invalid_settings_fail_the_invocation_and_every_line_is_json(
        artifact: Path, run_function: Runner, influx: local_influxdb.InfluxServer, db: str) -> None:
    settings = sink_settings(influx, db, CONNECT_INFLUX_ERROR_POLICY="SOMETIMES", CONNECT_INFLUX_BATCH_LINES="-3")
    api, fn = run_function(artifact, settings)
    inv = api.invoke(json.loads(SAMPLE.read_text()))
    outcome = api.wait(inv, process=fn)
    assert outcome.kind is OutcomeKind.ERROR
    error = outcome.json()
    for setting in ("connect.influx.error.policy", "connect.influx.batch.lines"):
        assert setting in error["errorMessage"]
    fn.stop()
    lines = fn.lines()
    assert lines
    not_json = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            not_json.append(line)
    assert not_json == [], f"AWS_LAMBDA_LOG_FORMAT={template_log_format()} (template.yaml's LogFormat)"
    assert query_points(influx, db, "SELECT * FROM /.*/") == []


# ---------------------------------------------------------------- (c) the request id in every log line

def test_log_lines_carry_the_runtime_api_request_id(
        artifact: Path, run_function: Runner, influx: local_influxdb.InfluxServer, db: str) -> None:
    api, fn = run_function(artifact, sink_settings(influx, db, CONNECT_PROGRESS_ENABLED="true"))
    first = api.invoke(json.loads(SAMPLE.read_text()))
    assert api.wait(first, process=fn).kind is OutcomeKind.RESPONSE, fn.output()
    second = api.invoke(json_event([{"company": "x"}], topic="influx-topic", start_offset=7))
    assert api.wait(second, process=fn).kind is OutcomeKind.RESPONSE, fn.output()
    fn.stop()
    records = log_records(fn.lines())
    progress = [r for r in records if str(r.get("message", "")).startswith("Received ")]
    assert len(progress) == 2, records
    assert [r.get("function_request_id") for r in progress] == [first.request_id, second.request_id]
    assert {r.get("function_request_id") for r in records} <= {first.request_id, second.request_id}


# ---------------------------------------------------------------- (d) an answer before the deadline

@pytest.fixture
def dropped_syn() -> Iterator[str]:
    """A URL whose TCP connects never complete: a listening socket whose accept queue is full.

    The kernel drops further SYNs (net.ipv4.tcp_abort_on_overflow=0), as a firewall that drops packets
    would. A stand-in only in that nothing real can be made to drop a SYN on loopback otherwise.
    """
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=2)  # takes the one place in the queue
    probe = socket.socket()
    probe.settimeout(0.3)
    with pytest.raises(TimeoutError):
        probe.connect(("127.0.0.1", port))  # the queue is full: this SYN is dropped
    probe.close()
    yield f"http://127.0.0.1:{port}"
    filler.close()
    server.close()


@pytest.mark.parametrize("policy", ["RETRY", "THROW"])
def test_unreachable_influxdb_is_answered_before_the_deadline(
        policy: str, artifact: Path, run_function: Runner, dropped_syn: str, db: str) -> None:
    settings = sink_settings(dropped_syn, db, CONNECT_INFLUX_ERROR_POLICY=policy)
    event = json_event([{"v": 1}, {"v": 2}], topic="influx-topic", start_offset=5)
    api, fn = run_function(artifact, settings)
    inv = api.invoke(event, timeout_s=3.0)
    outcome = api.wait(inv, timeout=30, process=fn)
    assert outcome.received_ms < inv.deadline_ms, (
        f"answered {outcome.received_ms - inv.deadline_ms} ms after the deadline: {outcome.body!r}")
    if policy == "RETRY":
        assert outcome.kind is OutcomeKind.RESPONSE, outcome.body
        assert outcome.json() == {"batchItemFailures": [
            {"itemIdentifier": {"partition": "influx-topic-0", "offset": 5}},
            {"itemIdentifier": {"partition": "influx-topic-0", "offset": 6}}]}
    else:
        assert outcome.kind is OutcomeKind.ERROR, outcome.body
        assert "topic=influx-topic partition=0 offset=5" in outcome.json()["errorMessage"]


# ---------------------------------------------------------------- (e) bytecode: nothing compiled at cold start

def test_every_module_of_the_package_has_unchecked_hash_bytecode(artifact: Path) -> None:
    assert sandbox.bytecode_problems(artifact) == []


def _copy(artifact: Path, dest: Path, *, sources: str | None = None, bytecode: bool = True) -> Path:
    """A copy of the package; ``sources`` replaces every .py's text; ``bytecode=False`` drops __pycache__."""
    shutil.copytree(artifact, dest, symlinks=True,
                    ignore=None if bytecode else shutil.ignore_patterns("__pycache__"))
    if sources is not None:
        for src in dest.rglob("*.py"):
            src.write_text(sources)
    return dest


BROKEN = "raise SyntaxError(  # this source is never compiled: the package's bytecode is used\n"


def test_the_package_runs_from_bytecode_alone(artifact: Path, run_function: Runner, tmp_path: Path,
                                              influx: local_influxdb.InfluxServer, db: str) -> None:
    """Every .py of a copy is replaced by text that does not compile: the function must not notice."""
    task_root = _copy(artifact, tmp_path / "task", sources=BROKEN)
    api, fn = run_function(task_root, sink_settings(influx, db))
    outcome = api.wait(api.invoke(json.loads(SAMPLE.read_text())), process=fn)
    assert outcome.kind is OutcomeKind.RESPONSE, fn.output()
    assert outcome.json() == {"batchItemFailures": []}
    assert len(query_points(influx, db, 'SELECT * FROM "influxMeasure"')) == 5


def test_without_bytecode_the_broken_sources_are_compiled_and_fail(artifact: Path, run_function: Runner,
                                                                   tmp_path: Path, db: str) -> None:
    """The control of the test above: the same copy without __pycache__ fails at init."""
    task_root = _copy(artifact, tmp_path / "task", sources=BROKEN, bytecode=False)
    api, _ = run_function(task_root, {"CONNECT_INFLUX_URL": "http://127.0.0.1:9", "CONNECT_INFLUX_DB": db})
    api.invoke({"records": {}})
    error = api.wait_init_error()
    assert error.json()["errorType"] == "Runtime.UserCodeSyntaxError", error.body


def test_the_task_root_is_read_only(artifact: Path, run_function: Runner, tmp_path: Path,
                                    influx: local_influxdb.InfluxServer, db: str) -> None:
    """A copy without bytecode runs (compiled in memory) and no __pycache__ appears: nothing could be cached."""
    task_root = _copy(artifact, tmp_path / "task", bytecode=False)
    api, fn = run_function(task_root, sink_settings(influx, db))
    outcome = api.wait(api.invoke(json.loads(SAMPLE.read_text())), process=fn)
    assert outcome.kind is OutcomeKind.RESPONSE, fn.output()
    assert list(task_root.rglob("__pycache__")) == []
    assert list(task_root.rglob("*.pyc")) == []
