"""Compressed topics: every codec a producer may use reaches InfluxDB through the local runner.

The records are produced by librdkafka (``confluent_kafka.Producer`` with ``compression.type``),
the producer most non-Java services use, and for snappy also by kafka-python, whose snappy
batches carry the xerial framing the Java client writes (librdkafka writes raw snappy blocks):
the runner must read both, and the test checks which framing each producer wrote. Before the
runner runs, a consumer without the codec is shown to fail on the topic with
``UnsupportedCodecError``, so the broker really serves batches compressed with that codec, not
batches it stored uncompressed. The runner reads them with either backend (librdkafka and
kafka-python).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.e2e.conftest import KCQL, committed, coordinates, runner_env, stored, unique

pytestmark = [pytest.mark.e2e, pytest.mark.influx]

RECORDS = 120


def _values() -> list[bytes]:
    # Repetitive text compresses well, so every batch is compressed (librdkafka sends a batch
    # uncompressed when compression would not make it smaller).
    return [json.dumps({"sensor": f"s{i % 5}", "reading": i * 0.25, "note": "compress me " * 20}).encode()
            for i in range(RECORDS)]


def _produce_librdkafka(bootstrap: str, topic: str, values: list[bytes], codec: str) -> list[tuple[int, int]]:
    """Send value i to partition i % 3 with librdkafka; each record's (partition, offset) as acknowledged."""
    from confluent_kafka import KafkaError, Message, Producer

    acked: dict[int, tuple[int, int]] = {}
    errors: list[str] = []

    def on_delivery(i: int) -> Any:
        def report(err: KafkaError | None, msg: Message) -> None:
            partition, offset = msg.partition(), msg.offset()
            if err is not None or partition is None or offset is None:
                errors.append(f"record {i}: {err}")
            else:
                acked[i] = (partition, offset)
        return report

    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 50,
                         "acks": "all", "log_level": 3})
    for i, value in enumerate(values):
        producer.produce(topic, value=value, partition=i % 3, on_delivery=on_delivery(i))
    assert producer.flush(30) == 0, "librdkafka could not deliver every record"
    assert not errors, errors
    return [acked[i] for i in range(len(values))]


def _produce_kafka_python(bootstrap: str, topic: str, values: list[bytes], codec: str) -> list[tuple[int, int]]:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=50, compression_type=codec)
    try:
        futures = [producer.send(topic, value=v, partition=i % 3) for i, v in enumerate(values)]
        producer.flush()
        return [(md.partition, md.offset) for md in (f.get(timeout=30) for f in futures)]
    finally:
        producer.close()


def _read_without(bootstrap: str, topic: str, codec: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Fetch the topic with ``codec`` switched off in kafka-python; the error it raises (or None)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka import codec as codecs
    from kafka.errors import UnsupportedCodecError

    with monkeypatch.context() as patch:
        patch.setattr(codecs, f"has_{codec}", lambda: False)
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                 auto_offset_reset="earliest")
        try:
            consumer.assign([TopicPartition(topic, p) for p in range(3)])
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    if consumer.poll(timeout_ms=500):
                        return None
                except UnsupportedCodecError as err:
                    return err
            return None
        finally:
            consumer.close()


def _snappy_framings(bootstrap: str, topic: str, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """How the topic's snappy batches are framed, as kafka-python sees them while reading them."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka import codec as codecs
    from kafka.record import default_records

    framings: set[str] = set()
    decode = codecs.snappy_decode

    def spy(payload: bytes) -> bytes:
        framings.add("xerial" if codecs._detect_xerial_stream(payload) else "raw")
        return decode(payload)

    with monkeypatch.context() as patch:
        patch.setattr(default_records, "snappy_decode", spy)
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                 auto_offset_reset="earliest")
        try:
            consumer.assign([TopicPartition(topic, p) for p in range(3)])
            read, deadline = 0, time.monotonic() + 20
            while read < RECORDS and time.monotonic() < deadline:
                read += sum(len(msgs) for msgs in consumer.poll(timeout_ms=500).values())
        finally:
            consumer.close()
    return framings


CASES = [("librdkafka", "gzip"), ("librdkafka", "snappy"), ("librdkafka", "lz4"), ("librdkafka", "zstd"),
         ("kafka-python", "snappy")]


@pytest.mark.parametrize("backend", ["librdkafka", "kafka-python"], ids=lambda b: f"runner-{b}")
@pytest.mark.parametrize(("producer", "codec"), CASES, ids=[f"{p}-{c}" for p, c in CASES])
def test_compressed_records_all_arrive(producer, codec, backend, kafka, influx, db, topic, start_runner, monkeypatch):
    values = _values()
    produce = _produce_librdkafka if producer == "librdkafka" else _produce_kafka_python
    sent = produce(kafka.bootstrap, topic, values, codec)

    refused = _read_without(kafka.bootstrap, topic, codec, monkeypatch)
    assert refused is not None, f"the broker served {codec} records uncompressed: this test would prove nothing"
    assert codec in str(refused)
    if codec == "snappy":  # librdkafka writes raw snappy blocks; kafka-python (like Java) the xerial framing
        assert _snappy_framings(kafka.bootstrap, topic, monkeypatch) == {
            "raw" if producer == "librdkafka" else "xerial"}

    group = unique("g-")
    runner = start_runner(topic, group, runner_env(influx.url, db, KCQL.format(m="readings", topic=topic)),
                          "--until-idle", "1", "--backend", backend, cli=True)
    assert runner.wait() == 0, runner.log()
    rows = stored(influx, db, "readings")
    assert coordinates(rows) == sorted(sent)
    by_coordinate = {(int(r["_partition"]), int(r["_offset"])): r for r in rows}
    for i, coordinate in enumerate(sent):
        assert by_coordinate[coordinate]["reading"] == i * 0.25
        assert by_coordinate[coordinate]["note"] == "compress me " * 20
    assert runner.handled() == RECORDS
    assert committed(kafka.bootstrap, group, topic) == {p: RECORDS // 3 for p in range(3)}


def test_a_codec_that_is_not_installed_stops_the_runner_with_what_to_install(kafka, topic, monkeypatch):
    from kafka import codec

    from influx_sink_tools.consume import Backend, ConsumeError, Options, Runner

    _produce_librdkafka(kafka.bootstrap, topic, _values()[:6], "snappy")
    monkeypatch.setattr(codec, "has_snappy", lambda: False)  # a runner installed without its extra
    handled: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        handled.append(event)
        return {}

    # kafka-python's codecs are Python packages that may be missing; librdkafka has them built in.
    runner = Runner(Options(kafka.bootstrap, [topic], unique("g-"), until_idle=5, session_timeout_ms=2000,
                            progress=False, backend=Backend.KAFKA_PYTHON), handler)
    with pytest.raises(ConsumeError) as raised:
        runner.run()
    assert "snappy" in str(raised.value)
    assert "pip install 'influx-sink[runner]'" in str(raised.value)
    assert handled == []
