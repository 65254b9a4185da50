"""The local runner's Kafka side: security settings and two client backends behind one interface.

``Security`` is how the runner reaches a secured cluster (TLS with a CA bundle and a client
certificate; SASL PLAIN, SCRAM-SHA-256/512, OAUTHBEARER from a token file, and MSK IAM, which is
OAUTHBEARER with a token from AWS's MSK IAM SASL signer library). It turns into the configuration
of either backend, so both authenticate the same way, and the dead-letter producer with them.

The backends give the runner the same small interface (``Client``): subscribe with rebalance
callbacks, poll a batch of ``Message``, seek, commit, lag, produce dead letters, close.

- ``librdkafka`` (confluent-kafka, the default when installed): fetching, decompression and CRC
  checks run in librdkafka's own threads, outside the GIL, and prefetch the next batches while
  the handler maps and writes the current one;
- ``kafka-python``: pure Python, fetching only while the runner polls.

``Message`` subclasses the handler's ``KafkaRecord`` holding the record's raw bytes, so the
runner can hand a batch to the handler's pipeline without a base64 round trip (``--invoke direct``).
"""

from __future__ import annotations

import enum
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from handler.errors import SinkError
from handler.records import KafkaRecord

TP = tuple[str, int]  # (topic, partition)
OnPartitions = Callable[[list[TP]], None]


class KafkaClientError(SinkError):
    """The broker refused or failed a request the runner cannot do without."""


class SecurityConfigError(KafkaClientError):
    """The security flags do not make a usable configuration (named in the message)."""


class CommitFailedError(KafkaClientError):
    """An offset commit was refused (typically: a rebalance took the partitions away)."""


class UnreadableRecordsError(KafkaClientError):
    """A fetched batch cannot be read (a codec not installed, a corrupt batch)."""


class SecurityProtocol(enum.StrEnum):
    """Kafka's ``security.protocol``: transport (plain or TLS) × authentication (none or SASL)."""

    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"

    @property
    def tls(self) -> bool:
        return self in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL)

    @property
    def sasl(self) -> bool:
        return self in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL)


class SaslMechanism(enum.StrEnum):
    """``--sasl-mechanism``; ``AWS_MSK_IAM`` is OAUTHBEARER with tokens from the MSK IAM signer."""

    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"
    OAUTHBEARER = "OAUTHBEARER"
    AWS_MSK_IAM = "AWS_MSK_IAM"

    @property
    def wire_name(self) -> str:
        """The mechanism name sent in the SASL handshake."""
        return "OAUTHBEARER" if self is SaslMechanism.AWS_MSK_IAM else self.value


class Backend(enum.StrEnum):
    """Which Kafka client library the runner consumes with."""

    LIBRDKAFKA = "librdkafka"
    KAFKA_PYTHON = "kafka-python"


PASSWORD_ENV = "KAFKA_SASL_PASSWORD"
KEY_PASSWORD_ENV = "KAFKA_SSL_KEY_PASSWORD"
TOKEN_REFRESH_MARGIN = 60.0  # seconds before a signed MSK IAM token expires that a new one is made
CONNECT_TIMEOUT = 30.0  # seconds without reaching any broker at start before the runner gives up
# librdkafka errors that retrying will not mend: the runner stops at once, naming them.
_FATAL_ERRORS = frozenset({"_SSL", "_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED", "_INVALID_ARG"})


@dataclass
class Security:
    """How to reach the brokers. Passwords come from the environment and never show in ``repr``."""

    protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: str | None = field(default=None, repr=False)
    check_hostname: bool = True
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    oauth_token_file: str | None = None
    aws_region: str | None = None
    aws_profile: str | None = None
    aws_role_arn: str | None = None

    @classmethod
    def resolve(cls, protocol: SecurityProtocol | None, **kw: Any) -> Security:
        """The protocol when not given: SASL_SSL with a SASL mechanism, SSL with TLS files, else PLAINTEXT.

        Then ``check()``: every problem is named at once, before anything connects.
        """
        if protocol is None:
            if kw.get("sasl_mechanism") is not None:
                protocol = SecurityProtocol.SASL_SSL
            elif any(kw.get(k) for k in ("ca_file", "cert_file", "key_file")):
                protocol = SecurityProtocol.SSL
            else:
                protocol = SecurityProtocol.PLAINTEXT
        sec = cls(protocol=protocol, **kw)
        sec.check()
        return sec

    def check(self) -> None:
        problems: list[str] = []
        p, m = self.protocol, self.sasl_mechanism
        if not p.tls and any((self.ca_file, self.cert_file, self.key_file)):
            problems.append(f"--ssl-cafile/--ssl-certfile/--ssl-keyfile need TLS, but --security-protocol is {p}")
        if self.key_file and not self.cert_file:
            problems.append("--ssl-keyfile needs --ssl-certfile")
        for flag, path in (("--ssl-cafile", self.ca_file), ("--ssl-certfile", self.cert_file),
                           ("--ssl-keyfile", self.key_file), ("--sasl-oauth-token-file", self.oauth_token_file)):
            if path and not os.path.isfile(path):
                problems.append(f"{flag} {path}: no such file")
        if p.sasl and m is None:
            problems.append(f"--security-protocol {p} needs --sasl-mechanism")
        if m is not None and not p.sasl:
            problems.append(f"--sasl-mechanism {m} needs --security-protocol SASL_SSL or SASL_PLAINTEXT, not {p}")
        if m in (SaslMechanism.PLAIN, SaslMechanism.SCRAM_SHA_256, SaslMechanism.SCRAM_SHA_512):
            if not self.sasl_username:
                problems.append(f"--sasl-mechanism {m} needs --sasl-username")
            if not self.sasl_password:
                problems.append(f"--sasl-mechanism {m} needs the password in ${PASSWORD_ENV}")
        if m is SaslMechanism.OAUTHBEARER and not self.oauth_token_file:
            problems.append("--sasl-mechanism OAUTHBEARER needs --sasl-oauth-token-file")
        if m is SaslMechanism.AWS_MSK_IAM:
            if not p.tls:
                problems.append("--sasl-mechanism AWS_MSK_IAM needs --security-protocol SASL_SSL (MSK's IAM "
                                "listener is TLS only)")
            if not self.region():
                problems.append("--sasl-mechanism AWS_MSK_IAM needs --aws-region (or $AWS_REGION)")
        if (self.aws_profile or self.aws_role_arn) and m is not SaslMechanism.AWS_MSK_IAM:
            problems.append("--aws-profile/--aws-role-arn are for --sasl-mechanism AWS_MSK_IAM")
        if self.aws_profile and self.aws_role_arn:
            problems.append("give --aws-profile or --aws-role-arn, not both")
        if problems:
            raise SecurityConfigError("; ".join(problems))

    def region(self) -> str | None:
        return self.aws_region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")

    def token_source(self) -> TokenSource | None:
        if self.sasl_mechanism is SaslMechanism.AWS_MSK_IAM:
            return MskIamTokens(self.region() or "", profile=self.aws_profile, role_arn=self.aws_role_arn)
        if self.sasl_mechanism is SaslMechanism.OAUTHBEARER and self.oauth_token_file:
            return FileToken(self.oauth_token_file)
        return None

    def kafka_python(self) -> dict[str, Any]:
        """kafka-python's client settings (consumer and producer take the same ones)."""
        out: dict[str, Any] = {"security_protocol": str(self.protocol)}
        if self.protocol.tls:
            out.update(ssl_cafile=self.ca_file, ssl_certfile=self.cert_file, ssl_keyfile=self.key_file,
                       ssl_password=self.key_password, ssl_check_hostname=self.check_hostname)
        if self.sasl_mechanism is not None:
            out["sasl_mechanism"] = self.sasl_mechanism.wire_name
            source = self.token_source()
            if source is not None:
                out["sasl_oauth_token_provider"] = _kafka_python_provider(source)
            else:
                out.update(sasl_plain_username=self.sasl_username, sasl_plain_password=self.sasl_password)
        return out

    def librdkafka(self) -> dict[str, Any]:
        """librdkafka's settings (confluent-kafka's dict)."""
        out: dict[str, Any] = {"security.protocol": str(self.protocol)}
        if self.protocol.tls:
            for key, value in (("ssl.ca.location", self.ca_file), ("ssl.certificate.location", self.cert_file),
                               ("ssl.key.location", self.key_file), ("ssl.key.password", self.key_password)):
                if value:
                    out[key] = value
            out["ssl.endpoint.identification.algorithm"] = "https" if self.check_hostname else "none"
        if self.sasl_mechanism is not None:
            out["sasl.mechanisms"] = self.sasl_mechanism.wire_name
            source = self.token_source()
            if source is not None:
                out["oauth_cb"] = lambda _config: source.token()
            else:
                out.update({"sasl.username": self.sasl_username, "sasl.password": self.sasl_password})
        return out


class TokenSource(Protocol):
    def token(self) -> tuple[str, float]:
        """An OAUTHBEARER token and when it expires (epoch seconds)."""
        ...


class FileToken:
    """A bearer token kept in a file by something else (an OIDC helper): read again at each
    (re)authentication, so a refreshed file is picked up without restarting the runner."""

    LIFETIME = 60.0  # what librdkafka is told: it asks again at 80 % of it

    def __init__(self, path: str) -> None:
        self.path = path

    def token(self) -> tuple[str, float]:
        try:
            with open(self.path, encoding="utf-8") as fh:
                text = fh.read().strip()
        except OSError as err:
            raise KafkaClientError(f"cannot read --sasl-oauth-token-file {self.path}: {err.strerror}") from None
        if not text:
            raise KafkaClientError(f"--sasl-oauth-token-file {self.path} is empty")
        return text, time.time() + self.LIFETIME


class MskIamTokens:
    """MSK IAM authentication tokens from AWS's signer library, reused until shortly before they expire.

    The signer presigns a ``kafka-cluster:Connect`` request with the default credential chain
    (or a profile, or a role it assumes); only the role needs a network call (STS).
    """

    def __init__(self, region: str, *, profile: str | None = None, role_arn: str | None = None) -> None:
        self.region, self.profile, self.role_arn = region, profile, role_arn
        self._cached: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def token(self) -> tuple[str, float]:
        with self._lock:
            if self._cached is None or self._cached[1] - TOKEN_REFRESH_MARGIN <= time.time():
                self._cached = self._generate()
            return self._cached

    def _generate(self) -> tuple[str, float]:
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            if self.role_arn:
                token, expiry_ms = MSKAuthTokenProvider.generate_auth_token_from_role_arn(self.region, self.role_arn)
            elif self.profile:
                token, expiry_ms = MSKAuthTokenProvider.generate_auth_token_from_profile(self.region, self.profile)
            else:
                token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(self.region)
        except (BotoCoreError, ClientError, ValueError) as err:
            raise KafkaClientError(f"cannot sign an MSK IAM token for {self.region}: {err}") from None
        return str(token), float(expiry_ms) / 1000


def _kafka_python_provider(source: TokenSource) -> Any:
    from kafka.net.sasl.oauth import AbstractTokenProvider

    class Provider(AbstractTokenProvider):
        def token(self) -> str:
            return source.token()[0]

    return Provider()


# ---------------------------------------------------------------------- messages


NO_HEADERS: list[tuple[str, bytes]] = []  # shared by every record without headers; never mutated


class Message(KafkaRecord):
    """A fetched record: the handler's ``KafkaRecord`` holding raw bytes instead of base64 text.

    ``header_pairs`` is the record's list of (name, bytes) pairs (a null value as empty bytes, as
    the event source sends it); ``raw_headers`` is the same in the event's one-entry-object shape,
    which ``KafkaRecord.header`` and ``headers`` read.
    """

    __slots__ = ("header_pairs", "key", "timestamp_type", "value")
    timestamp: int

    def __init__(self, topic: str, partition: int, offset: int, timestamp: int, timestamp_type: str,
                 key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.timestamp = timestamp
        self.timestamp_type = timestamp_type
        self.key = key
        self.value = value
        self.header_pairs = headers
        self.raw_headers = [{n: v} for n, v in headers] if headers else None
        self.key_b64 = self.value_b64 = None
        self.value_schema = self.key_schema = None

    def value_bytes(self) -> bytes | None:
        return self.value

    def key_bytes(self) -> bytes | None:
        return self.key


# ---------------------------------------------------------------------- backends


@dataclass
class ClientConfig:
    """What both backends are configured from (the runner's flags)."""

    bootstrap_servers: str
    group_id: str
    client_id: str
    batch_size: int
    session_timeout_ms: int
    max_poll_interval_ms: int
    auto_offset_reset: str
    isolation_level: str
    security: Security = field(default_factory=Security)
    connect_timeout_s: float = CONNECT_TIMEOUT  # without reaching any broker at start: give up


class Client(Protocol):
    """What the runner needs from a Kafka client."""

    def subscribe(self, topics: Sequence[str], on_assigned: OnPartitions, on_revoked: OnPartitions) -> None: ...

    def poll(self, timeout_s: float, max_records: int) -> list[Message]: ...

    def seek(self, tp: TP, offset: int) -> None: ...

    def commit(self, offsets: dict[TP, int]) -> None: ...

    def lag(self) -> int | None: ...

    def produce(self, topic: str, msgs: Sequence[Message], headers: Sequence[list[tuple[str, bytes]]]) -> None: ...

    def close(self) -> None: ...


def available(backend: Backend) -> bool:
    import importlib.util

    module = "confluent_kafka" if backend is Backend.LIBRDKAFKA else "kafka"
    return importlib.util.find_spec(module) is not None


def default_backend() -> Backend:
    return Backend.LIBRDKAFKA if available(Backend.LIBRDKAFKA) else Backend.KAFKA_PYTHON


def connect(backend: Backend, config: ClientConfig) -> Client:
    if backend is Backend.LIBRDKAFKA:
        return LibrdkafkaClient(config)
    return KafkaPythonClient(config)


class KafkaPythonClient:
    """kafka-python's KafkaConsumer (and a KafkaProducer for dead letters, made when first needed)."""

    def __init__(self, config: ClientConfig) -> None:
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError

        self.config = config
        self._producer: Any = None
        c = config
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=c.bootstrap_servers.split(","), group_id=c.group_id, client_id=c.client_id,
                enable_auto_commit=False, auto_offset_reset=c.auto_offset_reset,
                max_poll_records=c.batch_size, session_timeout_ms=c.session_timeout_ms,
                heartbeat_interval_ms=max(100, c.session_timeout_ms // 3),
                max_poll_interval_ms=c.max_poll_interval_ms,
                request_timeout_ms=max(30_000, c.session_timeout_ms + 5_000),
                bootstrap_timeout_ms=int(c.connect_timeout_s * 1000),
                isolation_level=c.isolation_level, **c.security.kafka_python())
        except KafkaError as err:
            raise KafkaClientError(f"cannot consume from {c.bootstrap_servers}: {err}") from err

    def subscribe(self, topics: Sequence[str], on_assigned: OnPartitions, on_revoked: OnPartitions) -> None:
        from kafka import ConsumerRebalanceListener

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                on_revoked([(tp.topic, tp.partition) for tp in revoked])

            def on_partitions_assigned(self, assigned: Any) -> None:
                on_assigned([(tp.topic, tp.partition) for tp in assigned])

        self._consumer.subscribe(list(topics), listener=Listener())

    def poll(self, timeout_s: float, max_records: int) -> list[Message]:
        from kafka.errors import CorruptRecordError, KafkaError, UnsupportedCodecError

        try:
            polled = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except UnsupportedCodecError as err:
            raise UnreadableRecordsError(f"cannot decompress records: {err}; install the runner's codecs: "
                                         "pip install 'influx-sink[runner]'") from err
        except CorruptRecordError as err:
            raise UnreadableRecordsError(f"cannot read records: {err}") from err
        except KafkaError as err:
            raise KafkaClientError(f"cannot fetch from {self.config.bootstrap_servers}: {err}") from err
        out: list[Message] = []
        new = Message
        for msgs in polled.values():
            out += [new(m.topic, m.partition, m.offset,
                        m.timestamp if m.timestamp is not None and m.timestamp >= 0 else 0,
                        "LOG_APPEND_TIME" if m.timestamp_type == 1 else "CREATE_TIME", m.key, m.value,
                        [(n, v or b"") for n, v in m.headers] if m.headers else NO_HEADERS)
                    for m in msgs]
        return out

    def seek(self, tp: TP, offset: int) -> None:
        from kafka import TopicPartition

        self._consumer.seek(TopicPartition(*tp), offset)

    def commit(self, offsets: dict[TP, int]) -> None:
        from kafka import TopicPartition
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata

        try:
            self._consumer.commit({TopicPartition(*k): OffsetAndMetadata(v, "", -1) for k, v in offsets.items()})
        except KafkaError as err:
            raise CommitFailedError(str(err)) from err

    def lag(self) -> int | None:
        from kafka.errors import KafkaError

        total, known = 0, False
        try:
            for tp in self._consumer.assignment():
                high = self._consumer.highwater(tp)
                pos = self._consumer.position(tp, timeout_ms=0)
                if high is not None and pos is not None:
                    total += max(0, high - pos)
                    known = True
        except KafkaError:
            return None
        return total if known else None

    def produce(self, topic: str, msgs: Sequence[Message], headers: Sequence[list[tuple[str, bytes]]]) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        try:
            if self._producer is None:
                c = self.config
                self._producer = KafkaProducer(bootstrap_servers=c.bootstrap_servers.split(","),
                                               client_id=f"{c.client_id}-dlq", acks="all",
                                               **c.security.kafka_python())
            futures = [self._producer.send(topic, value=m.value, key=m.key, headers=h,
                                           timestamp_ms=m.timestamp or None)
                       for m, h in zip(msgs, headers, strict=True)]
            self._producer.flush()
            for f in futures:
                f.get(timeout=30)
        except KafkaError as err:
            raise KafkaClientError(str(err)) from err

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=10)
            self._producer = None
        self._consumer.close(autocommit=False)


_TIMESTAMP_TYPES = {1: "CREATE_TIME", 2: "LOG_APPEND_TIME"}


class LibrdkafkaClient:
    """confluent-kafka's Consumer: librdkafka fetches ahead in its own threads while the handler runs."""

    def __init__(self, config: ClientConfig) -> None:
        from confluent_kafka import Consumer, KafkaException

        self.config = config
        self._producer: Any = None
        self._errors: list[str] = []  # fatal ones, raised at the next poll
        self._last_error = ""
        self._reached = False  # a group assignment came: the brokers were reached at least once
        self._started = time.monotonic()
        c = config
        self._common = {"bootstrap.servers": c.bootstrap_servers, "client.id": c.client_id,
                        "error_cb": self._on_error, **c.security.librdkafka()}
        try:
            self._consumer = Consumer({
                **self._common, "group.id": c.group_id, "enable.auto.commit": False,
                "enable.auto.offset.store": False, "auto.offset.reset": c.auto_offset_reset,
                "session.timeout.ms": c.session_timeout_ms,
                "heartbeat.interval.ms": max(100, c.session_timeout_ms // 3),
                "max.poll.interval.ms": c.max_poll_interval_ms, "isolation.level": c.isolation_level,
                # Enough ahead for two handler batches; librdkafka fetches while the handler runs.
                "queued.min.messages": max(2 * c.batch_size, 10_000),
                "enable.partition.eof": False,
            })
        except KafkaException as err:
            raise KafkaClientError(f"cannot consume from {c.bootstrap_servers}: {err}") from err

    def _on_error(self, err: Any) -> None:
        """librdkafka's client-level errors (brokers down, authentication refused): fatal ones stop the
        runner at its next poll; the others are retried by librdkafka itself."""
        if err.fatal() or err.name() in _FATAL_ERRORS:
            self._errors.append(err.str())
        self._last_error = err.str()

    def subscribe(self, topics: Sequence[str], on_assigned: OnPartitions, on_revoked: OnPartitions) -> None:
        def assigned(_consumer: Any, tps: Any) -> None:
            self._reached = True
            on_assigned([(tp.topic, tp.partition) for tp in tps])

        def revoked(_consumer: Any, tps: Any) -> None:
            on_revoked([(tp.topic, tp.partition) for tp in tps])

        self._consumer.subscribe(list(topics), on_assign=assigned, on_revoke=revoked, on_lost=revoked)

    def poll(self, timeout_s: float, max_records: int) -> list[Message]:
        from confluent_kafka import KafkaException

        try:
            msgs = self._consumer.consume(num_messages=max_records, timeout=timeout_s)
        except KafkaException as err:
            raise KafkaClientError(f"cannot fetch from {self.config.bootstrap_servers}: {err}") from err
        if self._errors:
            raise KafkaClientError(f"{self.config.bootstrap_servers}: {self._errors[0]}")
        if not self._reached and not msgs and self._last_error \
                and time.monotonic() - self._started > self.config.connect_timeout_s:
            self._check_reachable()
        out: list[Message] = []
        new = Message
        kinds = _TIMESTAMP_TYPES
        m: Any
        for m in msgs:
            problem = m.error()
            if problem is not None:
                if problem.fatal() or not problem.retriable():
                    raise UnreadableRecordsError(f"cannot read records of {m.topic()}-{m.partition()}: {problem}")
                continue
            kind, ts = m.timestamp()
            headers = m.headers()
            out.append(new(m.topic(), m.partition(), m.offset(), ts if ts >= 0 else 0,
                           kinds.get(kind, "CREATE_TIME"), m.key(), m.value(),
                           [(n, v or b"") for n, v in headers] if headers else NO_HEADERS))
        return out

    def _check_reachable(self) -> None:
        """No assignment yet, errors seen, and the connect timeout passed: are the brokers there at all?

        A metadata request answers that: when it does, the group is merely slow to assign (that is
        waited for, however long); when it does not, the runner stops as kafka-python does at start,
        so a TLS or address mistake is not waited out forever.
        """
        from confluent_kafka import KafkaException

        try:
            self._consumer.list_topics(timeout=5)
        except KafkaException:
            raise KafkaClientError(f"cannot reach {self.config.bootstrap_servers} within "
                                   f"{self.config.connect_timeout_s:g}s: {self._last_error}") from None
        self._reached = True

    def seek(self, tp: TP, offset: int) -> None:
        from confluent_kafka import TopicPartition

        self._consumer.seek(TopicPartition(tp[0], tp[1], offset))

    def commit(self, offsets: dict[TP, int]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        try:
            result = self._consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                           asynchronous=False)
        except KafkaException as err:
            raise CommitFailedError(str(err)) from err
        failed = [tp for tp in result or [] if tp.error is not None]
        if failed:
            raise CommitFailedError(", ".join(f"{tp.topic}-{tp.partition}: {tp.error}" for tp in failed))

    def lag(self) -> int | None:
        from confluent_kafka import KafkaException

        try:
            tps = self._consumer.assignment()
            total, known = 0, False
            for tp in self._consumer.position(tps) if tps else []:
                _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
                if high >= 0 and tp.offset >= 0:
                    total += max(0, high - tp.offset)
                    known = True
        except KafkaException:
            return None
        return total if known else None

    def produce(self, topic: str, msgs: Sequence[Message], headers: Sequence[list[tuple[str, bytes]]]) -> None:
        from confluent_kafka import KafkaException, Producer

        if self._producer is None:
            self._producer = Producer({**self._common, "client.id": f"{self.config.client_id}-dlq", "acks": "all",
                                       "enable.idempotence": False})
        errors: list[str] = []

        def done(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        try:
            for m, h in zip(msgs, headers, strict=True):
                self._producer.produce(topic, value=m.value, key=m.key, headers=h, on_delivery=done,
                                       **({"timestamp": m.timestamp} if m.timestamp else {}))
            left = self._producer.flush(30)
        except (KafkaException, BufferError) as err:
            raise KafkaClientError(str(err)) from err
        if left or errors:
            raise KafkaClientError(errors[0] if errors else f"{left} record(s) not acknowledged within 30s")

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None
        self._consumer.close()
