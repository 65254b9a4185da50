"""Schema-registry fixtures: a Confluent-contract registry served from the test, and moto's Glue.

Use from a test module with ``pytest_plugins = ["tests.fixtures_registry"]``.

- ``registry``: a fresh HTTP server per test implementing what the sink reads of the Confluent
  Schema Registry REST API (``GET /schemas/ids/{id}``, ``GET /subjects/{s}/versions/{v}``) and
  what the docs' ``curl`` registers with (``POST /subjects/{s}/versions``); it counts requests.
  No Confluent server exists here, and its contract is small enough to serve.
- ``glue``: moto's real Glue HTTP API (``moto_server``, one per session on a free loopback port),
  with boto3 pointed at it for the test (``AWS_ENDPOINT_URL``, dummy credentials, us-east-1).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from handler.decode import registry as registry_mod

_names = itertools.count()


class FakeRegistry:
    """Schemas by id and by subject/version; ``requests`` counts every request path."""

    def __init__(self, user_info: str | None = None) -> None:
        self.by_id: dict[int, dict[str, Any]] = {}
        self.subjects: dict[str, list[int]] = {}
        self.requests: Counter[str] = Counter()
        self.user_info = user_info
        self.fail_with: int | None = None  # answer every request with this status (an outage)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def register(self, subject: str, schema: Any, schema_type: str | None = None,
                 references: list[dict[str, Any]] | None = None) -> int:
        """Register (as the registry's POST does) and return the id; equal schemas share an id."""
        text = schema if isinstance(schema, str) else json.dumps(schema)
        with self._lock:
            same = [i for i, d in self.by_id.items() if d["schema"] == text and d.get("schemaType") == schema_type]
            if same:
                sid = same[0]
            else:
                sid = len(self.by_id) + 1
                doc = {"schema": text}
                if schema_type:
                    doc["schemaType"] = schema_type
                if references:
                    doc["references"] = references
                self.by_id[sid] = doc
            versions = self.subjects.setdefault(subject, [])
            if sid not in versions:
                versions.append(sid)
            return sid

    def schema_requests(self) -> int:
        return sum(n for path, n in self.requests.items() if path.startswith("/schemas/ids/"))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        reg = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, doc: Any) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authorised(self) -> bool:
                if reg.user_info is None:
                    return True
                expected = "Basic " + base64.b64encode(reg.user_info.encode()).decode()
                if self.headers.get("Authorization") == expected:
                    return True
                self._send(401, {"error_code": 401, "message": "Unauthorized"})
                return False

            def do_GET(self) -> None:
                path = urllib.parse.urlsplit(self.path).path
                with reg._lock:
                    reg.requests[path] += 1
                if reg.fail_with is not None:
                    self._send(reg.fail_with, {"error_code": reg.fail_with * 100, "message": "Internal error"})
                    return
                if not self._authorised():
                    return
                parts = path.strip("/").split("/")
                if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and parts[2].isdigit():
                    sid = int(parts[2])
                    doc = reg.by_id.get(sid)
                    if doc is None:
                        self._send(404, {"error_code": 40403, "message": f"Schema {sid} not found"})
                    else:
                        self._send(200, doc)
                    return
                if len(parts) == 4 and parts[0] == "subjects" and parts[2] == "versions":
                    subject = urllib.parse.unquote(parts[1])
                    versions = reg.subjects.get(subject)
                    if not versions:
                        self._send(404, {"error_code": 40401, "message": f"Subject '{subject}' not found."})
                        return
                    n = len(versions) if parts[3] == "latest" else int(parts[3])
                    if not 1 <= n <= len(versions):
                        self._send(404, {"error_code": 40402, "message": f"Version {n} not found."})
                        return
                    sid = versions[n - 1]
                    self._send(200, {"subject": subject, "version": n, "id": sid, **reg.by_id[sid]})
                    return
                self._send(404, {"error_code": 404, "message": "HTTP 404 Not Found"})

            def do_POST(self) -> None:
                path = urllib.parse.urlsplit(self.path).path
                with reg._lock:
                    reg.requests["POST " + path] += 1
                if not self._authorised():
                    return
                parts = path.strip("/").split("/")
                if len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
                    doc = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                    sid = reg.register(urllib.parse.unquote(parts[1]), doc["schema"], doc.get("schemaType"),
                                       doc.get("references"))
                    self._send(200, {"id": sid})
                    return
                self._send(404, {"error_code": 404, "message": "HTTP 404 Not Found"})

        return Handler


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    """A fresh registry, and a process with no cached schemas (a cold Lambda)."""
    registry_mod.clear_caches()
    server = FakeRegistry()
    yield server
    server.stop()
    registry_mod.clear_caches()


@pytest.fixture
def secured_registry() -> Iterator[FakeRegistry]:
    """A registry that wants Basic auth ``sr-user:sr-secret``."""
    registry_mod.clear_caches()
    server = FakeRegistry(user_info="sr-user:sr-secret")
    yield server
    server.stop()
    registry_mod.clear_caches()


# ---------------------------------------------------------------- moto (AWS Glue)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoServer:
    def __init__(self) -> None:
        exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
        if exe is None:
            raise RuntimeError("moto_server is not installed (pip install 'moto[server]')")
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("moto_server did not start listening within 60 s") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="session")
def glue_moto() -> Iterator[MotoServer]:
    """One moto server for the session's Glue tests."""
    server = MotoServer()
    yield server
    server.stop()


class Glue:
    """A Glue registry of its own in moto, and the helper to register schema versions in it."""

    def __init__(self, endpoint: str) -> None:
        import boto3

        self.endpoint = endpoint
        self.client = boto3.client("glue", region_name="us-east-1", endpoint_url=endpoint)
        self.registry_name = f"reg{os.getpid()}_{next(_names)}"
        self.client.create_registry(RegistryName=self.registry_name)

    def register(self, schema: Any, data_format: str = "AVRO", name: str | None = None) -> str:
        """Create a schema and return its first version id (what producers put in the frame)."""
        text = schema if isinstance(schema, str) else json.dumps(schema)
        resp = self.client.create_schema(RegistryId={"RegistryName": self.registry_name},
                                         SchemaName=name or f"s{next(_names)}", DataFormat=data_format,
                                         Compatibility="NONE", SchemaDefinition=text)
        return str(resp["SchemaVersionId"])


@pytest.fixture
def glue(glue_moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Glue]:
    """boto3 in this process pointed at moto's Glue with dummy credentials, and a fresh registry."""
    for k, v in {**AWS_ENV, "AWS_ENDPOINT_URL": glue_moto.url}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    registry_mod.clear_caches()
    yield Glue(glue_moto.url)
    registry_mod.clear_caches()
