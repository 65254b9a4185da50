"""Local event-source runner: ``influx-sink consume`` feeds Kafka to the same ``lambda_handler``.

It plays the part of Lambda's Kafka event source mapping on a laptop or a plain server, so the
handler runs unchanged and behaves as it will in AWS:

- a kafka-python consumer in a consumer group, auto-commit off, reading with isolation level
  ``read_committed`` by default (``--isolation-level``), so records of open transactions are held
  back until they commit and, on brokers that report aborted transactions, aborted ones never
  reach the handler; every codec a producer may compress with (gzip, snappy, lz4, zstd) is read;
- batches of up to ``--batch-size`` records gathered for up to ``--batch-window-ms``, turned into
  an event shaped exactly like the MSK event source's (``influx_sink_tools.eventgen``), and handed to
  ``lambda_handler`` with a context whose ``get_remaining_time_in_millis`` counts down from
  ``--function-timeout`` seconds;
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

kafka-python is imported only here, and only when the runner starts; ``add_consume_parser`` and
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
from influx_sink_tools.local_context import LocalContext

log = logging.getLogger("influx_sink_tools.consume")

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
TP = tuple[str, int]  # (topic, partition); kafka's TopicPartition is a namedtuple of the same shape

DLQ_HEADER_PREFIX = "influx-sink."
MAX_REASON = 1000
WAITING_LOG_INTERVAL = 5.0  # seconds between "still waiting for an assignment" lines


class IsolationLevel(enum.StrEnum):
    """Which records a fetch may return: the Kafka consumer setting ``isolation.level``."""

    READ_COMMITTED = "read_committed"      # only committed transactions (and non-transactional records)
    READ_UNCOMMITTED = "read_uncommitted"  # everything written, aborted transactions included


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
    auto_offset_reset: str = "earliest"
    isolation_level: IsolationLevel = IsolationLevel.READ_COMMITTED
    progress: bool | None = None  # None: when stderr is a terminal
    client_id: str = "influx-sink-local"


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


def to_rec(msg: Any) -> Any:
    """A kafka-python ConsumerRecord → ``eventgen.Rec`` (a null header value becomes empty bytes)."""
    from influx_sink_tools.eventgen import Rec

    return Rec(msg.topic, msg.partition, msg.offset, msg.value, msg.key,
               [(name, value or b"") for name, value in (msg.headers or [])],
               timestamp=msg.timestamp if msg.timestamp is not None and msg.timestamp >= 0 else 0,
               timestamp_type="LOG_APPEND_TIME" if msg.timestamp_type == 1 else "CREATE_TIME")


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
        self._consumer: Any = None
        self._producer: Any = None
        self._tp_cls: Any = None
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

    # ------------------------------------------------------------------ kafka

    def _connect(self) -> None:
        from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
        from kafka.errors import KafkaError

        runner = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                runner.on_revoked(revoked)

            def on_partitions_assigned(self, assigned: Any) -> None:
                runner.on_assigned(assigned)

        o = self.opts
        # The handler may take the whole function timeout, plus our backoff: poll often enough.
        max_poll_ms = int(max(300.0, o.function_timeout * 2 + o.max_backoff_ms / 1000 + 60) * 1000)
        self._tp_cls = TopicPartition
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=o.bootstrap_servers.split(","), group_id=o.group_id, client_id=o.client_id,
                enable_auto_commit=False, auto_offset_reset=o.auto_offset_reset,
                max_poll_records=o.batch_size, session_timeout_ms=o.session_timeout_ms,
                heartbeat_interval_ms=max(100, o.session_timeout_ms // 3),
                max_poll_interval_ms=max_poll_ms, request_timeout_ms=max(30_000, o.session_timeout_ms + 5_000),
                isolation_level=str(o.isolation_level))
            self._consumer.subscribe(o.topics, listener=Listener())
        except KafkaError as err:
            raise ConsumeError(f"cannot consume from {o.bootstrap_servers}: {err}") from err

    def on_revoked(self, revoked: Any) -> None:
        """The group takes partitions away (a rebalance starts; at the first join, none)."""
        # Records gathered for the batch being built are someone else's now (and, if the
        # partition comes back, it restarts from the committed offset): drop them.
        gone = {(tp.topic, tp.partition) for tp in revoked}
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

    def _tp(self, key: TP) -> Any:
        return self._tp_cls(key[0], key[1])

    def lag(self) -> int | None:
        """Records behind the high-water mark over assigned partitions (None before any fetch)."""
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

    def _poll(self, timeout_ms: int, max_records: int) -> dict[Any, list[Any]]:
        """One fetch; records that cannot be read at all stop the runner with what to do about it.

        Nothing of the batch being gathered is committed then: it is read again after the fix.
        """
        from kafka.errors import CorruptRecordError, UnsupportedCodecError

        try:
            polled: dict[Any, list[Any]] = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        except UnsupportedCodecError as err:
            raise ConsumeError(f"cannot decompress records of {','.join(self.opts.topics)}: {err}; install the "
                               "runner's codecs: pip install 'influx-sink[runner]'") from err
        except CorruptRecordError as err:
            raise ConsumeError(f"cannot read records of {','.join(self.opts.topics)}: {err}") from err
        return polled

    def _collect(self) -> list[Any]:
        """Gather one batch: up to batch_size records, waiting at most the window after the first."""
        o = self.opts
        batch = self._pending = []
        window_end: float | None = None
        while not self.stopping:
            now = time.monotonic()
            timeout_ms = 200 if window_end is None else max(0, int((window_end - now) * 1000))
            polled = self._poll(timeout_ms, o.batch_size - len(batch))
            for _tp, msgs in polled.items():
                batch.extend(msgs)
            if batch and window_end is None:
                window_end = time.monotonic() + o.batch_window_ms / 1000
            if not batch:
                return batch
            if len(batch) >= o.batch_size or time.monotonic() >= (window_end or 0):
                break
        self._pending = []
        return batch

    def _commit(self, offsets: dict[TP, int]) -> None:
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata

        if not offsets:
            return
        try:
            self._consumer.commit({self._tp(k): OffsetAndMetadata(v, "", -1) for k, v in offsets.items()})
        except KafkaError as err:  # CommitFailedError and friends
            # A rebalance took the partitions away: their new owner re-reads from the last commit
            # (at-least-once; InfluxDB overwrites identical points).
            log.warning("offset commit failed (%s); those records will be delivered again", err)

    # ------------------------------------------------------------------ one batch

    def _invoke(self, batch: list[Any]) -> Outcome:
        from influx_sink_tools.eventgen import build_event

        event = build_event([to_rec(m) for m in batch], bootstrap_servers=self.opts.bootstrap_servers)
        parts = _by_partition(batch)
        try:
            response = self._handler_fn()(event, LocalContext(self.opts.function_timeout))
        except Exception as err:  # any function error retries the whole batch, as in Lambda
            reason = f"{type(err).__name__}: {err}"[:MAX_REASON]
            log.error("handler raised (%s); the whole batch of %d record(s) will be retried", reason, len(batch))
            return Outcome({k: ms[0].offset for k, ms in parts.items()}, reason, whole_batch=True)
        failed = first_failures(response, batch)
        if failed is None:
            log.error("handler answered with an identifier that was not in the batch; retrying the batch")
            return Outcome({k: ms[0].offset for k, ms in parts.items()}, "invalid batchItemFailures",
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
            tp = self._tp(key)
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
                        self._consumer.seek(tp, first + 1)
                continue
            backoff = min(self.opts.retry_backoff_ms * 2 ** (attempts - 1), self.opts.max_backoff_ms) / 1000
            wait = max(wait, backoff)
            self._retry[key] = _Retry(first, attempts)
            self._consumer.seek(tp, first)
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
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        try:
            if self._producer is None:
                self._producer = KafkaProducer(bootstrap_servers=self.opts.bootstrap_servers.split(","),
                                               client_id=f"{self.opts.client_id}-dlq", acks="all")
            futures = []
            for m in msgs:
                attempts = attempts_of[(m.topic, m.partition)]
                headers = [
                    *(m.headers or []),
                    (DLQ_HEADER_PREFIX + "topic", m.topic.encode()),
                    (DLQ_HEADER_PREFIX + "partition", str(m.partition).encode()),
                    (DLQ_HEADER_PREFIX + "offset", str(m.offset).encode()),
                    (DLQ_HEADER_PREFIX + "attempts", str(attempts).encode()),
                    (DLQ_HEADER_PREFIX + "reason", reason.encode("utf-8", "replace")),
                ]
                ts = m.timestamp if m.timestamp is not None and m.timestamp >= 0 else None
                futures.append(self._producer.send(dlq, value=m.value, key=m.key, headers=headers,
                                                   timestamp_ms=ts))
            self._producer.flush()
            for f in futures:
                f.get(timeout=30)
        except KafkaError as err:
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
        if self._producer is not None:
            self._producer.close(timeout=10)
            self._producer = None
        if self._consumer is not None:
            self._consumer.close(autocommit=False)
            self._consumer = None


def _names(tps: Any) -> str:
    return ", ".join(sorted(f"{tp.topic}-{tp.partition}" for tp in tps))


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
                        help="the Kafka brokers to bootstrap from (plaintext)")
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
    parser.add_argument("--auto-offset-reset", choices=["earliest", "latest"], default="earliest",
                        help="where a group without committed offsets starts (default earliest)")
    parser.add_argument("--isolation-level", type=IsolationLevel, choices=list(IsolationLevel),
                        default=IsolationLevel.READ_COMMITTED,
                        help="read_committed: only records of committed transactions (and non-transactional "
                             "ones); read_uncommitted: aborted and open transactions' records too "
                             "(default read_committed)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show records/s and lag on stderr (default: when stderr is a terminal)")


def add_consume_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``consume`` on an argparse subparsers object; the handler is ``run(args)``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "consume", help="consume Kafka and feed the handler as Lambda's event source does",
        description=DESCRIPTION, epilog=EPILOG)
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def options_from_args(args: argparse.Namespace) -> Options:
    topics = [t.strip() for t in args.topics.split(",") if t.strip()]
    return Options(bootstrap_servers=args.bootstrap_servers, topics=topics, group_id=args.group_id,
                   batch_size=args.batch_size, batch_window_ms=args.batch_window_ms, until_idle=args.until_idle,
                   max_retries=args.max_retries, dlq_topic=args.dlq_topic, function_timeout=args.function_timeout,
                   retry_backoff_ms=args.retry_backoff_ms, max_backoff_ms=args.max_backoff_ms,
                   session_timeout_ms=args.session_timeout_ms, auto_offset_reset=args.auto_offset_reset,
                   isolation_level=IsolationLevel(args.isolation_level), progress=args.progress)


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
    opts = options_from_args(args)
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
