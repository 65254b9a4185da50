"""End-to-end fixtures: a real Kafka-compatible broker (Tansu) and the runner as a subprocess.

The runner runs as ``python -m influx_sink_tools.consume`` in its own process, as a user would run it, so
signals, exit codes and the handler's cold start are the real ones. Each test gets its own
topic, consumer group and InfluxDB database.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from influx_sink_tools import local_kafka, local_registry
from tests.conftest import ROOT

_names = itertools.count()

KCQL = "INSERT INTO {m} SELECT * FROM {topic} WITHTIMESTAMP _timestamp WITHTAG(_partition, _offset)"
# Tansu holds a group join for half the session timeout: keep it short so tests start fast.
FAST = ["--session-timeout-ms", "2000", "--batch-window-ms", "100"]


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local_kafka.KafkaBroker]:
    """One Tansu broker for the session, on a free loopback port (topics are per test)."""
    broker = local_kafka.start(str(tmp_path_factory.mktemp("tansu")))
    yield broker
    broker.stop()


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}-{next(_names)}"


@pytest.fixture
def topic(kafka: local_kafka.KafkaBroker) -> str:
    """A new topic with 3 partitions."""
    name = unique("e2e-")
    kafka.create_topics([name], partitions=3)
    return name


def produce(bootstrap: str, topic: str, values: Sequence[bytes | None], *, start: int = 0,
            keys: Sequence[bytes | None] | None = None,
            headers: list[tuple[str, bytes]] | None = None) -> list[tuple[int, int]]:
    """Send values round-robin over the 3 partitions (value i to partition (start + i) % 3);
    return each record's (partition, offset) as the broker acknowledged it."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        futures = [producer.send(topic, value=v, key=None if keys is None else keys[i], partition=(start + i) % 3,
                                 headers=headers or [])
                   for i, v in enumerate(values)]
        producer.flush()
        out = []
        for f in futures:
            md = f.get(timeout=30)
            out.append((md.partition, md.offset))
        return out
    finally:
        producer.close()


def consume_all(bootstrap: str, topic: str, timeout: float = 20.0, expect: int | None = None) -> list[Any]:
    """Every record of a topic (e.g. the dead-letter topic), read without a group."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=1500)
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(3)])
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (expect is None or len(out) < expect):
            batch = consumer.poll(timeout_ms=500)
            out.extend(m for msgs in batch.values() for m in msgs)
            if expect is None and not batch and out:
                break
        return out
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of ``topic``."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        out = {}
        for p in range(3):
            c = consumer.committed(TopicPartition(topic, p))
            if c is not None:
                out[p] = c
        return out
    finally:
        consumer.close(autocommit=False)


def runner_env(url: str, db: str, kcql: str, **extra: str) -> dict[str, str]:
    """The process environment of a runner: the handler's settings, as Lambda would get them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECT_", "POWERTOOLS_"))}
    env.update(CONNECT_INFLUX_URL=url, CONNECT_INFLUX_DB=db, CONNECT_INFLUX_KCQL=kcql,
               PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def cli_command() -> list[str]:
    """``influx-sink`` as installed (the console script beside this interpreter), else its module."""
    script = Path(sys.executable).parent / "influx-sink"
    return [str(script)] if os.access(script, os.X_OK) else [sys.executable, "-m", "influx_sink_tools.cli"]


class RunnerProc:
    """The runner in a subprocess (``python -m influx_sink_tools.consume``, or ``influx-sink consume`` with
    ``cli=True``); its stderr (the runner's log) goes to a file."""

    def __init__(self, bootstrap: str, topic: str, group: str, env: dict[str, str], log_dir: Path,
                 *extra: str, cli: bool = False) -> None:
        n = next(_names)
        self.stderr_path = log_dir / f"runner{n}.err"
        self.stdout_path = log_dir / f"runner{n}.out"
        command = [*cli_command(), "consume"] if cli else [sys.executable, "-m", "influx_sink_tools.consume"]
        args = [*command, "--bootstrap-servers", bootstrap, "--topics", topic, "--group-id", group, *FAST, *extra]
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL)

    def wait(self, timeout: float = 90.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"runner did not exit within {timeout}s:\n{self.log()[-3000:]}") from None

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def handled(self) -> int:
        """Records the runner committed as handled (its closing log line)."""
        m = re.search(r"stopped: (\d+) record\(s\) written or handled, (\d+) retries", self.log())
        assert m, f"no closing line in the runner's log:\n{self.log()[-3000:]}"
        return int(m.group(1))

    def retries(self) -> int:
        m = re.search(r"stopped: \d+ record\(s\) written or handled, (\d+) retries", self.log())
        assert m, self.log()[-3000:]
        return int(m.group(1))


@pytest.fixture
def start_runner(kafka: local_kafka.KafkaBroker, tmp_path: Path) -> Iterator[Callable[..., RunnerProc]]:
    """Start runners for a test; any still running at the end is killed."""
    started: list[RunnerProc] = []

    def start(topic: str, group: str, env: dict[str, str], *extra: str, cli: bool = False) -> RunnerProc:
        r = RunnerProc(kafka.bootstrap, topic, group, env, tmp_path, *extra, cli=cli)
        started.append(r)
        return r

    yield start
    for r in started:
        r.kill()


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll until ``predicate()`` holds (a wait for an event, never an assertion on a duration)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def stored(server: Any, db: str, measurement: str) -> list[dict[str, Any]]:
    """Every point of a measurement, with its tags (``_partition``, ``_offset``)."""
    res = server.query(f'SELECT * FROM "{measurement}"', db=db)["results"][0]
    assert "error" not in res, res
    rows: list[dict[str, Any]] = []
    for series in res.get("series", []):
        rows.extend(dict(zip(series["columns"], values, strict=True)) for values in series["values"])
    return rows


def count(server: Any, db: str, measurement: str) -> int:
    try:
        return len(stored(server, db, measurement))
    except RuntimeError:  # the server is down or restarting
        return -1


def coordinates(rows: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return sorted((int(r["_partition"]), int(r["_offset"])) for r in rows)


class SchemaRegistry:
    """The registry of influx_sink_tools/local_registry.py, served over real HTTP on loopback to the
    runner's process; ``register(schema)`` puts a schema under a subject of its own and returns
    its id; ``requests`` counts request paths."""

    def __init__(self) -> None:
        self.server = local_registry.start()
        self.url = self.server.url
        self.requests = self.server.requests

    def register(self, schema: Any, subject: str | None = None) -> int:
        return self.server.register(subject or unique("subject-"), schema)

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def schema_registry() -> Iterator[SchemaRegistry]:
    server = SchemaRegistry()
    yield server
    server.stop()
