"""Report stage: apply the error policy to one batch and build the event source's answer.

What each policy writes and reports:

- THROW: any failed record (or failed write) raises ``BatchFailed`` naming the records. With a
  record error nothing is written when the statements time points by the clock; when every
  statement takes its time from the record (``Plan.repeatable``), chunks handed on before the
  failed record was mapped may be written: the event source's retry of the batch writes the same
  points again, which overwrites them.
- RETRY: per partition, only records before the first failure are written; that record and every
  later record of its partition go back as ``batchItemFailures``. Batch errors are retried here
  with backoff until the invocation's deadline, then what was not written is reported.
- NOOP: failures are logged with their coordinates and counted; every good record is written;
  nothing is reported.

How the work is scheduled (bench/RESULTS.md has the measurements behind it):

- THROW with clock-timed points maps (decode → map → encode) every record before the first
  byte is written: only then is it known that no record fails, and a record error must leave the
  batch unwritten, since the retry would write its points again at a new time (new points). The
  chunks are then written in order on this thread.
- THROW with repeatable lines overlaps like NOOP (below): writing a chunk and failing the batch
  later only means the retry overwrites those points with themselves. Once a record fails,
  nothing more is handed on.
- NOOP and RETRY overlap the two: each piece of the batch goes to the writer thread
  (``handler.write.schedule``, one kept-alive connection) as soon as it is mapped, and the next
  piece is mapped while InfluxDB stores the previous one (pieces grow to a chunk of
  ``chunk_lines`` lines and shrink again at the batch's end: ``_map_and_write``). That is safe because under NOOP a
  record's failure never holds back another record, and under RETRY it only holds back the
  *later* records of its own partition: those are not mapped yet, or still in the unsent chunk,
  when the failure is found. This needs each partition's records in ascending offset order, as
  the event source delivers them; a batch that is not (a hand-made event) is mapped in full first.
- A write error stops the writes at the chunk that failed, exactly as without overlap; the rest
  of the batch is still mapped so that every record's own failure is reported as before.
- Under RETRY, once InfluxDB refuses a point, the later lines of that record's partition are not
  sent (they are reported for redelivery anyway): the writer asks before each chunk which of its
  lines still go (``_StopAfterRefusal``) and reports the refused ones; that is all it knows of
  partitions.

``result.failures`` lists record failures (decode, mapping, encode) in record order, then the
write stage's (refused points, then records not written because of a batch error).
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypedDict

from handler.errors import BatchFailed, ErrorPolicy, Failure, FailureKind, RecordError, WriteError
from handler.mapping import Plan
from handler.records import KafkaRecord
from handler.write.schedule import Writer, WriteReport, WriteSession

log = logging.getLogger(__name__)


class ItemIdentifier(TypedDict):
    """A record as the Kafka event source names it: ``<topic>-<partition>`` and the offset."""

    partition: str
    offset: int


class BatchItemFailure(TypedDict):
    itemIdentifier: ItemIdentifier


class PartialItemFailureResponse(TypedDict):
    """The handler's answer: the records to deliver again (an empty list: the whole batch is done)."""

    batchItemFailures: list[BatchItemFailure]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold the cyclic garbage collector while a batch is parsed, mapped and written.

    A batch's objects form no reference cycles (they die by reference counting), so the young-
    generation collections its ~10,000 new objects trigger find nothing, yet they cost ~4 % of a
    warm 10,000-record batch (bench/RESULTS.md). Collection resumes when the block ends; nested
    use keeps the outer state.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def first_failed_offsets(failed: Iterable[tuple[str, int, int]]) -> dict[tuple[str, int], int]:
    """Per (topic, partition), the lowest offset among ``failed`` (topic, partition, offset): where
    a partition's redelivery starts."""
    first: dict[tuple[str, int], int] = {}
    for topic, partition, offset in failed:
        key = (topic, partition)
        if key not in first or offset < first[key]:
            first[key] = offset
    return first


@dataclass
class BatchResult:
    """What one invocation did; ``response`` is what the handler returns."""

    received: int = 0
    written_records: int = 0
    points: int = 0
    tombstones: int = 0
    non_finite: int = 0
    overwritten: int = 0
    failures: list[Failure] = field(default_factory=list)
    reported: list[KafkaRecord] = field(default_factory=list)
    write_seconds: float = 0.0
    write_requests: int = 0
    write_retries: int = 0
    write_error: WriteError | None = None

    @property
    def response(self) -> PartialItemFailureResponse:
        return {"batchItemFailures": [
            {"itemIdentifier": {"partition": r.partition_id, "offset": r.offset}} for r in self.reported]}


def _failure(record: KafkaRecord, reason: str, kind: FailureKind) -> Failure:
    return Failure(record.topic, record.partition, record.offset, reason, kind)


def _lines_of(record: KafkaRecord, lines_of: Any) -> list[str]:
    """The record's lines; RecordError (or UnicodeEncodeError: a lone surrogate from a JSON escape,
    which UTF-8 cannot carry) when it cannot be written. Only non-ASCII lines need the check."""
    lines: list[str] = lines_of(record)
    for line in lines:
        if not line.isascii():
            line.encode("utf-8")
    return lines


def _record_failure(record: KafkaRecord, err: RecordError | UnicodeEncodeError) -> Failure:
    if isinstance(err, UnicodeEncodeError):
        return _failure(record, f"text is not valid Unicode ({err.reason})", FailureKind.ENCODE)
    return _failure(record, err.reason, err.kind)


# What decoding and mapping code can raise on a value it did not expect. Every known bad input has
# its own RecordError with a reason; this is the last guard, so that one record the code still gets
# wrong fails alone, under the error policy, instead of failing the invocation (and with it, every
# good record of the batch, on every redelivery).
UNEXPECTED = (RecursionError, TypeError, ValueError, ArithmeticError, AttributeError, LookupError)
_CAUGHT = (RecordError, UnicodeEncodeError, *UNEXPECTED)


def _unexpected_failure(record: KafkaRecord, err: Exception) -> Failure:
    log.warning("unexpected %s while mapping the record at topic=%s partition=%s offset=%s", type(err).__name__,
                record.topic, record.partition, record.offset, exc_info=err)
    detail = str(err)
    detail = detail if len(detail) <= 200 else detail[:197] + "..."
    if isinstance(err, RecursionError):
        return _failure(record, "the record is nested too deeply to be decoded and mapped", FailureKind.DECODE)
    return _failure(record, f"cannot be mapped: {type(err).__name__}: {detail}", FailureKind.MAPPING)


def map_records(records: Sequence[KafkaRecord], plan: Plan,
                failures: list[Failure]) -> list[list[str] | None]:
    """Lines per record (None where the record failed; the failure is appended). For the CLI's dry run."""
    out: list[list[str] | None] = []
    append = out.append
    lines_of = plan.lines
    for rec in records:
        try:
            append(_lines_of(rec, lines_of))
        except (RecordError, UnicodeEncodeError) as err:
            failures.append(_record_failure(rec, err))
            append(None)
        except UNEXPECTED as err:
            failures.append(_unexpected_failure(rec, err))
            append(None)
    return out


def _ascending(records: Sequence[KafkaRecord]) -> bool:
    """True when each partition's records come in strictly ascending offset order (as delivered)."""
    last: dict[tuple[str, int], int] = {}
    topic: str | None = None
    partition = offset = -1
    for r in records:
        if r.partition == partition and r.topic == topic:
            if r.offset <= offset:
                return False
        else:
            if topic is not None:
                last[(topic, partition)] = offset
            seen = last.get((r.topic, r.partition))
            if seen is not None and r.offset <= seen:
                return False
            topic, partition = r.topic, r.partition
        offset = r.offset
    return True


class _StopAfterRefusal:
    """RETRY: once InfluxDB refuses a point, the later lines of its record's partition are not sent.

    They would be reported for redelivery anyway (with the refused record, the first failure of
    their partition), and writing them now would only write them twice. The writer calls this
    before each chunk, on its thread, with the lines refused so far; lines in the same request as
    a refused one were sent with it and stay written.
    """

    __slots__ = ("owner", "records", "skipped")

    def __init__(self, records: Sequence[KafkaRecord], owner: list[int]) -> None:
        self.records = records
        self.owner = owner  # line index → record index (grows while the batch is mapped)
        self.skipped: set[int] = set()  # line indexes not sent

    def _partition(self, line: int) -> tuple[str, int]:
        r = self.records[self.owner[line]]
        return (r.topic, r.partition)

    def __call__(self, start: int, end: int, rejected: Mapping[int, str]) -> list[int] | None:
        if not rejected:
            return None
        stopped = {self._partition(i) for i in rejected}
        keep: list[int] = []
        for i in range(start, end):
            if self._partition(i) in stopped:
                self.skipped.add(i)
            else:
                keep.append(i)
        return keep


class _Batch:
    """The batch being mapped: the lines to write (flat), their records, and the record failures."""

    def __init__(self, records: Sequence[KafkaRecord], plan: Plan) -> None:
        self.records = records
        self.plan = plan
        self.lines: list[str] = []  # what is written, in order
        self.owner: list[int] = []  # line index → record index
        # line index → route (the database its statement writes to), when statements name databases
        self.targets: list[int] | None = [] if plan.routed else None
        self.failures: list[Failure] = []  # record failures, in record order
        self.failed: set[int] = set()  # indexes of records that failed
        self.cut: dict[tuple[str, int], int] = {}  # RETRY: partition → offset of its first failure
        self.with_lines = 0  # records that have at least one line in ``lines``

    def map(self, start: int, stop: int, incremental_cut: bool) -> None:
        """Map records ``start..stop``; with ``incremental_cut`` (RETRY, ascending offsets) a
        partition's records after its first failure are mapped but not queued for writing."""
        with gc_paused():  # the collector's young passes find nothing here (see gc_paused)
            self._map(start, stop, incremental_cut)

    def _map(self, start: int, stop: int, incremental_cut: bool) -> None:
        records, lines, owner, cut, targets = self.records, self.lines, self.owner, self.cut, self.targets
        lines_of, line_routes = self.plan.lines, self.plan.line_routes
        extend, extend_owner = lines.extend, owner.extend
        routes: list[int] = []
        for i in range(start, stop):
            rec = records[i]
            try:  # _lines_of written out, so the per-record path of a warm batch makes no extra call
                ls = lines_of(rec)
                for line in ls:
                    if not line.isascii():
                        line.encode("utf-8")
                if targets is not None:
                    routes = line_routes(rec.topic, len(ls))
            except _CAUGHT as err:  # no cost until one is raised
                self.failures.append(_record_failure(rec, err) if isinstance(err, RecordError | UnicodeEncodeError)
                                     else _unexpected_failure(rec, err))
                self.failed.add(i)
                if incremental_cut:
                    key = (rec.topic, rec.partition)
                    if key not in cut:
                        cut[key] = rec.offset
                continue
            if not ls:
                continue
            if cut and incremental_cut:
                c = cut.get((rec.topic, rec.partition))
                if c is not None and rec.offset >= c:
                    continue
            extend(ls)
            if len(ls) == 1:
                owner.append(i)
            else:
                extend_owner([i] * len(ls))
            if targets is not None:
                targets.extend(routes)
            self.with_lines += 1

    def apply_cut(self) -> None:
        """RETRY after mapping everything: drop the lines at or after each partition's first failure."""
        self.cut = first_failed_offsets(self.coordinates(self.failed))
        if not self.cut:
            return
        keep = [j for j, i in enumerate(self.owner) if not self._after_cut(self.records[i])]
        self.lines = [self.lines[j] for j in keep]
        self.owner = [self.owner[j] for j in keep]
        if self.targets is not None:
            self.targets = [self.targets[j] for j in keep]
        self.with_lines = len(set(self.owner))

    def coordinates(self, indexes: Iterable[int]) -> Iterator[tuple[str, int, int]]:
        """(topic, partition, offset) of the records at ``indexes``."""
        records = self.records
        for i in indexes:
            r = records[i]
            yield r.topic, r.partition, r.offset

    def _after_cut(self, r: KafkaRecord) -> bool:
        c = self.cut.get((r.topic, r.partition))
        return c is not None and r.offset >= c


# The records of a piece of a batch mapped before it is handed on (see _map_and_write): the first
# request leaves after this many, and the writer thread joins pieces into fuller requests.
PIECE_LINES = 1000
# The interpreter's switch interval while the writer thread sends beside the mapping: after each
# answer from InfluxDB the writer waits for the lock at most this long (the default, 5 ms, left
# it idle for several milliseconds per request while the mapping held the lock).
WRITER_SWITCH_S = 0.0001


def pieces(n: int, chunk: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of the pieces a batch of ``n`` records is mapped in: ``PIECE_LINES``
    records each (never more than a chunk)."""
    size = max(1, min(PIECE_LINES, chunk))
    for i in range(0, n, size):
        yield i, min(n, i + size)


def _map_and_write(batch: _Batch, session: WriteSession, incremental_cut: bool, hold_on_failure: bool) -> None:
    """Map the batch, handing each piece (``pieces``) to the writer as soon as it is mapped.

    The first request leaves after the first piece; while it is out the mapping goes on, and the
    writer sends what was handed on meanwhile as one request of up to a chunk (InfluxDB is the
    slower side), so what is left to write after the last record is mapped is what InfluxDB has
    not caught up with. A request is never longer than a chunk (``offer`` cuts full chunks first).
    """
    n = len(batch.records)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(min(switch, WRITER_SWITCH_S))
    try:
        for start, stop in pieces(n, session.chunk):
            # After a batch error nothing more is sent, but every record is still mapped for its
            # own failure; under THROW (``hold_on_failure``) a failed record stops the writes the
            # same way: the batch fails, so nothing more of it is sent.
            if session.failed or (hold_on_failure and batch.failures):
                batch.map(start, n, incremental_cut)
                return
            batch.map(start, stop, incremental_cut)
            if stop < n and not (hold_on_failure and batch.failures):
                session.offer_rest()
        if not (hold_on_failure and batch.failures):
            session.flush()
    finally:
        try:
            session.wait()
        finally:
            sys.setswitchinterval(switch)


def run_batch(records: Sequence[KafkaRecord], plan: Plan, writer: Writer, policy: ErrorPolicy, *,
              deadline: float | None = None, retry_interval: float = 1.0) -> BatchResult:
    """Map, write and report one batch under ``policy`` (THROW, RETRY or NOOP)."""
    result = BatchResult(received=len(records))
    stats = plan.stats
    tomb0, nonfin0, over0 = stats.tombstones, stats.non_finite, stats.overwritten
    batch = _Batch(records, plan)
    retry = policy == ErrorPolicy.RETRY
    throw = policy == ErrorPolicy.THROW
    if (throw and not plan.repeatable) or (retry and not _ascending(records)):
        batch.map(0, len(records), incremental_cut=False)
        if batch.failures and throw:
            result.failures = batch.failures
            raise BatchFailed(batch.failures, written=0)
        if retry:
            batch.apply_cut()
        stop = _StopAfterRefusal(records, batch.owner) if retry else None
        session = writer.session(batch.lines, deadline=deadline, retry_interval=retry_interval, retries=retry,
                                 select=stop, targets=batch.targets)
        session.flush()
        session.wait()
    else:
        stop = _StopAfterRefusal(records, batch.owner) if retry else None
        session = writer.session(batch.lines, deadline=deadline, retry_interval=retry_interval, retries=retry,
                                 select=stop, overlap=True, targets=batch.targets)
        _map_and_write(batch, session, incremental_cut=retry, hold_on_failure=throw)
        if batch.failures and throw:
            # THROW with repeatable lines: the chunks handed on before the first failed record was
            # mapped are written (the event source's retry of the batch overwrites them); the
            # failure is the record failures', as when nothing was written.
            result.failures = batch.failures
            raise BatchFailed(batch.failures, written=_written_before(batch, session.handed, session.report))
    result.tombstones = stats.tombstones - tomb0
    result.non_finite = stats.non_finite - nonfin0
    result.overwritten = stats.overwritten - over0
    report = session.report
    result.write_seconds = report.seconds
    failures = batch.failures
    unwritten = _apply_report(batch, report, stop.skipped if stop is not None else (), failures, result)
    result.failures = failures
    owner = batch.owner
    if unwritten:
        result.written_records = len({o for o in owner if o not in unwritten})
        result.points = sum(1 for o in owner if o not in unwritten)
    else:
        result.written_records = batch.with_lines
        result.points = len(owner)

    if policy == ErrorPolicy.THROW and failures:
        raise BatchFailed(failures, written=result.written_records)
    if retry:
        first = first_failed_offsets(batch.coordinates(batch.failed | unwritten))
        if first:
            result.reported = [r for r in records
                               if (c := first.get((r.topic, r.partition))) is not None and r.offset >= c]
    for f in failures:
        log.error("record failed: %s", f, extra={"topic": f.topic, "partition": f.partition,
                                                 "offset": f.offset, "reason": f.reason, "kind": f.kind})
    return result


def _written_before(batch: _Batch, handed: int, report: WriteReport) -> int:
    """Records whose lines are all among the first ``handed`` lines and were stored."""
    owner = batch.owner
    end = handed if report.unwritten_from is None else min(handed, report.unwritten_from)
    whole = {owner[j] for j in range(end)} - {owner[j] for j in range(end, len(owner))}
    return len(whole - {owner[j] for j in report.rejected})


def _apply_report(batch: _Batch, report: WriteReport, skipped: Iterable[int], failures: list[Failure],
                  result: BatchResult) -> set[int]:
    """Record indexes the writer did not store (refused points, batch errors); failures appended."""
    unwritten: set[int] = set()
    owner, records = batch.owner, batch.records
    result.write_requests, result.write_retries = report.requests, report.retries
    for line_idx, message in sorted(report.rejected.items()):
        i = owner[line_idx]
        if i not in unwritten:
            unwritten.add(i)
            failures.append(_failure(records[i], f"InfluxDB rejected the point: {message}", FailureKind.REJECTED))
    for line_idx in sorted(skipped):
        unwritten.add(owner[line_idx])  # RETRY only: reported with the refused record before it
    if report.error is not None and report.unwritten_from is not None:
        result.write_error = report.error
        for i in dict.fromkeys([*(owner[j] for j in report.unwritten), *owner[report.unwritten_from:]]):
            if i not in unwritten:
                unwritten.add(i)
                failures.append(_failure(records[i], f"not written: {report.error.reason}", FailureKind.WRITE))
    return unwritten
