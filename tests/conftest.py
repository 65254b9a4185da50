"""Shared fixtures: a real InfluxDB 1.x for the session (influx_sink_tools.local_influxdb), fresh databases."""

from __future__ import annotations

import contextlib
import http.server
import itertools
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from influx_sink_tools import local_influxdb, local_moto
from influx_sink_tools.eventgen import Rec, build_event

ROOT = Path(__file__).resolve().parent.parent

_db_counter = itertools.count()


@pytest.fixture(scope="session")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local_influxdb.InfluxServer]:
    """One real influxd for the whole session, on a free loopback port."""
    server = local_influxdb.start(str(tmp_path_factory.mktemp("influxd")))
    yield server
    server.stop()


@pytest.fixture
def db(influx: local_influxdb.InfluxServer) -> str:
    """A new, empty database for one test."""
    name = f"t{os.getpid()}_{next(_db_counter)}"
    influx.query(f'CREATE DATABASE "{name}"')
    return name


def query_points(server: local_influxdb.InfluxServer, db: str, q: str) -> list[dict[str, Any]]:
    """Rows of a query as dicts (time in ns), across all series."""
    res = server.query(q, db=db)["results"][0]
    if "error" in res:
        raise AssertionError(res["error"])
    rows: list[dict[str, Any]] = []
    for series in res.get("series", []):
        for values in series["values"]:
            row = dict(zip(series["columns"], values, strict=True))
            row["_measurement"] = series["name"]
            rows.append(row)
    return rows


def field_types(server: local_influxdb.InfluxServer, db: str, measurement: str) -> dict[str, str]:
    res = server.query(f'SHOW FIELD KEYS FROM "{measurement}"', db=db)["results"][0]
    return {k: t for series in res.get("series", []) for k, t in series["values"]}


def tag_keys(server: local_influxdb.InfluxServer, db: str, measurement: str) -> set[str]:
    res = server.query(f'SHOW TAG KEYS FROM "{measurement}"', db=db)["results"][0]
    return {v[0] for series in res.get("series", []) for v in series["values"]}


def json_event(values: list[Any], topic: str = "topic1", partition: int = 0, keys: list[Any] | None = None,
               start_offset: int = 0, **kw: Any) -> dict[str, Any]:
    """A Kafka event with JSON values (and keys); None stays a null value/key."""
    recs = []
    for i, v in enumerate(values):
        k = keys[i] if keys else None
        recs.append(Rec(topic, partition, start_offset + i,
                        None if v is None else (v if isinstance(v, bytes) else json.dumps(v).encode()),
                        None if k is None else (k if isinstance(k, bytes) else json.dumps(k).encode()),
                        timestamp=1_700_000_000_000 + start_offset + i))
    return build_event(recs, **kw)


@pytest.fixture
def sink_env(influx: local_influxdb.InfluxServer, db: str, monkeypatch: pytest.MonkeyPatch
             ) -> Callable[..., None]:
    """Point the handler at the test database with a KCQL, and forget any warm runtime."""
    from handler import app

    def configure(kcql: str, **extra: str) -> None:
        for k in list(os.environ):
            if k.startswith("CONNECT_"):
                monkeypatch.delenv(k)
        monkeypatch.setenv("CONNECT_INFLUX_URL", influx.url)
        monkeypatch.setenv("CONNECT_INFLUX_DB", db)
        monkeypatch.setenv("CONNECT_INFLUX_KCQL", kcql)
        for k, v in extra.items():
            monkeypatch.setenv(k, v)
        app.reset_runtime()

    yield configure  # type: ignore[misc]
    app.reset_runtime()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's server on a free loopback port: real SSM / Glue HTTP APIs for boto3."""
    server = local_moto.start()
    yield server.url
    server.stop()


@pytest.fixture
def aws_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """boto3 (and Powertools Parameters) pointed at moto's server with dummy credentials."""
    for k, v in {"AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "testing",
                 "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                 "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_server


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A stand-in server's request handler that does not print each request."""

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` served on a free loopback port, on a thread, for the block: yields its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
