"""Every network wait ends before the invocation's deadline, under every error policy.

Through ``lambda_handler`` with a context that counts down from 3 s, as Lambda's does: a host
whose SYNs are dropped (a loopback listener with a full accept backlog: the kernel drops further
SYNs, as a security group that drops packets does), a server that accepts and never answers
(InfluxDB cannot be made to hang), for InfluxDB 1.x and 2.x, the Confluent registry, Glue and
Parameter Store. The answer comes before the deadline and the error says connect or read, and
after how long.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from handler import app, aws_calls, ssm
from handler.decode import registry as registry_mod
from handler.errors import BatchFailed, ConfigError
from influx_sink_tools.framing import confluent_frame, glue_frame
from tests.conftest import json_event

POLICIES = ["THROW", "RETRY", "NOOP"]
KCQL = "INSERT INTO m SELECT * FROM t WITHTIMESTAMP _timestamp"
FUNCTION_TIMEOUT_MS = 3000


class Context:
    """What Lambda hands the handler: its remaining time counts down from ``ms``."""

    function_name = "influx-sink-test"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:influx-sink-test"

    def __init__(self, ms: int = FUNCTION_TIMEOUT_MS) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._end = time.monotonic() + ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._end - time.monotonic()) * 1000))


@pytest.fixture
def dropped_syn() -> Iterator[int]:
    """The port of a loopback listener whose accept backlog is full: a fresh connect hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    queued = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(address)
        queued.append(s)
    time.sleep(0.05)
    probe = socket.socket()
    probe.settimeout(0.5)
    with pytest.raises(TimeoutError):  # the case is real only if a connect really hangs
        probe.connect(address)
    probe.close()
    yield address[1]
    for s in queued:
        s.close()
    listener.close()


@pytest.fixture
def hanging_server() -> Iterator[int]:
    """The port of a server that accepts connections, reads, and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(50)
    listener.settimeout(0.2)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conns.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    stop.set()
    for c in conns:
        c.close()
    listener.close()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Settings for the handler (a clean CONNECT_* environment), and a cold process."""

    def set_env(url: str, policy: str = "THROW", **extra: str) -> None:
        for k in [k for k in __import__("os").environ if k.startswith("CONNECT_")]:
            monkeypatch.delenv(k)
        monkeypatch.setenv("CONNECT_INFLUX_URL", url)
        monkeypatch.setenv("CONNECT_INFLUX_DB", "db")
        monkeypatch.setenv("CONNECT_INFLUX_KCQL", KCQL)
        monkeypatch.setenv("CONNECT_INFLUX_ERROR_POLICY", policy)
        monkeypatch.setenv("CONNECT_INFLUX_RETRY_INTERVAL", "100")
        for k, v in extra.items():
            monkeypatch.setenv(k, v)
        app.reset_runtime()

    registry_mod.clear_caches()
    yield set_env
    app.reset_runtime()
    registry_mod.clear_caches()
    aws_calls.clear_clients()
    ssm._provider = None


def event() -> dict[str, Any]:
    """Three good records over two partitions."""
    first = json_event([{"v": 1}, {"v": 2}], topic="t", partition=0)
    second = json_event([{"v": 3}], topic="t", partition=1)
    first["records"].update(second["records"])
    return first


def limit_seconds(text: str) -> float:
    m = re.search(r"(?:timed out after|within) (\d+\.\d+)s", text)
    assert m, text
    return float(m.group(1))


def run(policy: str, caplog: pytest.LogCaptureFixture, ev: dict[str, Any] | None = None) -> str:
    """Invoke under ``policy`` with a 3 s context; assert the answer came in time; return the error
    text (THROW's exception, or the reasons RETRY and NOOP logged for every failed record)."""
    ctx = Context()
    ev = ev or event()
    n = sum(len(g) for g in ev["records"].values())
    caplog.clear()
    with caplog.at_level("INFO"):
        if policy == "THROW":
            with pytest.raises(BatchFailed) as err:
                app.lambda_handler(ev, ctx)
            text = str(err.value)
        else:
            response = app.lambda_handler(ev, ctx)
            reported = response["batchItemFailures"]
            assert len(reported) == (n if policy == "RETRY" else 0)
            reasons = [r.reason for r in caplog.records if r.getMessage().startswith("record failed")]
            assert len(reasons) == n
            text = "\n".join(reasons)
    assert ctx.get_remaining_time_in_millis() > 0, "answered after the function's timeout"
    return text


# ------------------------------------------------------------------ InfluxDB 1.x


@pytest.mark.parametrize("policy", POLICIES)
def test_dropped_syn_connect_ends_before_the_deadline(dropped_syn, configure, caplog, policy):
    configure(f"http://127.0.0.1:{dropped_syn}", policy)
    text = run(policy, caplog)
    assert f"connect to InfluxDB at 127.0.0.1:{dropped_syn} timed out after" in text
    assert "(TCP connect; the invocation's deadline)" in text
    assert 1.5 < limit_seconds(text) <= 2.7  # the time left less the safety margin, not the 5 s setting


@pytest.mark.parametrize("policy", POLICIES)
def test_server_that_never_answers_read_ends_before_the_deadline(hanging_server, configure, caplog, policy):
    configure(f"http://127.0.0.1:{hanging_server}", policy)
    text = run(policy, caplog)
    assert f"InfluxDB at 127.0.0.1:{hanging_server} did not answer within" in text
    assert "(read; the invocation's deadline)" in text


def test_connect_timeout_setting_applies_when_the_deadline_is_far(dropped_syn, configure, caplog):
    configure(f"http://127.0.0.1:{dropped_syn}", CONNECT_INFLUX_CONNECT_TIMEOUT_MS="300")
    with pytest.raises(BatchFailed) as err:
        app.lambda_handler(event(), Context(60_000))
    assert "timed out after 0.30s (TCP connect; connect.influx.connect.timeout.ms)" in str(err.value)


def test_tls_handshake_is_part_of_the_connect_limit(hanging_server, configure, caplog):
    configure(f"https://127.0.0.1:{hanging_server}", CONNECT_INFLUX_SSL_VERIFY="false")
    text = run("THROW", caplog)
    assert f"connect to InfluxDB at 127.0.0.1:{hanging_server} timed out after" in text
    assert "(TLS handshake; the invocation's deadline)" in text


def test_dns_lookup_is_bounded(configure, caplog, monkeypatch):
    # Stand-in: a resolver that never answers cannot be made on loopback, so getaddrinfo for
    # this one name blocks (until the test ends) the way an unanswered DNS query does.
    release = threading.Event()
    real = socket.getaddrinfo

    def unanswered(host: Any, *args: Any, **kw: Any) -> Any:
        if host == "influx.example.invalid":
            release.wait(30)
            raise socket.gaierror("no answer")
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", unanswered)
    configure("http://influx.example.invalid:8086", "RETRY")
    try:
        text = run("RETRY", caplog)
    finally:
        release.set()
    assert "connect to InfluxDB at influx.example.invalid:8086 timed out after" in text
    assert "(DNS look-up; the invocation's deadline)" in text


# ------------------------------------------------------------------ InfluxDB 2.x (influxdb-client)


V2 = {"CONNECT_INFLUX_VERSION": "2", "CONNECT_INFLUX_TOKEN": "tok", "CONNECT_INFLUX_ORG": "o",
      "CONNECT_INFLUX_BUCKET": "b"}


@pytest.mark.parametrize("policy", ["THROW", "RETRY"])
def test_v2_connect_ends_before_the_deadline(dropped_syn, configure, caplog, policy):
    configure(f"http://127.0.0.1:{dropped_syn}", policy, **V2)
    text = run(policy, caplog)
    assert f"connect to InfluxDB at http://127.0.0.1:{dropped_syn} timed out after" in text
    assert "the invocation's deadline" in text


@pytest.mark.parametrize("policy", ["THROW", "NOOP"])
def test_v2_read_ends_before_the_deadline(hanging_server, configure, caplog, policy):
    configure(f"http://127.0.0.1:{hanging_server}", policy, **V2)
    text = run(policy, caplog)
    assert f"InfluxDB at http://127.0.0.1:{hanging_server} did not answer within" in text
    assert "(read; the invocation's deadline)" in text


# ------------------------------------------------------------------ schema registries


def avro_event(value: bytes) -> dict[str, Any]:
    ev = json_event([{"v": 1}], topic="t")
    import base64

    for group in ev["records"].values():
        for rec in group:
            rec["value"] = base64.b64encode(value).decode()
    return ev


@pytest.mark.parametrize("policy", POLICIES)
def test_confluent_registry_connect_ends_before_the_deadline(dropped_syn, closed_port, configure, caplog, policy):
    configure(f"http://127.0.0.1:{closed_port}", policy,
              CONNECT_INFLUX_SCHEMA_REGISTRY_URL=f"http://127.0.0.1:{dropped_syn}")
    text = run(policy, caplog, avro_event(confluent_frame(7, b"\x02")))
    assert f"connect to the schema registry at http://127.0.0.1:{dropped_syn} timed out after" in text
    assert "(TCP connect; the invocation's deadline)" in text


def test_confluent_registry_read_ends_before_the_deadline(hanging_server, closed_port, configure, caplog):
    configure(f"http://127.0.0.1:{closed_port}", "RETRY",
              CONNECT_INFLUX_SCHEMA_REGISTRY_URL=f"http://127.0.0.1:{hanging_server}")
    text = run("RETRY", caplog, avro_event(confluent_frame(7, b"\x02")))
    assert f"the schema registry at http://127.0.0.1:{hanging_server} did not answer within" in text
    assert "(read; the invocation's deadline)" in text


@pytest.fixture
def dummy_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
                 "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(k, raising=False)


@pytest.mark.parametrize("policy", POLICIES)
def test_glue_connect_ends_before_the_deadline(dropped_syn, closed_port, configure, dummy_aws, monkeypatch,
                                               caplog, policy):
    monkeypatch.setenv("AWS_ENDPOINT_URL_GLUE", f"http://127.0.0.1:{dropped_syn}")
    configure(f"http://127.0.0.1:{closed_port}", policy)
    text = run(policy, caplog, avro_event(glue_frame(str(uuid.uuid4()), b"\x02")))
    assert "connect to AWS Glue timed out after" in text
    assert "the invocation's deadline" in text


def test_glue_connect_ends_before_the_deadline_when_making_the_client_is_slow(
        dropped_syn, closed_port, configure, dummy_aws, monkeypatch, caplog):
    """A busy cold start can spend a second or more making boto3's client, after the time left was
    read: the client's timeouts must fit the time left once it exists, not before."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_GLUE", f"http://127.0.0.1:{dropped_syn}")
    configure(f"http://127.0.0.1:{closed_port}", "NOOP")
    real, made = aws_calls.make_client, []

    def slow_first(*args: Any) -> Any:
        if not made:
            time.sleep(1.5)
        made.append(args)
        return real(*args)

    monkeypatch.setattr(aws_calls, "make_client", slow_first)
    text = run("NOOP", caplog, avro_event(glue_frame(str(uuid.uuid4()), b"\x02")))
    assert "connect to AWS Glue timed out after" in text
    assert len(made) >= 2, "the client made before the slow start kept timeouts that no longer fit"


def test_glue_read_ends_before_the_deadline(hanging_server, closed_port, configure, dummy_aws, monkeypatch, caplog):
    monkeypatch.setenv("AWS_ENDPOINT_URL_GLUE", f"http://127.0.0.1:{hanging_server}")
    configure(f"http://127.0.0.1:{closed_port}", "NOOP")
    text = run("NOOP", caplog, avro_event(glue_frame(str(uuid.uuid4()), b"\x02")))
    assert "AWS Glue did not answer within" in text
    assert "(read; the invocation's deadline)" in text


@pytest.mark.parametrize("stall", ["dropped_syn", "hanging_server"])
def test_parameter_store_ends_before_the_deadline(stall, request, configure, dummy_aws, monkeypatch):
    port = request.getfixturevalue(stall)
    configure("http://127.0.0.1:1")
    for k in ("CONNECT_INFLUX_URL", "CONNECT_INFLUX_DB", "CONNECT_INFLUX_KCQL"):
        monkeypatch.delenv(k)
    monkeypatch.setenv("CONNECT_INFLUX_SSM_PATH", "/influx-sink/deadline")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", f"http://127.0.0.1:{port}")
    ctx = Context()
    with pytest.raises(ConfigError) as err:
        app.lambda_handler(event(), ctx)
    assert ctx.get_remaining_time_in_millis() > 0, "answered after the function's timeout"
    text = str(err.value)
    assert "cannot read Parameter Store path '/influx-sink/deadline'" in text
    if stall == "dropped_syn":
        assert "connect to Parameter Store timed out after" in text
    else:
        assert "Parameter Store did not answer within" in text
    assert "the invocation's deadline" in text
