"""The runner on secured clusters: TLS with a CA bundle, mutual TLS, and SASL against a real broker.

TLS: Tansu 0.6 has no TLS listener, so a TLS-terminating proxy (influx_sink_tools/tls_proxy.py,
bytes forwarded unchanged) sits in front of it and the broker advertises the proxy, so every
connection of the runner (bootstrap, group coordinator, fetches, the dead-letter producer) is
TLS. Records are produced over TLS too. Both backends are run.

SASL: Tansu 0.6 with ``--authentication`` serves the SASL handshake (SCRAM-SHA-256/512) but, with
in-memory storage, knows no user (see influx_sink_tools/local_kafka.py), so what can be shown
against it is the runner speaking SCRAM to a real broker and stopping, exit 1, on the refused
login, without the password in its output. PLAIN and OAUTHBEARER logins that succeed, and MSK
IAM against MSK, are not tested against a broker (docs/local-runner.md says so); the MSK IAM
tokens themselves are checked in tests/unit/test_consume_security.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from influx_sink_tools import local_kafka
from influx_sink_tools.tls_proxy import Pki
from tests.e2e.conftest import KCQL, RunnerProc, coordinates, runner_env, stored, unique

pytestmark = [pytest.mark.e2e, pytest.mark.influx]

BACKENDS = ["librdkafka", "kafka-python"]
POISON = b"{not json"


@pytest.fixture(scope="module")
def tls_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local_kafka.TlsKafka]:
    broker = local_kafka.start_tls(str(tmp_path_factory.mktemp("tansu-tls")))
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def mtls_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local_kafka.TlsKafka]:
    broker = local_kafka.start_tls(str(tmp_path_factory.mktemp("tansu-mtls")), require_client_cert=True)
    yield broker
    broker.stop()


def produce_tls(broker: local_kafka.TlsKafka, topic: str, values: list[bytes]) -> list[tuple[int, int]]:
    """Value i to partition i % 3 over TLS; each record's (partition, offset) as acknowledged."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", **broker.broker.client)
    try:
        futures = [producer.send(topic, value=v, partition=i % 3) for i, v in enumerate(values)]
        producer.flush()
        return [(md.partition, md.offset) for md in (f.get(timeout=30) for f in futures)]
    finally:
        producer.close()


def consume_tls(broker: local_kafka.TlsKafka, topic: str, expect: int) -> list[Any]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", **broker.broker.client)
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(3)])
        out: list[Any] = []
        for _ in range(40):
            out.extend(m for msgs in consumer.poll(timeout_ms=500).values() for m in msgs)
            if len(out) >= expect:
                break
        return out
    finally:
        consumer.close()


def run(broker_bootstrap: str, topic: str, env: dict[str, str], tmp_path: Path, *extra: str) -> RunnerProc:
    return RunnerProc(broker_bootstrap, topic, unique("g-"), env, tmp_path, *extra, cli=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_runner_consumes_through_tls_verified_with_a_ca_bundle(backend, tls_kafka, influx, db, tmp_path):
    topic = unique("tls-")
    tls_kafka.create_topics([topic])
    sent = produce_tls(tls_kafka, topic, [json.dumps({"n": i}).encode() for i in range(30)])
    env = runner_env(influx.url, db, KCQL.format(m="m", topic=topic))
    runner = run(tls_kafka.bootstrap, topic, env, tmp_path, "--until-idle", "1", "--backend", backend,
                 "--ssl-cafile", tls_kafka.pki.ca)  # the protocol follows from the CA bundle: SSL
    try:
        assert runner.wait() == 0, runner.log()
    finally:
        runner.kill()
    assert coordinates(stored(influx, db, "m")) == sorted(sent)
    assert runner.handled() == 30
    assert f"{backend} client, SSL" in runner.log()


@pytest.mark.parametrize("backend", BACKENDS)
def test_mutual_tls_with_a_client_certificate_covers_the_dead_letter_producer(backend, mtls_kafka, influx, db,
                                                                              tmp_path):
    topic, dlq = unique("mtls-"), unique("mtls-dlq-")
    mtls_kafka.create_topics([topic, dlq])
    values = [POISON if i == 7 else json.dumps({"n": i}).encode() for i in range(24)]
    sent = produce_tls(mtls_kafka, topic, values)
    pki = mtls_kafka.pki
    env = runner_env(influx.url, db, KCQL.format(m="m", topic=topic), CONNECT_INFLUX_ERROR_POLICY="RETRY")
    runner = run(mtls_kafka.bootstrap, topic, env, tmp_path, "--until-idle", "1", "--backend", backend,
                 "--security-protocol", "SSL", "--ssl-cafile", pki.ca, "--ssl-certfile", pki.client_cert,
                 "--ssl-keyfile", pki.client_key, "--max-retries", "0", "--dlq-topic", dlq)
    try:
        assert runner.wait() == 0, runner.log()
    finally:
        runner.kill()
    assert coordinates(stored(influx, db, "m")) == sorted(c for c in sent if c != sent[7])
    (dead,) = consume_tls(mtls_kafka, dlq, expect=1)
    assert dead.value == POISON
    assert (int(dict(dead.headers)["influx-sink.partition"]), int(dict(dead.headers)["influx-sink.offset"])) \
        == sent[7]


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_the_client_certificate_the_runner_stops_instead_of_waiting(backend, mtls_kafka, influx, db,
                                                                             tmp_path):
    topic = unique("mtls-refused-")
    mtls_kafka.create_topics([topic])
    env = runner_env(influx.url, db, KCQL.format(m="m", topic=topic))
    runner = run(mtls_kafka.bootstrap, topic, env, tmp_path, "--until-idle", "1", "--backend", backend,
                 "--ssl-cafile", mtls_kafka.pki.ca, "--connect-timeout", "4")
    try:
        assert runner.wait(120) == 1, runner.log()
    finally:
        runner.kill()
    assert mtls_kafka.bootstrap in runner.log()


def test_a_broker_certificate_the_ca_bundle_does_not_sign_stops_the_runner_at_once(tls_kafka, influx, db,
                                                                                   tmp_path):
    topic = unique("tls-untrusted-")
    other = Pki.create(tmp_path / "other-ca")  # a CA that did not sign the broker's certificate
    env = runner_env(influx.url, db, KCQL.format(m="m", topic=topic))
    runner = run(tls_kafka.bootstrap, topic, env, tmp_path, "--until-idle", "1", "--backend", "librdkafka",
                 "--ssl-cafile", other.ca)
    try:
        assert runner.wait(60) == 1, runner.log()
    finally:
        runner.kill()
    assert "certificate verify failed" in runner.log()


# kafka-python gives up bootstrapping only after --connect-timeout (twice here): one mechanism for it.
@pytest.mark.parametrize(("backend", "mechanism"), [("librdkafka", "SCRAM-SHA-256"), ("librdkafka", "SCRAM-SHA-512"),
                                                    ("kafka-python", "SCRAM-SHA-512")])
def test_scram_is_spoken_to_a_real_broker_and_a_refused_login_stops_the_runner(backend, mechanism, influx, db,
                                                                               tmp_path):
    broker = local_kafka.start(str(tmp_path / "tansu-auth"), authentication=True)
    try:
        topic = unique("sasl-")
        password = "correct-horse-battery-staple"
        env = runner_env(influx.url, db, KCQL.format(m="m", topic=topic), KAFKA_SASL_PASSWORD=password)
        runner = run(broker.bootstrap, topic, env, tmp_path, "--until-idle", "1", "--backend", backend,
                     "--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", mechanism,
                     "--sasl-username", "alice", "--connect-timeout", "4")
        try:
            assert runner.wait(120) == 1, runner.log()
        finally:
            runner.kill()
        log = runner.log() + runner.stdout_path.read_text(errors="replace")
        assert password not in log
        assert f"{backend} client, SASL_PLAINTEXT {mechanism}" in log
        if backend == "librdkafka":  # the broker's own SCRAM answer, as librdkafka reports it
            assert "SCRAM authentication failed: broker responded with unknown-user" in log
        else:  # kafka-python says only that it could not bootstrap: its client, with the runner's settings
            assert "Unable to bootstrap" in log
            assert _kafka_python_scram_answer(broker.bootstrap, mechanism, password) == "e=unknown-user"
    finally:
        broker.stop()


def _kafka_python_scram_answer(bootstrap: str, mechanism: str, password: str) -> str | None:
    """The server-final SCRAM message Tansu sends kafka-python configured as the runner configures it."""
    import logging

    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    from influx_sink_tools.kafka_clients import SaslMechanism, Security, SecurityProtocol

    security = Security.resolve(SecurityProtocol.SASL_PLAINTEXT, sasl_mechanism=SaslMechanism(mechanism),
                                sasl_username="alice", sasl_password=password)
    seen: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler, kafka_log = Capture(), logging.getLogger("kafka")
    kafka_log.addHandler(handler)
    level = kafka_log.level
    kafka_log.setLevel(logging.DEBUG)
    try:
        KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000, bootstrap_timeout_ms=4000,
                         **security.kafka_python()).close()
    except KafkaError:
        pass
    finally:
        kafka_log.removeHandler(handler)
        kafka_log.setLevel(level)
    import re

    answers = [m.group(1) for line in seen if "SaslAuthenticateResponse" in line
               for m in [re.search(r"auth_bytes=b'(e=[a-z-]+)'", line)] if m]
    return answers[0] if answers else None
