"""Credentials from AWS Secrets Manager (moto's server) against a real InfluxDB 1.x with
authentication, and the InfluxDB 3 stand-in (tests/influxdb3_standin.py) with a token: first read,
rotation after one 401, a secret that is not rotated yet, bad secrets, and no value ever shown."""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

from handler import app, secrets
from handler.delivery import run_batch
from handler.errors import BatchFailed, ConfigError
from handler.records import parse_event
from handler.runtime import build
from influx_sink_tools import local_influxdb
from tests.conftest import json_event, query_points
from tests.influxdb3_standin import influx3

pytestmark = pytest.mark.influx
KCQL = "INSERT INTO m SELECT * FROM t WITHTIMESTAMP _timestamp"
_n = itertools.count()


@pytest.fixture(scope="module")
def auth_influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local_influxdb.InfluxServer]:
    server = local_influxdb.start(str(tmp_path_factory.mktemp("secrets")), auth=True)
    yield server
    server.stop()


@pytest.fixture
def sm(aws_env: str) -> Iterator[Any]:
    import boto3

    secrets.clear_cache()
    yield boto3.client("secretsmanager")
    secrets.clear_cache()


@pytest.fixture
def setup(auth_influx, sm, monkeypatch):  # type: ignore[no-untyped-def]
    """A database, a user that may write to it, a secret holding its credentials, a clean environment."""
    n = f"{os.getpid()}_{next(_n)}"
    db, user, name = f"sec{n}", f"writer{n}", f"influx-sink/test{n}"
    auth_influx.query(f'CREATE DATABASE "{db}"')
    auth_influx.query(f"CREATE USER {user} WITH PASSWORD 'first-Pa55'")
    auth_influx.query(f'GRANT WRITE ON "{db}" TO {user}')
    arn = sm.create_secret(Name=name, SecretString=json.dumps({"username": user, "password": "first-Pa55",
                                                               "engine": "influxdb"}))["ARN"]
    for k in [k for k in os.environ if k.startswith("CONNECT_")]:
        monkeypatch.delenv(k)
    values = {"CONNECT_INFLUX_URL": auth_influx.url, "CONNECT_INFLUX_DB": db, "CONNECT_INFLUX_KCQL": KCQL,
              "CONNECT_INFLUX_SECRET_ID": arn, "CONNECT_INFLUX_ERROR_POLICY": "RETRY"}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    app.reset_runtime()

    def rotate(password: str, influx: bool = True, secret: bool = True) -> None:
        if influx:
            auth_influx.query(f"SET PASSWORD FOR {user} = '{password}'")
        if secret:
            sm.put_secret_value(SecretId=arn, SecretString=json.dumps({"username": user, "password": password}))

    yield {"db": db, "user": user, "arn": arn, "name": name, "rotate": rotate, "env": values}
    app.reset_runtime()


def count(server: local_influxdb.InfluxServer, db: str) -> int:
    return len(query_points(server, db, "SELECT * FROM m"))


def test_credentials_come_from_the_secret(setup, auth_influx):
    assert app.lambda_handler(json_event([{"v": 1}], topic="t"), None) == {"batchItemFailures": []}
    assert count(auth_influx, setup["db"]) == 1
    rt = app.get_runtime()
    assert rt.settings.password is None and rt.settings.username is None  # the settings stay as loaded


def test_secret_by_name_too(setup, auth_influx, monkeypatch):
    monkeypatch.setenv("CONNECT_INFLUX_SECRET_ID", setup["name"])
    assert app.lambda_handler(json_event([{"v": 1}], topic="t"), None) == {"batchItemFailures": []}
    assert count(auth_influx, setup["db"]) == 1


def test_rotation_succeeds_after_one_refusal(setup, auth_influx, caplog):
    """The password changes in InfluxDB and in the secret while the function is warm (the cached
    secret still holds the old one): the next write is refused once, the secret is read afresh,
    and the same write succeeds with the new password."""
    assert app.lambda_handler(json_event([{"v": 1}], topic="t"), None) == {"batchItemFailures": []}
    setup["rotate"]("second-Pa55")
    rt = app.get_runtime()
    with caplog.at_level(logging.INFO):
        result = run_batch(parse_event(json_event([{"v": 2}], topic="t", start_offset=1)), rt.plan, rt.writer,
                           rt.settings.error_policy)
    assert result.response == {"batchItemFailures": []} and result.write_error is None
    assert result.write_requests == 2  # one 401, one success
    assert count(auth_influx, setup["db"]) == 2
    assert any("credentials changed in Secrets Manager" in r.getMessage() for r in caplog.records)
    assert app.lambda_handler(json_event([{"v": 3}], topic="t", start_offset=2), None) == {"batchItemFailures": []}
    assert count(auth_influx, setup["db"]) == 3


def test_a_secret_not_yet_rotated_fails_per_policy_after_one_reread(setup, auth_influx):
    assert app.lambda_handler(json_event([{"v": 1}], topic="t"), None) == {"batchItemFailures": []}
    setup["rotate"]("third-Pa55", secret=False)
    rt = app.get_runtime()
    result = run_batch(parse_event(json_event([{"v": 2}, {"v": 3}], topic="t", start_offset=1)), rt.plan,
                       rt.writer, rt.settings.error_policy)
    assert result.write_error is not None and result.write_error.status == 401
    assert result.write_requests == 1  # the re-read found nothing new: the request is not sent again
    assert [i["itemIdentifier"]["offset"] for i in result.response["batchItemFailures"]] == [1, 2]
    assert count(auth_influx, setup["db"]) == 1


def test_the_secret_expires_from_the_cache(setup, auth_influx, monkeypatch):
    """With a zero cache lifetime, an invocation after the rotation uses the new secret at once."""
    monkeypatch.setenv("CONNECT_INFLUX_SECRET_MAX_AGE", "0")
    app.reset_runtime()
    assert app.lambda_handler(json_event([{"v": 1}], topic="t"), None) == {"batchItemFailures": []}
    setup["rotate"]("fourth-Pa55")
    rt = app.get_runtime()
    result = run_batch(parse_event(json_event([{"v": 2}], topic="t", start_offset=1)), rt.plan, rt.writer,
                       rt.settings.error_policy)
    assert result.write_requests == 1 and count(auth_influx, setup["db"]) == 2


def test_the_secret_never_shows(setup, auth_influx, caplog, capsys):
    setup["rotate"]("fifth-Pa55", influx=False)  # the secret is now wrong: the write is refused
    with caplog.at_level(logging.DEBUG):
        app.lambda_handler(json_event([{"v": 1}], topic="t"), None)
        rt = app.get_runtime()
    shown = "\n".join(rt.settings.describe()) + repr(rt) + repr(rt.settings) + repr(rt.credentials)
    shown += caplog.text + "".join(capsys.readouterr())
    assert "fifth-Pa55" not in shown and "first-Pa55" not in shown
    assert f"connect.influx.secret.id = {setup['arn']} (env)" in rt.settings.describe()


@pytest.mark.parametrize(("value", "message"), [
    ("not json", "is not a JSON object"),
    (json.dumps(["a"]), "is not a JSON object"),
    (json.dumps({"username": "u", "pass": "hidden-Value"}), "has no 'password' (InfluxDB 1.x needs username "
                                                            "and password); it holds the keys: pass, username"),
    (json.dumps({"token": "hidden-Value"}), "it holds the keys: token; for a token set connect.influx.version to 2 "
                                            "or 3"),
])
def test_a_bad_secret_is_a_config_error_naming_it_but_not_its_values(setup, sm, value, message):
    sm.put_secret_value(SecretId=setup["arn"], SecretString=value)
    with pytest.raises(ConfigError) as err:
        build(setup["env"])
    assert message in str(err.value) and setup["arn"] in str(err.value)
    assert "hidden-Value" not in str(err.value)


def test_a_missing_secret_is_a_config_error(setup):
    with pytest.raises(ConfigError, match=r"cannot read the secret 'no/such/secret'.*ResourceNotFound"):
        build({**setup["env"], "CONNECT_INFLUX_SECRET_ID": "no/such/secret"})


def test_unreachable_secrets_manager_is_a_config_error_in_time(setup, monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    secrets.clear_cache()
    from handler import aws_calls

    aws_calls.clear_clients()
    try:
        with pytest.raises(ConfigError, match=r"cannot read the secret .* Secrets Manager"):
            build(setup["env"])
    finally:
        aws_calls.clear_clients()


def test_v3_token_from_the_secret_and_its_rotation(sm, monkeypatch):
    """InfluxDB 3 (stand-in): the token is sent as Bearer; after the server's token changes and the
    secret with it, one 401 and the write succeeds."""
    name = f"influx-sink/v3-{os.getpid()}-{next(_n)}"
    sm.create_secret(Name=name, SecretString=json.dumps({"token": "apiv3_first"}))
    with influx3(token="apiv3_first") as server:
        env = {"CONNECT_INFLUX_URL": server.url, "CONNECT_INFLUX_VERSION": "3", "CONNECT_INFLUX_DB": "d",
               "CONNECT_INFLUX_KCQL": KCQL, "CONNECT_INFLUX_SECRET_ID": name, "CONNECT_INFLUX_ERROR_POLICY": "THROW"}
        rt = build(env)
        run_batch(parse_event(json_event([{"v": 1}], topic="t")), rt.plan, rt.writer, "THROW")
        assert server.requests[-1].headers["Authorization"] == "Bearer apiv3_first"
        server.token = "apiv3_second"
        sm.put_secret_value(SecretId=name, SecretString=json.dumps({"token": "apiv3_second"}))
        result = run_batch(parse_event(json_event([{"v": 2}], topic="t", start_offset=1)), rt.plan, rt.writer,
                           "THROW")
        assert result.write_requests == 2 and len(server.lines("d")) == 2
        assert [r.headers["Authorization"] for r in server.requests[-2:]] == ["Bearer apiv3_first",
                                                                              "Bearer apiv3_second"]
        server.token = "apiv3_third"  # and the secret is not rotated: THROW names the refusal
        with pytest.raises(BatchFailed, match="refused the credentials"):
            run_batch(parse_event(json_event([{"v": 3}], topic="t", start_offset=2)), rt.plan, rt.writer, "THROW")


def test_v3_secret_without_a_token_is_refused(sm):
    name = f"influx-sink/v3bad-{os.getpid()}-{next(_n)}"
    sm.create_secret(Name=name, SecretString=json.dumps({"username": "u", "password": "p"}))
    with pytest.raises(ConfigError, match=r"has no 'token' \(InfluxDB 3\.x needs token\)"):
        build({"CONNECT_INFLUX_URL": "http://127.0.0.1:1", "CONNECT_INFLUX_VERSION": "3", "CONNECT_INFLUX_DB": "d",
               "CONNECT_INFLUX_KCQL": KCQL, "CONNECT_INFLUX_SECRET_ID": name})


def test_the_secret_named_in_parameter_store(setup, auth_influx, monkeypatch):
    """Settings from Parameter Store, the secret's id among them: credentials from the secret, and a
    rotation while warm costs one refused request."""
    import boto3

    ssm = boto3.client("ssm")
    path = f"/influx-sink/secret-test{next(_n)}"
    for key, env_name in (("connect.influx.url", "CONNECT_INFLUX_URL"), ("connect.influx.db", "CONNECT_INFLUX_DB"),
                          ("connect.influx.kcql", "CONNECT_INFLUX_KCQL"),
                          ("connect.influx.secret.id", "CONNECT_INFLUX_SECRET_ID")):
        ssm.put_parameter(Name=f"{path}/{key}", Value=setup["env"][env_name], Type="String", Overwrite=True)
        monkeypatch.delenv(env_name)
    monkeypatch.setenv("CONNECT_INFLUX_SSM_PATH", path)
    app.reset_runtime()
    assert app.lambda_handler(json_event([{"v": 1}], topic="t"), None) == {"batchItemFailures": []}
    assert app.get_runtime().settings.sources["connect.influx.secret.id"] == "ssm"
    setup["rotate"]("sixth-Pa55")
    assert app.lambda_handler(json_event([{"v": 2}], topic="t", start_offset=1), None) == {"batchItemFailures": []}
    assert count(auth_influx, setup["db"]) == 2


def test_a_silent_secrets_manager_ends_at_the_invocations_deadline(setup, monkeypatch):
    """An endpoint that accepts the connection and never answers: the read is cut by the deadline,
    and the error says so (instead of botocore's 60 s default)."""
    import socket
    import time

    from handler import aws_calls, deadline

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
    secrets.clear_cache()
    aws_calls.clear_clients()
    deadline.set_deadline(time.monotonic() + 1.5)
    try:
        with pytest.raises(ConfigError, match=r"Secrets Manager did not answer within .*the invocation's deadline"):
            build(setup["env"])
    finally:
        deadline.set_deadline(None)
        aws_calls.clear_clients()
        silent.close()
