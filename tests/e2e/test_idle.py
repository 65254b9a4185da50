"""``--until-idle`` when the group is slow to assign: the runner waits, says so, then consumes.

Another member of the group (a kafka-python consumer in this process) holds the rebalance: it
has joined and then stops polling, so the broker waits for it to rejoin before it assigns any
partition to the runner. The runner must not take that wait for idleness — it logs that it is
waiting and, once the member rejoins and the group assigns it partitions, consumes them into
InfluxDB and only then exits after ``--until-idle``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import KCQL, coordinates, produce, runner_env, stored, unique, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.influx]


class SlowMember:
    """A group member that joins, then polls only once ``release()`` is called (until ``close()``)."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        from kafka import KafkaConsumer

        # The long session and poll interval keep it in the group while it does not poll; the
        # broker holds a join for half the session timeout (Tansu), so keep that short enough.
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                      session_timeout_ms=4000, heartbeat_interval_ms=1000,
                                      max_poll_interval_ms=120_000, auto_offset_reset="earliest")
        self.consumer.subscribe([topic])
        # Poll back to back: kafka-python 3.0.12 drops a join that completes while no poll waits
        # for it and joins again (wait_until's pauses between polls would hit that now and then).
        deadline = time.monotonic() + 30
        while not self.consumer.assignment():
            assert time.monotonic() < deadline, "the slow member got no assignment"
            self.consumer.poll(timeout_ms=500)
        self._released = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._poll_when_released, daemon=True)
        self._thread.start()

    def _poll_when_released(self) -> None:
        self._released.wait()
        while not self._closed.is_set():
            self.consumer.poll(timeout_ms=200)  # records it fetches are never committed

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self._released.set()
        self._closed.set()
        self._thread.join(30)
        self.consumer.close(autocommit=False)


@pytest.fixture
def group() -> str:
    return unique("g-")


@pytest.fixture
def slow_member(kafka: Any, topic: str, group: str) -> Iterator[SlowMember]:
    member = SlowMember(kafka.bootstrap, topic, group)
    yield member
    member.close()


def test_until_idle_counts_from_the_assignment_not_the_join(kafka, influx, db, topic, group, slow_member,
                                                             start_runner):
    sent = produce(kafka.bootstrap, topic, [json.dumps({"i": i}).encode() for i in range(30)])
    runner = start_runner(topic, group, runner_env(influx.url, db, KCQL.format(m="idle", topic=topic)),
                          "--until-idle", "1")
    # The group cannot assign while the member does not rejoin. The first "waiting" line comes
    # after several seconds: far past --until-idle plus the session timeout, which is when the
    # runner used to give up on a join.
    wait_until(lambda: "waiting for group" in runner.log() or runner.proc.poll() is not None,
               "the runner to log that it waits for an assignment")
    assert runner.proc.poll() is None, f"the runner exited before any partition was assigned:\n{runner.log()}"
    assert "--until-idle counts from the assignment" in runner.log()
    assert count_stored(influx, db) == 0

    slow_member.release()
    assert runner.wait() == 0, runner.log()
    assigned = re.findall(r"partitions assigned: (.+)", runner.log())
    assert assigned, runner.log()
    partitions = {int(name.rpartition("-")[2]) for name in assigned[0].split(", ") if name != "none"}
    assert partitions, f"the runner got no partition:\n{runner.log()}"
    assert coordinates(stored(influx, db, "idle")) == sorted(c for c in sent if c[0] in partitions)


def count_stored(influx: Any, db: str) -> int:
    return len(stored(influx, db, "idle"))
