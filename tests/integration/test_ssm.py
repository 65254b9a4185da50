"""Issue 5: settings from Parameter Store (moto's server) against a real InfluxDB with authentication."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from handler import app
from handler.errors import BatchFailed, ConfigError
from influx_sink_tools import local_influxdb
from tests.conftest import json_event, query_points

pytestmark = pytest.mark.influx
KCQL = "INSERT INTO m SELECT * FROM t WITHTIMESTAMP _timestamp"
_n = iter(range(10_000))


@pytest.fixture(scope="module")
def auth_influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local_influxdb.InfluxServer]:
    server = local_influxdb.start(str(tmp_path_factory.mktemp("auth")), auth=True)
    yield server
    server.stop()


@pytest.fixture
def ssm(aws_env: str) -> Any:
    import boto3

    return boto3.client("ssm")


@pytest.fixture
def setup(auth_influx, ssm, monkeypatch):  # type: ignore[no-untyped-def]
    """A fresh database, a user that may write to it, a Parameter Store path, a clean environment."""
    n = next(_n)
    db, user, path = f"ssm{n}", f"writer{n}", f"/influx-sink/test{n}"
    auth_influx.query(f'CREATE DATABASE "{db}"')
    auth_influx.query(f"CREATE USER {user} WITH PASSWORD 'first-Pa55'")
    auth_influx.query(f'GRANT WRITE ON "{db}" TO {user}')
    for k in [k for k in __import__("os").environ if k.startswith("CONNECT_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("CONNECT_INFLUX_SSM_PATH", path)
    app.reset_runtime()

    def put(key: str, value: str, secure: bool = False) -> None:
        ssm.put_parameter(Name=f"{path}/{key}", Value=value, Type="SecureString" if secure else "String",
                          Overwrite=True)

    put("connect.influx.url", auth_influx.url)
    put("connect.influx.db", db)
    put("connect.influx.kcql", KCQL)
    put("connect.influx.username", user)
    put("connect.influx.password", "first-Pa55", secure=True)
    yield {"db": db, "user": user, "path": path, "put": put}
    app.reset_runtime()


def count(server: local_influxdb.InfluxServer, db: str) -> int:
    return len(query_points(server, db, "SELECT * FROM m"))


def test_settings_entirely_from_parameter_store(setup, auth_influx):
    assert app.lambda_handler(json_event([{"v": 1}], topic="t"), None) == {"batchItemFailures": []}
    assert count(auth_influx, setup["db"]) == 1
    rt = app.get_runtime()
    assert rt.settings.sources["connect.influx.password"] == "ssm"
    assert rt.settings.sources["connect.influx.retention.policy"] == "default"


def test_environment_overrides_parameter_store(setup, auth_influx, monkeypatch):
    setup["put"]("connect.influx.db", "no_such_db")
    monkeypatch.setenv("CONNECT_INFLUX_DB", setup["db"])
    assert app.lambda_handler(json_event([{"v": 1}], topic="t"), None) == {"batchItemFailures": []}
    assert count(auth_influx, setup["db"]) == 1
    assert app.get_runtime().settings.sources["connect.influx.db"] == "env"


def test_wrong_password_is_a_clear_authentication_error(setup):
    setup["put"]("connect.influx.password", "wrong-Pa55", secure=True)
    with pytest.raises(BatchFailed) as err:
        app.lambda_handler(json_event([{"v": 1}], topic="t"), None)
    assert "InfluxDB refused the credentials (HTTP 401)" in str(err.value)
    assert "topic=t partition=0 offset=0" in str(err.value)
    assert "wrong-Pa55" not in str(err.value)


def test_rotated_password_is_picked_up_after_the_cache_lifetime(setup, auth_influx, monkeypatch):
    monkeypatch.setenv("CONNECT_INFLUX_SSM_MAX_AGE", "1")
    app.lambda_handler(json_event([{"v": 1}], topic="t"), None)
    writer_before = app.get_runtime().writer
    auth_influx.query(f"SET PASSWORD FOR {setup['user']} = 'second-Pa55'")
    setup["put"]("connect.influx.password", "second-Pa55", secure=True)
    time.sleep(1.2)
    assert app.lambda_handler(json_event([{"v": 2}], topic="t", start_offset=1), None) == {"batchItemFailures": []}
    assert app.get_runtime().writer is not writer_before  # rebuilt from the changed parameters
    assert count(auth_influx, setup["db"]) == 2


def test_auth_failure_refreshes_parameter_store_once_before_failing(setup, auth_influx):
    app.lambda_handler(json_event([{"v": 1}], topic="t"), None)
    auth_influx.query(f"SET PASSWORD FOR {setup['user']} = 'third-Pa55'")
    setup["put"]("connect.influx.password", "third-Pa55", secure=True)
    # Within the 300 s cache lifetime: the write gets 401, reads Parameter Store afresh, and succeeds.
    assert app.lambda_handler(json_event([{"v": 2}], topic="t", start_offset=1), None) == {"batchItemFailures": []}
    assert count(auth_influx, setup["db"]) == 2


def test_no_secret_in_any_log_line_or_error(setup, auth_influx, monkeypatch, capsys, caplog):
    monkeypatch.setenv("CONNECT_PROGRESS_ENABLED", "true")
    monkeypatch.setenv("CONNECT_INFLUX_URL", f"http://{setup['user']}:first-Pa55@{auth_influx.url[7:]}")
    texts: list[str] = []
    with caplog.at_level(logging.INFO):  # the production level (botocore DEBUG dumps API responses)
        monkeypatch.setenv("CONNECT_INFLUX_ERROR_POLICY", "NOOP")
        app.reset_runtime()
        app.lambda_handler(json_event([{"v": 1}, b"{bad json"], topic="t"), None)  # success + a record error
        auth_influx.query(f"SET PASSWORD FOR {setup['user']} = 'unknown-Pa55'")  # 401, refresh, 401 again
        setup["put"]("connect.influx.password", "rotated-Secret9", secure=True)
        monkeypatch.setenv("CONNECT_INFLUX_ERROR_POLICY", "THROW")
        app.reset_runtime()
        with pytest.raises(BatchFailed) as err:
            app.lambda_handler(json_event([{"v": 3}], topic="t", start_offset=5), None)
        texts.append(str(err.value))
        monkeypatch.setenv("CONNECT_INFLUX_ERROR_POLICY", "bogus")  # a config error
        app.reset_runtime()
        with pytest.raises(ConfigError) as cfg:
            app.lambda_handler(json_event([{"v": 4}], topic="t"), None)
        texts.append(str(cfg.value))
    out = capsys.readouterr()
    texts += [out.out, out.err] + [r.getMessage() for r in caplog.records] + [str(r.__dict__) for r in caplog.records]
    blob = "\n".join(texts)
    assert "[hidden]" in blob  # the settings were logged, masked
    for secret in ("first-Pa55", "rotated-Secret9"):
        assert secret not in blob


def test_credentials_in_the_url_are_used_and_hidden(auth_influx, sink_env):
    auth_influx.query('CREATE DATABASE "urlauth"')
    sink_env(KCQL, CONNECT_INFLUX_URL=f"http://admin:admin-secret@{auth_influx.url[7:]}", CONNECT_INFLUX_DB="urlauth")
    assert app.lambda_handler(json_event([{"v": 1}], topic="t"), None) == {"batchItemFailures": []}
    assert count(auth_influx, "urlauth") == 1
    assert "admin-secret" not in "\n".join(app.get_runtime().settings.describe())
