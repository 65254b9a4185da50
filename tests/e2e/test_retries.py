"""What the runner does when retries run out: the dead-letter topic, or a log line per record.

Under RETRY only the record that failed is given up (what followed it in its partition is retried
at once and written); under THROW the handler raises, the batch is the unit, and the whole batch
is given up, as Lambda's event source does with a function error.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.e2e.conftest import KCQL, committed, consume_all, coordinates, produce, runner_env, stored, unique

pytestmark = [pytest.mark.e2e, pytest.mark.influx]

POISON = b"{not json"


def test_retry_policy_sends_only_the_poison_record_to_the_dead_letter_topic(kafka, influx, db, topic,
                                                                             start_runner):
    dlq = unique("dlq-")
    kafka.create_topics([dlq], partitions=3)
    values = [POISON if i == 25 else json.dumps({"n": i}).encode() for i in range(60)]
    keys = [f"k{i}".encode() for i in range(60)]
    sent = produce(kafka.bootstrap, topic, values, keys=keys, headers=[("trace", b"\xfe\x01")])
    poison_at = sent[25]
    group = unique("g-")
    env = runner_env(influx.url, db, KCQL.format(m="m", topic=topic), CONNECT_INFLUX_ERROR_POLICY="RETRY")
    runner = start_runner(topic, group, env, "--until-idle", "1", "--max-retries", "1", "--dlq-topic", dlq,
                          "--retry-backoff-ms", "50")
    assert runner.wait() == 0, runner.log()

    assert coordinates(stored(influx, db, "m")) == sorted(c for c in sent if c != poison_at)
    (dead,) = consume_all(kafka.bootstrap, dlq, expect=1)
    assert dead.value == POISON and dead.key == b"k25"
    headers = dict(dead.headers)
    assert headers["trace"] == b"\xfe\x01"
    assert headers["influx-sink.topic"] == topic.encode()
    assert (int(headers["influx-sink.partition"]), int(headers["influx-sink.offset"])) == poison_at
    assert headers["influx-sink.attempts"] == b"2"  # the first attempt and one retry
    assert runner.retries() == 1
    assert committed(kafka.bootstrap, group, topic) == {p: 20 for p in range(3)}


def test_throw_policy_gives_up_whole_batches_and_logs_each_record(kafka, influx, db, topic, start_runner):
    values = [POISON if i == 40 else json.dumps({"n": i}).encode() for i in range(90)]
    sent = produce(kafka.bootstrap, topic, values)
    group = unique("g-")
    env = runner_env(influx.url, db, KCQL.format(m="m", topic=topic))  # THROW is the default
    runner = start_runner(topic, group, env, "--until-idle", "1", "--max-retries", "0", "--batch-size", "30")
    assert runner.wait() == 0, runner.log()

    written = set(coordinates(stored(influx, db, "m")))
    logged = {(int(p), int(o)) for p, o in re.findall(
        rf"giving up topic={re.escape(topic)} partition=(\d+) offset=(\d+) after 1 attempt", runner.log())}
    assert sent[40] in logged
    # Every record is either in InfluxDB or named in the log as given up: never neither, never both.
    assert written | logged == set(sent)
    assert not written & logged
    assert committed(kafka.bootstrap, group, topic) == {p: 30 for p in range(3)}
