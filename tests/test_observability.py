"""Issue 4: Retry-After is honoured; metrics (EMF) and progress logs say what happened."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from handler import app
from handler.delivery import run_batch
from handler.eventgen import Rec, build_event
from handler.records import parse_event
from handler.runtime import build
from tests.conftest import json_event

KCQL = "INSERT INTO m SELECT * FROM t WITHTIMESTAMP _timestamp"


@pytest.fixture
def overloaded_server() -> Iterator[tuple[str, list[float]]]:
    """Answers 503 with Retry-After: 1 to the first write, 204 after (InfluxDB cannot be made to do this)."""
    seen: list[float] = []

    class Handler(http.server.BaseHTTPRequestHandler):
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

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


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
