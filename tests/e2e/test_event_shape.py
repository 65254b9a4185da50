"""The events the runner hands to the handler, from records a real broker delivered.

A recording handler stands in for ``lambda_handler`` here (the real handler is in every other
e2e test): it keeps each event so its shape can be compared with the MSK event source's, and
it can answer what the real handler never does (an identifier that was not in the batch).
"""

from __future__ import annotations

import base64
import threading
from typing import Any

import pytest

from handler.records import parse_event
from influx_sink_tools.consume import LocalContext, Options, Runner
from tests.e2e.conftest import FAST, produce, unique

pytestmark = pytest.mark.e2e


def run_in_thread(runner: Runner) -> threading.Thread:
    t = threading.Thread(target=runner.run, daemon=True)
    t.start()
    return t


def options(kafka: Any, topics: list[str], **kw: Any) -> Options:
    settings: dict[str, Any] = {"batch_window_ms": 200, "until_idle": 1.0, "session_timeout_ms": int(FAST[1]),
                                "progress": False, **kw}
    return Options(kafka.bootstrap, topics, unique("g-"), **settings)


def test_events_are_shaped_like_the_msk_event_source(kafka, topic):
    other = unique("e2e-other-")
    kafka.create_topics([other], partitions=3)
    produce(kafka.bootstrap, topic, [b'{"a": 1}', None, b'{"a": 3}'], keys=[b"k1", b"k2", None],
            headers=[("trace", b"\xfe\x01A"), ("trace", b"")])
    produce(kafka.bootstrap, other, [b'{"b": 1}'])
    events: list[dict[str, Any]] = []
    contexts: list[Any] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        events.append(event)
        contexts.append(context)
        return {"batchItemFailures": []}

    runner = Runner(options(kafka, [topic, other], function_timeout=30), handler)
    run_in_thread(runner).join(60)
    assert runner.stats.acknowledged == 4

    records = [r for e in events for group in e["records"].values() for r in group]
    assert {(r["topic"], r["partition"], r["offset"]) for r in records} == {
        (topic, 0, 0), (topic, 1, 0), (topic, 2, 0), (other, 0, 0)}
    for e in events:
        assert e["eventSource"] == "aws:kafka"
        assert e["eventSourceArn"].startswith("arn:aws:kafka:")
        assert e["bootstrapServers"] == kafka.bootstrap
        for name, group in e["records"].items():
            assert {f"{r['topic']}-{r['partition']}" for r in group} == {name}
        parse_event(e)  # the handler's own parser accepts it
    by = {(r["topic"], r["partition"]): r for r in records}
    first, tomb, third = by[(topic, 0)], by[(topic, 1)], by[(topic, 2)]
    assert base64.b64decode(first["value"]) == b'{"a": 1}' and base64.b64decode(first["key"]) == b"k1"
    assert tomb["value"] is None and base64.b64decode(tomb["key"]) == b"k2"
    assert third["key"] is None
    # Header bytes as Java signed bytes, one-entry objects, repeated names kept in order.
    assert first["headers"] == [{"trace": [-2, 1, 65]}, {"trace": []}]
    assert first["timestampType"] == "CREATE_TIME" and first["timestamp"] > 1_600_000_000_000
    assert set(first) == {"topic", "partition", "offset", "timestamp", "timestampType", "key", "value", "headers"}
    assert all(isinstance(c, LocalContext) and 0 < c.get_remaining_time_in_millis() <= 30_000 for c in contexts)


def test_an_identifier_not_in_the_batch_retries_the_whole_batch(kafka, topic):
    produce(kafka.bootstrap, topic, [b"{}"] * 6)
    events: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        events.append(event)
        if len(events) == 1:
            return {"batchItemFailures": [{"itemIdentifier": {"partition": f"{topic}-0", "offset": 99}}]}
        return {"batchItemFailures": []}

    runner = Runner(options(kafka, [topic], retry_backoff_ms=10, max_retries=3), handler)
    run_in_thread(runner).join(60)
    assert len(events) >= 2
    # The same records again, as Lambda does: every partition of the first batch from its first
    # record (a partition whose records were fetched only after the first batch was cut may join
    # the retried one; librdkafka delivers partitions as their fetches arrive).
    for name, group in events[0]["records"].items():
        assert events[1]["records"][name] == group
    assert runner.stats.retries == len(events[0]["records"])  # every partition of it sought back
    assert runner.stats.acknowledged == 6


def test_stop_finishes_the_batch_in_flight(kafka, topic):
    produce(kafka.bootstrap, topic, [b"{}"] * 30)
    entered, release = threading.Event(), threading.Event()
    seen: list[int] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append(sum(len(g) for g in event["records"].values()))
        entered.set()
        release.wait(30)
        return {"batchItemFailures": []}

    runner = Runner(options(kafka, [topic], until_idle=None, batch_size=5), handler)
    thread = run_in_thread(runner)
    assert entered.wait(30)
    runner.stop()
    release.set()
    thread.join(30)
    assert not thread.is_alive()
    assert len(seen) == 1  # no batch after the stop
    assert runner.stats.acknowledged == seen[0]
