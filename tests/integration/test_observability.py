"""Retry-After is honoured; metrics (EMF), progress and retry logs say what happened; every line is
JSON and carries the invocation's request id."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from handler import app
from handler.delivery import run_batch
from handler.records import parse_event
from handler.runtime import build
from influx_sink_tools.eventgen import Rec, build_event
from tests.conftest import QuietHandler, json_event, serving

KCQL = "INSERT INTO m SELECT * FROM t WITHTIMESTAMP _timestamp"


@pytest.fixture
def overloaded_server() -> Iterator[tuple[str, list[float]]]:
    """Answers 503 with Retry-After: 1 to the first write, 204 after (InfluxDB cannot be made to do this)."""
    seen: list[float] = []

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append(time.monotonic())
            if len(seen) == 1:
                self.send_response(503)
                self.send_header("Retry-After", "1")
            else:
                self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with serving(Handler) as url:
        yield url, seen


def test_retry_after_is_honoured_under_retry(overloaded_server):
    url, seen = overloaded_server
    rt = build({"CONNECT_INFLUX_URL": url, "CONNECT_INFLUX_DB": "db", "CONNECT_INFLUX_KCQL": KCQL,
                "CONNECT_INFLUX_ERROR_POLICY": "RETRY", "CONNECT_INFLUX_RETRY_INTERVAL": "50"})
    records = parse_event(build_event([Rec("t", 0, o, b'{"v": 1}', timestamp=o) for o in range(3)]))
    result = run_batch(records, rt.plan, rt.writer, "RETRY", deadline=time.monotonic() + 10, retry_interval=0.05)
    assert result.response == {"batchItemFailures": []}
    assert result.write_retries == 1 and len(seen) == 2
    assert seen[1] - seen[0] >= 0.95  # waited what the server asked, not the 50 ms retry interval


def test_retry_after_past_the_deadline_reports_instead_of_waiting(overloaded_server):
    url, seen = overloaded_server
    rt = build({"CONNECT_INFLUX_URL": url, "CONNECT_INFLUX_DB": "db", "CONNECT_INFLUX_KCQL": KCQL,
                "CONNECT_INFLUX_ERROR_POLICY": "RETRY"})
    records = parse_event(build_event([Rec("t", 0, o, b'{"v": 1}', timestamp=o) for o in range(3)]))
    result = run_batch(records, rt.plan, rt.writer, "RETRY", deadline=time.monotonic() + 0.5)
    assert len(result.response["batchItemFailures"]) == 3
    assert len(seen) == 1
    assert "HTTP 503" in result.failures[0].reason


def _emf(stdout: str) -> dict[str, Any]:
    docs = [json.loads(line) for line in stdout.splitlines() if line.startswith('{"_aws"')]
    assert len(docs) == 1, stdout
    return docs[0]


@pytest.mark.influx
def test_metrics_count_what_happened(sink_env, monkeypatch, capsys):
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    sink_env(KCQL, CONNECT_INFLUX_ERROR_POLICY="NOOP")
    event = json_event([{"v": 1}, None, b"{bad", {"v": float("nan"), "w": 2}, {"v": 3}], topic="t")
    capsys.readouterr()
    assert app.lambda_handler(event, None) == {"batchItemFailures": []}
    emf = _emf(capsys.readouterr().out)
    names = {m["Name"] for m in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"RecordsReceived", "PointsWritten", "TombstonesSkipped", "NonFiniteFieldsSkipped", "WriteLatency",
            "WriteRetries", "RecordsFailed_decode"} <= names
    assert emf["RecordsReceived"] == [5.0] and emf["PointsWritten"] == [3.0]
    assert emf["TombstonesSkipped"] == [1.0] and emf["RecordsFailed_decode"] == [1.0]
    assert emf["NonFiniteFieldsSkipped"] == [1.0]


@pytest.mark.influx
def test_progress_logs_per_topic_counts(sink_env, caplog):
    sink_env(KCQL + "; INSERT INTO n SELECT * FROM u WITHTIMESTAMP _timestamp", CONNECT_PROGRESS_ENABLED="true")
    event = build_event([Rec("t", 0, 0, b'{"v":1}', timestamp=1), Rec("t", 1, 0, b'{"v":1}', timestamp=2),
                         Rec("u", 0, 0, b'{"v":1}', timestamp=3)])
    with caplog.at_level("INFO"):
        app.lambda_handler(event, None)
    logs = [r for r in caplog.records if hasattr(r, "per_topic")]
    assert len(logs) == 1
    assert logs[0].per_topic == {"t": 2, "u": 1}
    assert "Received 3 record(s); written 3" in logs[0].getMessage()


# ------------------------------------------------------------------ structured logs only, with the request id

_INVOKE = """
import json, sys, uuid
from handler import app
from handler.errors import BatchFailed, ConfigError
from tests.conftest import json_event

class Context:
    function_name = "influx-sink-test"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:influx-sink-test"
    aws_request_id = sys.argv[1]
    def get_remaining_time_in_millis(self):
        return 30_000

event = json_event([{"v": 1}, b"{bad json"], topic="t")
try:
    app.lambda_handler(event, Context())
except ConfigError:
    pass  # the runtime reports it; what matters here is what the handler printed
"""


def _invoke_in_process(env: dict[str, str], request_id: str) -> tuple[list[str], list[str]]:
    """Run the handler once in a fresh interpreter (a cold start); its stdout and stderr lines."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    full = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECT_", "POWERTOOLS_"))}
    full.update(env, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", _INVOKE, request_id], env=full, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return ([line for line in proc.stdout.splitlines() if line.strip()],
            [line for line in proc.stderr.splitlines() if line.strip()])


def test_invalid_settings_print_only_json_lines():
    out, err = _invoke_in_process({"CONNECT_INFLUX_URL": "notaurl", "CONNECT_INFLUX_KCQL": KCQL}, "req-bad-settings")
    for line in out + err:
        json.loads(line)  # no "UserWarning: No application metrics to publish", no plain text
    logs = [json.loads(line) for line in out if '"level"' in line]
    assert any("CONNECT_INFLUX_URL" in d["message"] and d["function_request_id"] == "req-bad-settings" for d in logs)
    emf = _emf("\n".join(out))
    assert emf["RecordsFailed_config"] == [2.0]


@pytest.mark.influx
def test_record_errors_carry_the_request_id(influx, db):
    out, err = _invoke_in_process({"CONNECT_INFLUX_URL": influx.url, "CONNECT_INFLUX_DB": db,
                                   "CONNECT_INFLUX_KCQL": KCQL, "CONNECT_INFLUX_ERROR_POLICY": "NOOP"},
                                  "req-1234")
    assert err == []
    logs = [json.loads(line) for line in out if '"level"' in line]
    failed = [d for d in logs if d["message"].startswith("record failed")]
    assert len(failed) == 1 and failed[0]["offset"] == 1
    assert failed[0]["function_request_id"] == "req-1234"
    assert failed[0]["cold_start"] is True
    assert all(d.get("function_request_id") == "req-1234" for d in logs)  # the settings at cold start too


@pytest.mark.influx
def test_context_without_request_id_drops_the_previous_one(sink_env, capsys):
    class Context:
        function_name = "f"
        memory_limit_in_mb = 128
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:f"
        aws_request_id = "req-first"

    sink_env(KCQL, CONNECT_INFLUX_ERROR_POLICY="NOOP")
    app.lambda_handler(json_event([b"{bad"], topic="t"), Context())
    capsys.readouterr()
    assert app.lambda_handler(json_event([b"{bad"], topic="t"), None) == {"batchItemFailures": []}
    assert "req-first" not in capsys.readouterr().out


# ------------------------------------------------------------------ RETRY logs its retries and the give-up


class _Countdown:
    def __init__(self, ms: int) -> None:
        self._end = time.monotonic() + ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._end - time.monotonic()) * 1000))


@pytest.mark.influx
def test_retry_logs_each_retry_and_the_give_up(sink_env, caplog, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nothing listens on: InfluxDB unreachable
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink_env(KCQL, CONNECT_INFLUX_ERROR_POLICY="RETRY", CONNECT_INFLUX_RETRY_INTERVAL="100")
    monkeypatch.setenv("CONNECT_INFLUX_URL", f"http://127.0.0.1:{port}")
    app.reset_runtime()
    with caplog.at_level("INFO"):
        response = app.lambda_handler(json_event([{"v": 1}, {"v": 2}], topic="t"), _Countdown(2000))
    assert len(response["batchItemFailures"]) == 2
    writes = [r for r in caplog.records if r.name == "handler.write.schedule"]
    retries, give_up = writes[:-1], writes[-1]
    assert len(retries) >= 2
    assert [r.attempt for r in retries] == list(range(1, len(retries) + 1))
    assert [r.wait_s for r in retries[:3]] == [0.1, 0.2, 0.4][:len(retries[:3])]  # doubling
    assert all(r.levelname == "WARNING" and "cannot reach InfluxDB" in r.reason for r in retries)
    assert give_up.levelname == "ERROR" and give_up.attempt == len(retries) + 1
    assert "would start after the invocation's deadline" in give_up.give_up
    assert "retrying in 0.1s" in retries[0].getMessage() and "giving up" in give_up.getMessage()


@pytest.mark.influx
def test_retry_gives_up_at_once_on_an_error_not_worth_retrying(sink_env, caplog, monkeypatch):
    sink_env(KCQL, CONNECT_INFLUX_ERROR_POLICY="RETRY", CONNECT_INFLUX_DB="no_such_database")
    with caplog.at_level("INFO"):
        response = app.lambda_handler(json_event([{"v": 1}], topic="t"), _Countdown(10_000))
    assert len(response["batchItemFailures"]) == 1
    writes = [r for r in caplog.records if r.name == "handler.write.schedule"]
    assert len(writes) == 1 and writes[0].attempt == 1
    assert writes[0].give_up == "the error is not retryable" and "404" in writes[0].reason
