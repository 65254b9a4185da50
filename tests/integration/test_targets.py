"""Issue 5: what reaches the server — 1.x rp/consistency/gzip/TLS, and the 2.x API (VictoriaMetrics)."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handler import app
from handler.errors import BatchFailed
from handler.write.protocol import V1Protocol
from handler.write.schedule import Writer
from handler.write.transport import HttpTarget
from influx_sink_tools import local_influxdb
from tests.conftest import QuietHandler, json_event, query_points, serving

pytestmark = pytest.mark.influx
KCQL = "INSERT INTO m SELECT * FROM t WITHTIMESTAMP _timestamp WITHTAG(_offset)"


def test_retention_policy_reaches_influx(sink_env, influx, db):
    influx.query(f'CREATE RETENTION POLICY "short" ON "{db}" DURATION 2h REPLICATION 1')
    now_ms = int(time.time() * 1000)
    sink_env("INSERT INTO m SELECT * FROM t WITHTIMESTAMP ts", CONNECT_INFLUX_RETENTION_POLICY="short")
    app.lambda_handler(json_event([{"v": 1, "ts": now_ms}], topic="t"), None)
    assert len(query_points(influx, db, f'SELECT * FROM "{db}"."short"."m"')) == 1
    assert query_points(influx, db, f'SELECT * FROM "{db}"."autogen"."m"') == []


def test_unknown_retention_policy_is_a_clear_error(sink_env, db):
    sink_env(KCQL, CONNECT_INFLUX_RETENTION_POLICY="nope")
    with pytest.raises(BatchFailed, match="retention policy not found: nope"):
        app.lambda_handler(json_event([{"v": 1}], topic="t"), None)


def test_consistency_level_reaches_influx(influx, db):
    for level, ok in (("QUORUM", True), ("any", True), ("bogus", False)):
        session = Writer(V1Protocol(HttpTarget(influx.url), db=db, consistency=level)).session(["m v=1i 1"])
        session.flush()
        report = session.wait()
        assert (report.error is None) == ok, (level, report.error)
        if not ok:
            assert report.error is not None and "invalid consistency level" in report.error.reason
            assert report.requests == 1  # a request-level 400 is not bisected line by line


def test_gzip_bodies(sink_env, influx, db):
    sink_env(KCQL, CONNECT_INFLUX_GZIP="true")
    assert app.lambda_handler(json_event([{"v": i} for i in range(50)], topic="t"), None) == {"batchItemFailures": []}
    assert len(query_points(influx, db, "SELECT * FROM m")) == 50


# ------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def tls_influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[local_influxdb.InfluxServer, str]]:
    root = tmp_path_factory.mktemp("tls")
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    server = local_influxdb.start(str(root / "data"), tls=(str(cert), str(key)))
    server.query('CREATE DATABASE "tls"')
    yield server, str(cert)
    server.stop()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_tls_is_verified_by_default_and_a_ca_bundle_makes_it_work(tls_influx, sink_env):
    server, cert = tls_influx
    sink_env(KCQL, CONNECT_INFLUX_URL=server.url, CONNECT_INFLUX_DB="tls")
    with pytest.raises(BatchFailed, match="CERTIFICATE_VERIFY_FAILED"):
        app.lambda_handler(json_event([{"v": 1}], topic="t"), None)
    sink_env(KCQL, CONNECT_INFLUX_URL=server.url, CONNECT_INFLUX_DB="tls", CONNECT_INFLUX_SSL_CA_BUNDLE=cert)
    assert app.lambda_handler(json_event([{"v": 1}], topic="t"), None) == {"batchItemFailures": []}
    assert len(query_points(server, "tls", "SELECT * FROM m")) == 1


# ------------------------------------------------------------------ 2.x API against VictoriaMetrics


_free_port = local_influxdb.free_port


@pytest.fixture(scope="module")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
    if not Path(exe).exists():
        pytest.skip("Debian package victoria-metrics is not installed (scripts/bootstrap.sh installs it)")
    port = _free_port()
    proc = subprocess.Popen([exe, f"-storageDataPath={tmp_path_factory.mktemp('vm')}",
                             f"-httpListenAddr=127.0.0.1:{port}", "-loggerLevel=ERROR", "-search.latencyOffset=0s",
                             "-search.disableCache"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1).read()
            break
        except OSError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def recording_proxy(victoria: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Forwards to VictoriaMetrics and records each request's path, query and headers (to see what reached it)."""
    seen: list[dict[str, Any]] = []

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
            req = urllib.request.Request(victoria + self.path, data=body, method="POST",
                                         headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    status, data = resp.status, resp.read()
            except urllib.error.HTTPError as err:
                status, data = err.code, err.read()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    with serving(Handler) as url:
        yield url, seen


def _vm_query(url: str, promql: str) -> list[dict[str, Any]]:
    import json

    data = urllib.parse.urlencode({"query": promql}).encode()
    with urllib.request.urlopen(f"{url}/api/v1/query", data=data, timeout=10) as resp:
        return list(json.loads(resp.read())["data"]["result"])


@pytest.mark.parametrize("version", ["2"])
def test_v2_api_carries_org_bucket_and_token(recording_proxy, victoria, sink_env, version):
    proxy, seen = recording_proxy
    measurement = f"vm{version}"
    sink_env(f"INSERT INTO {measurement} SELECT * FROM t WITHTAG(_offset)", CONNECT_INFLUX_URL=proxy,
             CONNECT_INFLUX_VERSION=version, CONNECT_INFLUX_ORG="my-org", CONNECT_INFLUX_BUCKET="my-bucket",
             CONNECT_INFLUX_TOKEN="tok-123", CONNECT_INFLUX_DB="")
    assert app.lambda_handler(json_event([{"reading": 1.5}, {"reading": 2.5}], topic="t"), None) == {
        "batchItemFailures": []}
    (req,) = seen
    assert req["path"].startswith("/api/v2/write?")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(req["path"]).query)
    assert query["org"] == ["my-org"] and query["bucket"] == ["my-bucket"] and query["precision"] == ["ns"]
    assert req["headers"]["Authorization"] == "Token tok-123"
    urllib.request.urlopen(f"{victoria}/internal/force_flush", timeout=10).read()
    for _ in range(50):
        got = _vm_query(victoria, f"{measurement}_reading")
        if len(got) == 2:
            break
        time.sleep(0.1)
    assert sorted(float(r["value"][1]) for r in got) == [1.5, 2.5]


def test_v2_server_unreachable_is_a_batch_error(sink_env):
    sink_env(KCQL, CONNECT_INFLUX_URL=f"http://127.0.0.1:{_free_port()}", CONNECT_INFLUX_VERSION="2",
             CONNECT_INFLUX_ORG="o", CONNECT_INFLUX_BUCKET="b", CONNECT_INFLUX_TOKEN="t")
    with pytest.raises(BatchFailed, match="cannot reach InfluxDB"):
        app.lambda_handler(json_event([{"v": 1}], topic="t"), None)


def test_v2_errors_never_show_a_password_in_the_url(sink_env):
    port = _free_port()
    sink_env(KCQL, CONNECT_INFLUX_URL=f"http://user:pa55-In-Url@127.0.0.1:{port}", CONNECT_INFLUX_VERSION="2",
             CONNECT_INFLUX_ORG="o", CONNECT_INFLUX_BUCKET="b", CONNECT_INFLUX_TOKEN="t")
    with pytest.raises(BatchFailed) as err:
        app.lambda_handler(json_event([{"v": 1}], topic="t"), None)
    assert "cannot reach InfluxDB at http://user:[hidden]@127.0.0.1" in str(err.value)
    assert "pa55-In-Url" not in str(err.value)
