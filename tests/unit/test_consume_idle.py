"""``--until-idle`` counts only while the group has assigned partitions; waiting for them is logged.

The clock is driven by hand here (the runner reads ``time.monotonic``), so the rule is shown
exactly, without waiting; tests/e2e/test_idle.py shows it against a group that is slow to assign.
"""

from __future__ import annotations

import logging
from collections import namedtuple

import pytest

from influx_sink_tools import consume
from influx_sink_tools.consume import Options, Runner, _Retry

TopicPartition = namedtuple("TopicPartition", "topic partition")
P0 = TopicPartition("t", 0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(consume.time, "monotonic", c)
    return c


def runner(until_idle: float | None = 2.0) -> Runner:
    return Runner(Options("127.0.0.1:9", ["t"], "g", until_idle=until_idle, progress=False),
                  lambda event, context: {})


def test_no_idle_time_before_the_first_assignment(clock: Clock) -> None:
    r = runner()
    started = clock.now
    clock.now += 3600  # an hour of joining: a slow group, not an idle topic
    assert not r._idle_expired(started, clock.now)
    r.on_assigned([P0])
    clock.now += 1.9
    assert not r._idle_expired(started, clock.now)
    clock.now += 0.1
    assert r._idle_expired(started, clock.now)


def test_an_empty_assignment_starts_the_clock_too(clock: Clock) -> None:
    r = runner()
    r.on_revoked([])  # what the consumer reports as it first joins: not a rebalance
    clock.now += 10
    assert not r._idle_expired(clock.now - 10, clock.now)
    r.on_assigned([])  # every partition went to other members: nothing will come
    clock.now += 2
    assert r._idle_expired(0.0, clock.now)


def test_a_rebalance_stops_the_clock_until_the_next_assignment(clock: Clock) -> None:
    r = runner()
    r.on_assigned([P0])
    clock.now += 1.5
    r.on_revoked([P0])
    clock.now += 60
    assert not r._idle_expired(0.0, clock.now)
    r.on_assigned([P0])
    clock.now += 1.5
    assert not r._idle_expired(0.0, clock.now)  # counted afresh from the new assignment
    clock.now += 0.5
    assert r._idle_expired(0.0, clock.now)


def test_the_clock_counts_from_the_last_record(clock: Clock) -> None:
    r = runner()
    r.on_assigned([P0])
    clock.now += 5
    last_record = clock.now
    clock.now += 1
    assert not r._idle_expired(last_record, clock.now)
    clock.now += 1
    assert r._idle_expired(last_record, clock.now)


def test_never_idle_while_a_retry_is_pending_or_without_the_flag(clock: Clock) -> None:
    r = runner()
    r.on_assigned([P0])
    r._retry[("t", 0)] = _Retry(offset=3, attempts=1)
    clock.now += 100
    assert not r._idle_expired(0.0, clock.now)
    forever = runner(until_idle=None)
    forever.on_assigned([P0])
    assert not forever._idle_expired(0.0, clock.now + 100)


def test_waiting_for_an_assignment_is_logged_every_few_seconds(clock: Clock, caplog: pytest.LogCaptureFixture,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    r = runner()
    monkeypatch.setattr(consume.log, "propagate", True)  # a runner run in this process turns it off
    caplog.set_level(logging.INFO, logger="influx_sink_tools.consume")
    r._unassigned_since = r._waiting_logged = clock.now
    for _ in range(int(consume.WAITING_LOG_INTERVAL * 2 / 0.25)):  # 0.25: exact in binary
        clock.now += 0.25
        r._log_waiting(clock.now)
    waiting = [rec.getMessage() for rec in caplog.records if "waiting for group" in rec.getMessage()]
    assert len(waiting) == 2
    assert waiting[0].startswith("waiting for group g to assign partitions of t (5s so far")
    assert "--until-idle counts from the assignment" in waiting[0]
    r.on_assigned([P0])
    clock.now += 100
    r._log_waiting(clock.now)
    assert len([rec for rec in caplog.records if "waiting for group" in rec.getMessage()]) == 2
