"""Local event-source runner: ``influx-sink consume`` feeds Kafka to the same ``lambda_handler``.

It plays the part of Lambda's Kafka event source mapping on a laptop or a plain server, so the
handler runs unchanged and behaves as it will in AWS:

- a consumer in a consumer group (librdkafka through confluent-kafka, or kafka-python:
  ``--backend``, see influx_sink_tools.kafka_clients), auto-commit off, over plaintext, TLS or SASL
  (``--security-protocol`` and friends), reading with isolation level ``read_committed`` by
  default (``--isolation-level``), so records of open transactions are held back until they commit
  and, on brokers that report aborted transactions, aborted ones never reach the handler; every
  codec a producer may compress with (gzip, snappy, lz4, zstd) is read;
- batches of up to ``--batch-size`` records gathered for up to ``--batch-window-ms`` and handed to
  the handler with a context whose ``get_remaining_time_in_millis`` counts down from
  ``--function-timeout`` seconds: by default (``--invoke direct``) as the records themselves, to the
  handler's pipeline after the event parsing (no base64 round trip); with ``--invoke event`` as an
  event shaped exactly like the MSK event source's (``influx_sink_tools.eventgen``), to
  ``lambda_handler``;
- offsets are committed only past records the handler acknowledged: all of them on success; per
  partition up to (not including) the first failed offset of a ``batchItemFailures`` answer;
  none on an exception (the whole batch is retried, like a function error);
- a failed partition is sought back to its first failed offset (the other partitions of the
  batch are committed) and the runner waits an exponential backoff before its next poll;
- after ``--max-retries`` retries (default: ``connect.influx.max.retries``; -1 = forever) records
  are given up: the failed record of each reported partition (what followed it is retried at
  once), or, after an exception, the whole batch. Given-up records are produced to
  ``--dlq-topic`` with headers saying where they came from and why, or, without a dead-letter
  topic, logged one by one at ERROR and skipped (what Lambda does without a destination);
- SIGTERM / SIGINT finish the current batch, commit, leave the group and exit 0; ``--until-idle``
  exits after that long without records, counted only while partitions are assigned (joining
  the group or a rebalance is not idleness), logging while it waits for an assignment.

The Kafka clients are imported only when the runner starts; ``add_consume_parser`` and
``run`` are what ``influx_sink_tools.cli`` registers. See docs/local-runner.md.
"""

from __future__ import annotations

import argparse
import enum
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TextIO

from handler.errors import ConfigError, SinkError
from influx_sink_tools.kafka_clients import (
    CONNECT_TIMEOUT,
    PASSWORD_ENV,
    Backend,
    Client,
    ClientConfig,
    CommitFailedError,
    KafkaClientError,
    Message,
    SaslMechanism,
    Security,
    SecurityProtocol,
    UnreadableRecordsError,
    connect,
    default_backend,
)
from influx_sink_tools.local_context import LocalContext

log = logging.getLogger("influx_sink_tools.consume")

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
TP = tuple[str, int]  # (topic, partition); a TopicPartition namedtuple of the same shape works too

DLQ_HEADER_PREFIX = "influx-sink."
MAX_REASON = 1000
WAITING_LOG_INTERVAL = 5.0  # seconds between "still waiting for an assignment" lines


class IsolationLevel(enum.StrEnum):
    """Which records a fetch may return: the Kafka consumer setting ``isolation.level``."""

    READ_COMMITTED = "read_committed"      # only committed transactions (and non-transactional records)
    READ_UNCOMMITTED = "read_uncommitted"  # everything written, aborted transactions included


class Invoke(enum.StrEnum):
    """How a batch reaches the handler."""

    DIRECT = "direct"  # the records, to the handler's pipeline (what lambda_handler runs after parsing the event)
    EVENT = "event"    # an MSK-shaped event (base64 values) to lambda_handler itself


class ConsumeError(SinkError):
    """The runner cannot go on (broker unreachable, dead-letter topic refusing records)."""


class DeadLetterError(ConsumeError):
    """Given-up records could not be produced to the dead-letter topic; nothing was committed."""


@dataclass
class Options:
    """What ``influx-sink consume`` was asked to do (the CLI flags, with their defaults)."""

    bootstrap_servers: str
    topics: list[str]
    group_id: str
    batch_size: int = 100
    batch_window_ms: int = 500
    until_idle: float | None = None
    max_retries: int | None = None  # None: connect.influx.max.retries from the settings
    dlq_topic: str | None = None
    function_timeout: float = 60.0
    retry_backoff_ms: int = 500
    max_backoff_ms: int = 30_000
    session_timeout_ms: int = 10_000
    connect_timeout_s: float = CONNECT_TIMEOUT
    auto_offset_reset: str = "earliest"
    isolation_level: IsolationLevel = IsolationLevel.READ_COMMITTED
    progress: bool | None = None  # None: when stderr is a terminal
    client_id: str = "influx-sink-local"
    backend: Backend | None = None  # None: librdkafka when confluent-kafka is installed, else kafka-python
    invoke: Invoke = Invoke.DIRECT  # only with the real handler; a handler passed to Runner gets events
    security: Security = field(default_factory=Security)


@dataclass
class Stats:
    """Counters over the runner's life (shown as progress, returned by ``Runner.run``)."""

    received: int = 0      # records handed to the handler, retries included
    acknowledged: int = 0  # records committed as handled by the handler
    batches: int = 0
    retries: int = 0       # failed attempts that led to a seek back
    given_up: int = 0
    dead_lettered: int = 0


@dataclass
class _Retry:
    """A partition to retry from ``offset``; ``attempts`` failed attempts of it so far."""

    offset: int
    attempts: int


@dataclass
class Outcome:
    """What one invocation said: the first failed offset per partition, and why (for logs/DLQ).

    ``whole_batch``: the handler raised (a function error), so the batch is the unit of retry and,
    once retries run out, of giving up. Otherwise the first reported offset of a partition is the
    record that failed (the handler reports everything after it only because it did not try it).
    """

    failed: dict[TP, int] = field(default_factory=dict)
    reason: str = ""
    whole_batch: bool = False


def to_rec(msg: Message) -> Any:
    """A fetched ``Message`` → ``eventgen.Rec``, for an event."""
    from influx_sink_tools.eventgen import Rec

    return Rec(msg.topic, msg.partition, msg.offset, msg.value, msg.key, msg.header_pairs,
               timestamp=msg.timestamp, timestamp_type=msg.timestamp_type)


def handle_records(records: list[Message], context: Any) -> dict[str, Any]:
    """What ``lambda_handler`` does with an event once it has parsed it, on the fetched records.

    The same runtime (settings, compiled KCQL, writer), deadline, error policy, log lines and answer;
    ``KafkaRecord`` is the handler's record interface and ``Message`` one holding raw bytes, so
    nothing is base64-encoded for the handler to decode again. Not emitted here: the handler's
    EMF metrics (off in the runner unless asked for; use ``--invoke event`` for them).
    """
    from handler import app, deadline
    from handler.delivery import run_batch
    from handler.errors import BatchFailed

    deadline.set_deadline(app._deadline(context))
    try:
        rt = app.get_runtime()
        settings = rt.settings
        try:
            result = run_batch(records, rt.plan, rt.writer, settings.error_policy, deadline=deadline.current(),
                               retry_interval=settings.retry_interval_ms / 1000)
        except BatchFailed as err:
            app.logger.error(str(err), extra={"failures": [str(f) for f in err.failures[:50]]})
            raise
    finally:
        deadline.set_deadline(None)
    if settings.progress_enabled:
        from collections import Counter

        app.logger.info(f"Received {len(records)} record(s); written {result.written_records}",
                        extra={"per_topic": dict(Counter(r.topic for r in records))})
    response: dict[str, Any] = dict(result.response)
    return response


def first_failures(response: Any, batch: Sequence[Any]) -> dict[TP, int] | None:
    """Per partition, the lowest offset named in ``batchItemFailures``.

    None when the answer names a record that was not in the event (or is malformed): Lambda then
    retries the whole batch, and so do we.
    """
    items = response.get("batchItemFailures") if isinstance(response, dict) else None
    if not items:
        return {}
    present = {(m.topic, m.partition, m.offset) for m in batch}
    named: list[tuple[str, int, int]] = []
    for item in items:
        ident = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(ident, dict):
            return None
        topic, _, part = str(ident.get("partition", "")).rpartition("-")
        try:
            coordinates = (topic, int(part), int(ident.get("offset")))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        if coordinates not in present:
            return None
        named.append(coordinates)
    from handler.delivery import first_failed_offsets  # the same rule the handler answers by; loaded with it

    return first_failed_offsets(named)


def _first_offsets(batch: Sequence[Any]) -> dict[TP, int]:
    """Each partition's first offset in the batch (offsets ascend within a partition)."""
    out: dict[TP, int] = {}
    for m in batch:
        out.setdefault((m.topic, m.partition), m.offset)
    return out


def _by_partition(batch: Sequence[Any]) -> dict[TP, list[Any]]:
    out: dict[TP, list[Any]] = {}
    for m in batch:
        out.setdefault((m.topic, m.partition), []).append(m)
    return out


class _Progress:
    """One self-rewriting status line on a terminal; logs clear it before they print."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self._last = 0.0
        self._last_ack = 0
        self._shown = False

    @classmethod
    def for_stream(cls, stream: TextIO, wanted: bool | None) -> _Progress:
        """Shown when asked, or by default when the stream is a terminal."""
        return cls(stream, wanted if wanted is not None else stream.isatty())

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False

    def update(self, stats: Stats, lag: int | None, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 1.0:
            return
        elapsed = now - self._last if self._last else 0.0
        rate = (stats.acknowledged - self._last_ack) / elapsed if elapsed > 0 else 0.0
        self._last, self._last_ack = now, stats.acknowledged
        lag_text = "?" if lag is None else str(lag)
        line = (f"{stats.acknowledged} written, {rate:.0f} records/s, lag {lag_text}, "
                f"{stats.retries} retries, {stats.given_up} given up")
        self.stream.write("\r\x1b[K" + line)
        self.stream.flush()
        self._shown = True

    def finish(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False


class _LogHandler(logging.StreamHandler):
    """Plain text runner logs on stderr that do not garble the progress line."""

    def __init__(self, progress: _Progress) -> None:
        super().__init__(progress.stream)
        self.progress = progress
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s consume: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.progress.clear()
        super().emit(record)


class Runner:
    """The consume loop. ``run()`` blocks until stopped, idle, or a fatal error."""

    def __init__(self, opts: Options, handler: Handler | None = None, *,
                 max_retries: int | None = None, progress: _Progress | None = None) -> None:
        self.opts = opts
        self._handler = handler
        self._max_retries = opts.max_retries if opts.max_retries is not None else max_retries
        self.stats = Stats()
        self._stop = threading.Event()
        self._retry: dict[TP, _Retry] = {}
        self._pending: list[Any] = []  # the batch being gathered (the rebalance listener edits it)
        self._assigned_at: float | None = None  # None while joining or rebalancing: not idle time
        self._unassigned_since = time.monotonic()
        self._waiting_logged = 0.0
        self._client: Client | None = None
        self.progress = progress or _Progress.for_stream(sys.stderr, opts.progress)

    # ------------------------------------------------------------------ control

    def stop(self) -> None:
        """Ask the loop to finish the current batch and exit (thread- and signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _handler_fn(self) -> Handler:
        if self._handler is None:
            from handler.app import lambda_handler

            self._handler = lambda_handler
        return self._handler

    def _direct(self) -> bool:
        """Records go straight to the handler's pipeline: asked for, and the handler is the real one."""
        if self.opts.invoke is not Invoke.DIRECT:
            return False
        if self._handler is None:
            return True
        from handler.app import lambda_handler

        return self._handler is lambda_handler

    @property
    def client(self) -> Client:
        assert self._client is not None, "run() connects first"
        return self._client

    # ------------------------------------------------------------------ kafka

    def _connect(self) -> None:
        o = self.opts
        # The handler may take the whole function timeout, plus our backoff: poll often enough.
        max_poll_ms = int(max(300.0, o.function_timeout * 2 + o.max_backoff_ms / 1000 + 60) * 1000)
        config = ClientConfig(o.bootstrap_servers, o.group_id, o.client_id, o.batch_size, o.session_timeout_ms,
                              max_poll_ms, o.auto_offset_reset, str(o.isolation_level), o.security,
                              connect_timeout_s=o.connect_timeout_s)
        backend = o.backend or default_backend()
        log.info("connecting to %s: %s client, %s%s", o.bootstrap_servers, backend, o.security.protocol,
                 f" {o.security.sasl_mechanism}" if o.security.sasl_mechanism else "")
        try:
            self._client = connect(backend, config)
            self._client.subscribe(o.topics, self.on_assigned, self.on_revoked)
        except KafkaClientError as err:
            raise ConsumeError(str(err)) from err

    def on_revoked(self, revoked: Any) -> None:
        """The group takes partitions away (a rebalance starts; at the first join, none)."""
        # Records gathered for the batch being built are someone else's now (and, if the
        # partition comes back, it restarts from the committed offset): drop them.
        gone = {(tp[0], tp[1]) for tp in revoked}
        self._pending[:] = [m for m in self._pending if (m.topic, m.partition) not in gone]
        for key in gone:
            self._retry.pop(key, None)
        if revoked:  # a rebalance: until the next assignment, waiting is not idleness
            self._assigned_at = None
            self._unassigned_since = self._waiting_logged = time.monotonic()
            log.info("partitions revoked: %s", _names(revoked))

    def on_assigned(self, assigned: Any) -> None:
        """The group has assigned partitions (possibly none): the idle clock runs from here."""
        self._assigned_at = time.monotonic()
        log.info("partitions assigned: %s", _names(assigned) or "none")

    def lag(self) -> int | None:
        """Records behind the high-water mark over assigned partitions (None before any fetch)."""
        return self._client.lag() if self._client is not None else None

    def _poll(self, timeout_ms: int, max_records: int) -> list[Message]:
        """One fetch; records that cannot be read at all stop the runner with what to do about it.

        Nothing of the batch being gathered is committed then: it is read again after the fix.
        """
        try:
            return self.client.poll(timeout_ms / 1000, max_records)
        except UnreadableRecordsError as err:
            raise ConsumeError(f"{','.join(self.opts.topics)}: {err}") from err
        except KafkaClientError as err:
            raise ConsumeError(str(err)) from err

    def _collect(self) -> list[Any]:
        """Gather one batch: up to batch_size records, waiting at most the window after the first."""
        o = self.opts
        batch = self._pending = []
        window_end: float | None = None
        while not self.stopping:
            now = time.monotonic()
            timeout_ms = 200 if window_end is None else max(0, int((window_end - now) * 1000))
            batch.extend(self._poll(timeout_ms, o.batch_size - len(batch)))
            if batch and window_end is None:
                window_end = time.monotonic() + o.batch_window_ms / 1000
            if not batch:
                return batch
            if len(batch) >= o.batch_size or time.monotonic() >= (window_end or 0):
                break
        self._pending = []
        return batch

    def _commit(self, offsets: dict[TP, int]) -> None:
        if not offsets:
            return
        try:
            self.client.commit(offsets)
        except CommitFailedError as err:
            # A rebalance took the partitions away: their new owner re-reads from the last commit
            # (at-least-once; InfluxDB overwrites identical points).
            log.warning("offset commit failed (%s); those records will be delivered again", err)

    # ------------------------------------------------------------------ one batch

    def _invoke(self, batch: list[Message]) -> Outcome:
        context = LocalContext(self.opts.function_timeout)
        try:
            if self._direct():
                response = handle_records(batch, context)
            else:
                from influx_sink_tools.eventgen import build_event

                event = build_event([to_rec(m) for m in batch], bootstrap_servers=self.opts.bootstrap_servers)
                response = self._handler_fn()(event, context)
        except Exception as err:  # any function error retries the whole batch, as in Lambda
            reason = f"{type(err).__name__}: {err}"[:MAX_REASON]
            log.error("handler raised (%s); the whole batch of %d record(s) will be retried", reason, len(batch))
            return Outcome(_first_offsets(batch), reason, whole_batch=True)
        failed = first_failures(response, batch)
        if failed is None:
            log.error("handler answered with an identifier that was not in the batch; retrying the batch")
            return Outcome(_first_offsets(batch), "invalid batchItemFailures",
                           whole_batch=True)
        return Outcome(failed, "reported in batchItemFailures")

    def _settle(self, batch: list[Any], outcome: Outcome) -> float:
        """Commit what was handled; seek back what failed; give up what ran out of retries.

        Returns how long to back off before the next poll (0 when nothing is to be retried).
        """
        commits: dict[TP, int] = {}
        give_up: list[Any] = []
        attempts_of: dict[TP, int] = {}
        wait = 0.0
        for key, msgs in _by_partition(batch).items():
            first = outcome.failed.get(key)
            if first is None:
                commits[key] = msgs[-1].offset + 1
                self.stats.acknowledged += len(msgs)
                state = self._retry.get(key)
                if state is not None and state.offset <= msgs[-1].offset:
                    del self._retry[key]
                continue
            done = [m for m in msgs if m.offset < first]
            self.stats.acknowledged += len(done)
            if done:
                commits[key] = first
            state = self._retry.get(key)
            attempts = state.attempts + 1 if state is not None and state.offset == first else 1
            attempts_of[key] = attempts
            limit = self._max_retries
            if limit is not None and 0 <= limit < attempts:
                self._retry.pop(key, None)
                if outcome.whole_batch:
                    give_up.extend(msgs)
                    commits[key] = msgs[-1].offset + 1
                else:  # only the failed record; what followed it gets a fresh attempt at once
                    give_up.extend(m for m in msgs if m.offset == first)
                    commits[key] = first + 1
                    if first != msgs[-1].offset:
                        self.client.seek(key, first + 1)
                continue
            backoff = min(self.opts.retry_backoff_ms * 2 ** (attempts - 1), self.opts.max_backoff_ms) / 1000
            wait = max(wait, backoff)
            self._retry[key] = _Retry(first, attempts)
            self.client.seek(key, first)
            self.stats.retries += 1
            log.warning("%s-%d: retry %d from offset %d in %.1fs (%s)", key[0], key[1], attempts, first,
                        backoff, outcome.reason)
        if give_up:
            self._give_up(give_up, outcome.reason, attempts_of)
        self._commit(commits)
        return wait

    def _give_up(self, msgs: list[Any], reason: str, attempts_of: dict[TP, int]) -> None:
        """Send records that ran out of retries to the dead-letter topic, or log and skip them."""
        self.stats.given_up += len(msgs)
        dlq = self.opts.dlq_topic
        if not dlq:
            for m in msgs:
                log.error("giving up topic=%s partition=%d offset=%d after %d attempt(s): %s (no --dlq-topic; "
                          "skipped)", m.topic, m.partition, m.offset, attempts_of[(m.topic, m.partition)], reason)
            return
        headers = []
        for m in msgs:
            headers.append([
                *m.header_pairs,
                (DLQ_HEADER_PREFIX + "topic", m.topic.encode()),
                (DLQ_HEADER_PREFIX + "partition", str(m.partition).encode()),
                (DLQ_HEADER_PREFIX + "offset", str(m.offset).encode()),
                (DLQ_HEADER_PREFIX + "attempts", str(attempts_of[(m.topic, m.partition)]).encode()),
                (DLQ_HEADER_PREFIX + "reason", reason.encode("utf-8", "replace")),
            ])
        try:
            self.client.produce(dlq, msgs, headers)
        except KafkaClientError as err:
            raise DeadLetterError(f"cannot produce {len(msgs)} given-up record(s) to dead-letter topic "
                                  f"{dlq!r}: {err}; offsets not committed") from err
        self.stats.dead_lettered += len(msgs)
        for m in msgs:
            log.error("gave up topic=%s partition=%d offset=%d after %d attempt(s), sent to %s: %s",
                      m.topic, m.partition, m.offset, attempts_of[(m.topic, m.partition)], dlq, reason)

    # ------------------------------------------------------------------ loop

    def _idle_expired(self, last_activity: float, now: float) -> bool:
        """``--until-idle`` is reached: that long without records while partitions are assigned.

        Time spent joining the group or in a rebalance does not count, however long the group
        takes (another member slow to rejoin holds everyone's assignment): exiting then would
        exit having consumed nothing.
        """
        limit = self.opts.until_idle
        if limit is None or self._retry or self._assigned_at is None:
            return False
        return now - max(last_activity, self._assigned_at) >= limit

    def _log_waiting(self, now: float) -> None:
        """Say, every few seconds, that no partition is assigned yet (so a silent runner is explained)."""
        if self._assigned_at is not None or now - self._waiting_logged < WAITING_LOG_INTERVAL:
            return
        self._waiting_logged = now
        idle = "; --until-idle counts from the assignment" if self.opts.until_idle is not None else ""
        log.info("waiting for group %s to assign partitions of %s (%.0fs so far%s)", self.opts.group_id,
                 ",".join(self.opts.topics), now - self._unassigned_since, idle)

    def run(self) -> Stats:
        """Consume until stopped (``stop()``, SIGTERM/SIGINT) or idle; returns the counters."""
        self._connect()
        self._unassigned_since = self._waiting_logged = last_activity = time.monotonic()
        log.info("consuming %s as group %s from %s (%s)", ",".join(self.opts.topics), self.opts.group_id,
                 self.opts.bootstrap_servers, self.opts.isolation_level)
        try:
            while not self.stopping:
                batch = self._collect()
                if batch:
                    last_activity = time.monotonic()
                    self.stats.received += len(batch)
                    self.stats.batches += 1
                    backoff = self._settle(batch, self._invoke(batch))
                    if backoff:
                        # The whole runner waits (interruptibly): pausing one partition is what we would
                        # rather do, but kafka-python 3.0.12 may never fetch a resumed partition again.
                        self._stop.wait(backoff)
                    last_activity = time.monotonic()
                elif self._idle_expired(last_activity, time.monotonic()):
                    log.info("no new records for %ss; exiting", self.opts.until_idle)
                    break
                else:
                    self._log_waiting(time.monotonic())
                self.progress.update(self.stats, self.lag() if self.progress.enabled else None)
        finally:
            self.progress.update(self.stats, self.lag() if self.progress.enabled else None, force=True)
            self.progress.finish()
            self._close()
        log.info("stopped: %d record(s) written or handled, %d retries, %d given up (%d to the dead-letter "
                 "topic)", self.stats.acknowledged, self.stats.retries, self.stats.given_up,
                 self.stats.dead_lettered)
        return self.stats

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _names(tps: Any) -> str:
    return ", ".join(sorted(f"{tp[0]}-{tp[1]}" for tp in tps))


# ---------------------------------------------------------------------- CLI


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be at least 0")
    return value


DESCRIPTION = ("Consume Kafka topics in a consumer group and feed batches to the same lambda_handler, "
               "as Lambda's Kafka event source does. Handler settings come from the environment "
               "(CONNECT_INFLUX_URL, CONNECT_INFLUX_DB, CONNECT_INFLUX_KCQL, ...).")
EPILOG = ("Offsets are committed only past records the handler acknowledged; failed partitions are sought "
          "back and retried with backoff. SIGTERM/SIGINT stop after the current batch. "
          "See docs/local-runner.md.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``consume`` flags (shared by ``influx-sink consume`` and ``python -m influx_sink_tools.consume``)."""
    parser.add_argument("--bootstrap-servers", required=True, metavar="HOST:PORT[,HOST:PORT]",
                        help="the Kafka brokers to bootstrap from")
    parser.add_argument("--topics", required=True, metavar="T1[,T2]", help="comma-separated topics")
    parser.add_argument("--group-id", required=True, metavar="G", help="consumer group (offsets are kept per group)")
    parser.add_argument("--batch-size", type=_positive, default=100, metavar="N",
                        help="records per invocation at most (default 100, as the event source)")
    parser.add_argument("--batch-window-ms", type=int, default=500, metavar="MS",
                        help="wait this long after the first record for a fuller batch (default 500)")
    parser.add_argument("--until-idle", type=_non_negative, metavar="SECONDS",
                        help="exit after this many seconds without new records, counted while partitions are "
                             "assigned (default: run until stopped)")
    parser.add_argument("--max-retries", type=int, metavar="N",
                        help="retries of a failed batch/partition before giving its records up; -1 = forever "
                             "(default: connect.influx.max.retries)")
    parser.add_argument("--dlq-topic", metavar="T",
                        help="produce given-up records here (default: log them and skip)")
    parser.add_argument("--function-timeout", type=_non_negative, default=60.0, metavar="SECONDS",
                        help="what the context's get_remaining_time_in_millis counts down from (default 60)")
    parser.add_argument("--retry-backoff-ms", type=int, default=500, metavar="MS",
                        help="first retry delay, doubled per attempt (default 500)")
    parser.add_argument("--max-backoff-ms", type=int, default=30_000, metavar="MS",
                        help="cap of the retry delay (default 30000)")
    parser.add_argument("--session-timeout-ms", type=int, default=10_000, metavar="MS",
                        help="consumer group session timeout (default 10000)")
    parser.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT, metavar="SECONDS",
                        help="seconds without reaching any broker at start before the runner gives up "
                             f"(default {CONNECT_TIMEOUT:g})")
    parser.add_argument("--auto-offset-reset", choices=["earliest", "latest"], default="earliest",
                        help="where a group without committed offsets starts (default earliest)")
    parser.add_argument("--isolation-level", type=IsolationLevel, choices=list(IsolationLevel),
                        default=IsolationLevel.READ_COMMITTED,
                        help="read_committed: only records of committed transactions (and non-transactional "
                             "ones); read_uncommitted: aborted and open transactions' records too "
                             "(default read_committed)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show records/s and lag on stderr (default: when stderr is a terminal)")
    parser.add_argument("--backend", type=Backend, choices=list(Backend),
                        help="the Kafka client: librdkafka (confluent-kafka; fetches ahead in its own threads) or "
                             "kafka-python (default: librdkafka when confluent-kafka is installed)")
    parser.add_argument("--invoke", type=Invoke, choices=list(Invoke), default=Invoke.DIRECT,
                        help="direct: the fetched records to the handler's pipeline; event: an MSK-shaped event to "
                             "lambda_handler, base64 and all (slower; with the handler's EMF metrics) "
                             "(default direct)")
    sec = parser.add_argument_group("security", "TLS and SASL to the brokers; passwords are read from the "
                                    f"environment (${PASSWORD_ENV}, $KAFKA_SSL_KEY_PASSWORD), never from flags")
    sec.add_argument("--security-protocol", type=SecurityProtocol, choices=list(SecurityProtocol),
                     help="default: SASL_SSL with --sasl-mechanism, SSL with a --ssl-* file, else PLAINTEXT")
    sec.add_argument("--ssl-cafile", metavar="PEM", help="CA bundle to verify the brokers' certificates "
                     "(default: the system's)")
    sec.add_argument("--ssl-certfile", metavar="PEM", help="client certificate (mutual TLS); may hold the key too")
    sec.add_argument("--ssl-keyfile", metavar="PEM", help="the client certificate's private key")
    sec.add_argument("--ssl-check-hostname", action=argparse.BooleanOptionalAction, default=True,
                     help="check that the broker's certificate names the host connected to (default: yes)")
    sec.add_argument("--sasl-mechanism", type=SaslMechanism, choices=list(SaslMechanism),
                     help="AWS_MSK_IAM: OAUTHBEARER with tokens from AWS's MSK IAM signer (the default "
                          "credential chain, --aws-profile or --aws-role-arn)")
    sec.add_argument("--sasl-username", metavar="USER", help=f"for PLAIN and SCRAM (password: ${PASSWORD_ENV})")
    sec.add_argument("--sasl-oauth-token-file", metavar="FILE",
                     help="for OAUTHBEARER: a file holding the bearer token, read again at each authentication")
    sec.add_argument("--aws-region", metavar="REGION", help="for AWS_MSK_IAM (default: $AWS_REGION)")
    sec.add_argument("--aws-profile", metavar="NAME", help="for AWS_MSK_IAM: sign with this profile's credentials")
    sec.add_argument("--aws-role-arn", metavar="ARN", help="for AWS_MSK_IAM: sign as this role (assumed via STS)")


def add_consume_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``consume`` on an argparse subparsers object; the handler is ``run(args)``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "consume", help="consume Kafka and feed the handler as Lambda's event source does",
        description=DESCRIPTION, epilog=EPILOG)
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def security_from_args(args: argparse.Namespace) -> Security:
    """The flags' security settings (SecurityConfigError naming every problem)."""
    from influx_sink_tools.kafka_clients import KEY_PASSWORD_ENV

    return Security.resolve(
        args.security_protocol, ca_file=args.ssl_cafile, cert_file=args.ssl_certfile, key_file=args.ssl_keyfile,
        key_password=os.environ.get(KEY_PASSWORD_ENV) or None, check_hostname=args.ssl_check_hostname,
        sasl_mechanism=args.sasl_mechanism, sasl_username=args.sasl_username,
        sasl_password=os.environ.get(PASSWORD_ENV) or None, oauth_token_file=args.sasl_oauth_token_file,
        aws_region=args.aws_region, aws_profile=args.aws_profile, aws_role_arn=args.aws_role_arn)


def options_from_args(args: argparse.Namespace) -> Options:
    """The runner's options from parsed flags (SecurityConfigError for unusable security flags)."""
    topics = [t.strip() for t in args.topics.split(",") if t.strip()]
    return Options(bootstrap_servers=args.bootstrap_servers, topics=topics, group_id=args.group_id,
                   batch_size=args.batch_size, batch_window_ms=args.batch_window_ms, until_idle=args.until_idle,
                   max_retries=args.max_retries, dlq_topic=args.dlq_topic, function_timeout=args.function_timeout,
                   retry_backoff_ms=args.retry_backoff_ms, max_backoff_ms=args.max_backoff_ms,
                   session_timeout_ms=args.session_timeout_ms, connect_timeout_s=args.connect_timeout,
                   auto_offset_reset=args.auto_offset_reset,
                   isolation_level=IsolationLevel(args.isolation_level), progress=args.progress,
                   backend=args.backend, invoke=Invoke(args.invoke), security=security_from_args(args))


def _install_signals(runner: Runner) -> Callable[[], None]:
    """SIGTERM/SIGINT → stop after the current batch; a second SIGINT interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received; stopping after the current batch", signal.Signals(signum).name)
        runner.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    return restore


def _setup_logging(progress: _Progress) -> None:
    if not any(isinstance(h, _LogHandler) for h in log.handlers):
        log.addHandler(_LogHandler(progress))
    log.setLevel(logging.INFO)
    log.propagate = False


def run(args: argparse.Namespace) -> int:
    """Run the consumer for parsed CLI arguments; the process exit code."""
    from influx_sink_tools.kafka_clients import SecurityConfigError, available

    try:
        opts = options_from_args(args)
    except SecurityConfigError as err:
        print(f"influx-sink consume: {err}", file=sys.stderr)
        return 2
    if opts.backend is not None and not available(opts.backend):
        package = "confluent-kafka" if opts.backend is Backend.LIBRDKAFKA else "kafka-python"
        print(f"influx-sink consume: --backend {opts.backend} needs {package}: pip install {package}",
              file=sys.stderr)
        return 2
    # The handler's CloudWatch EMF metrics are one JSON blob per batch on stdout: noise locally.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    progress = _Progress.for_stream(sys.stderr, opts.progress)
    _setup_logging(progress)
    try:
        from handler.app import get_runtime, lambda_handler

        settings = get_runtime().settings  # fail on bad settings before joining the group
    except ConfigError as err:
        print(f"influx-sink consume: {err}", file=sys.stderr)
        return 2
    runner = Runner(opts, lambda_handler, max_retries=settings.max_retries, progress=progress)
    restore = _install_signals(runner)
    try:
        runner.run()
    except ConsumeError as err:
        print(f"influx-sink consume: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C: the batch in flight is not committed
        print("influx-sink consume: interrupted", file=sys.stderr)
        return 130
    finally:
        restore()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m influx_sink_tools.consume", description=DESCRIPTION, epilog=EPILOG)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
