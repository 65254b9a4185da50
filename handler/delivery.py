"""Report stage: apply the error policy to one batch and build the event source's answer.

The batch runs map → encode for every record first, then one bulk write, then reporting:

- THROW: any failed record (or failed write) raises ``BatchFailed`` naming the records; with a
  record error nothing is written.
- RETRY: per partition, only records before the first failure are written; that record and every
  later record of its partition go back as ``batchItemFailures``. Batch errors are retried here
  with backoff until the invocation's deadline, then what was not written is reported.
- NOOP: failures are logged with their coordinates and counted; every good record is written;
  nothing is reported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from handler.errors import BatchFailed, Failure, RecordError, WriteError
from handler.influx import LineWriter
from handler.lineproto import encode
from handler.mapping import Plan
from handler.records import KafkaRecord

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    """What one invocation did; ``response`` is what the handler returns."""

    received: int = 0
    written_records: int = 0
    points: int = 0
    tombstones: int = 0
    non_finite: int = 0
    failures: list[Failure] = field(default_factory=list)
    reported: list[KafkaRecord] = field(default_factory=list)
    write_seconds: float = 0.0
    write_requests: int = 0
    write_retries: int = 0
    write_error: WriteError | None = None

    @property
    def response(self) -> dict[str, Any]:
        return {"batchItemFailures": [
            {"itemIdentifier": {"partition": r.partition_id, "offset": r.offset}} for r in self.reported]}


def _failure(record: KafkaRecord, reason: str, kind: str) -> Failure:
    return Failure(record.topic, record.partition, record.offset, reason, kind)


def map_records(records: Sequence[KafkaRecord], plan: Plan,
                failures: list[Failure]) -> list[list[str] | None]:
    """Lines per record (None where the record failed; the failure is appended)."""
    out: list[list[str] | None] = []
    append = out.append
    points_of = plan.points
    for rec in records:
        try:
            append([encode(p) for p in points_of(rec)])
        except RecordError as err:
            failures.append(_failure(rec, err.reason, err.kind))
            append(None)
    return out


def _check_unicode(records: Sequence[KafkaRecord], lines: list[list[str] | None],
                   failures: list[Failure]) -> None:
    """Strings with lone surrogates (from JSON escapes) cannot be UTF-8: fail those records only."""
    try:
        "".join(line for ls in lines if ls for line in ls).encode("utf-8")
        return
    except UnicodeEncodeError:
        pass
    for i, ls in enumerate(lines):
        if not ls:
            continue
        try:
            "".join(ls).encode("utf-8")
        except UnicodeEncodeError as err:
            failures.append(_failure(records[i], f"text is not valid Unicode ({err.reason})", "encode"))
            lines[i] = None


def _first_failed(records: Sequence[KafkaRecord], failed: set[int]) -> dict[tuple[str, int], int]:
    """Per (topic, partition): the lowest offset among failed records."""
    first: dict[tuple[str, int], int] = {}
    for i in failed:
        r = records[i]
        k = (r.topic, r.partition)
        if k not in first or r.offset < first[k]:
            first[k] = r.offset
    return first


def run_batch(records: Sequence[KafkaRecord], plan: Plan, writer: LineWriter, policy: str, *,
              deadline: float | None = None, retry_interval: float = 1.0) -> BatchResult:
    """Map, write and report one batch under ``policy`` (THROW, RETRY or NOOP)."""
    result = BatchResult(received=len(records))
    stats = plan.stats
    tomb0, nonfin0 = stats.tombstones, stats.non_finite
    failures: list[Failure] = []
    lines = map_records(records, plan, failures)
    _check_unicode(records, lines, failures)
    result.tombstones = stats.tombstones - tomb0
    result.non_finite = stats.non_finite - nonfin0
    failed_idx = {i for i, ls in enumerate(lines) if ls is None}

    if failures and policy == "THROW":
        result.failures = failures
        raise BatchFailed(failures, written=0)

    # What to write: under RETRY nothing at or after a partition's first failure.
    cut = _first_failed(records, failed_idx) if policy == "RETRY" else {}
    to_write: list[str] = []
    owner: list[int] = []
    for i, ls in enumerate(lines):
        if not ls:
            continue
        r = records[i]
        c = cut.get((r.topic, r.partition))
        if c is not None and r.offset >= c:
            continue
        to_write.extend(ls)
        owner.extend([i] * len(ls))

    t0 = time.perf_counter()
    groups = [(records[i].topic, records[i].partition) for i in owner] if policy == "RETRY" else None
    report = writer.write(to_write, deadline=deadline, retry_interval=retry_interval,
                          retries=policy == "RETRY", groups=groups) if to_write else None
    result.write_seconds = time.perf_counter() - t0

    unwritten: set[int] = set()
    if report is not None:
        result.write_requests, result.write_retries = report.requests, report.retries
        for line_idx, message in sorted(report.rejected.items()):
            i = owner[line_idx]
            if i not in unwritten:
                unwritten.add(i)
                failures.append(_failure(records[i], f"InfluxDB rejected the point: {message}", "rejected"))
        for line_idx in sorted(report.skipped):
            unwritten.add(owner[line_idx])  # RETRY only: reported below with the refused record before it
        if report.error is not None and report.unwritten_from is not None:
            result.write_error = report.error
            for i in dict.fromkeys(owner[report.unwritten_from:]):
                if i not in unwritten:
                    unwritten.add(i)
                    failures.append(_failure(records[i], f"not written: {report.error.reason}", "write"))
    result.failures = failures
    written = {o for o in owner if o not in unwritten}
    result.written_records = len(written)
    result.points = sum(1 for o in owner if o not in unwritten)

    if policy == "THROW" and failures:
        raise BatchFailed(failures, written=result.written_records)
    if policy == "RETRY":
        first = _first_failed(records, failed_idx | unwritten)
        result.reported = [r for r in records
                           if (c := first.get((r.topic, r.partition))) is not None and r.offset >= c]
    for f in failures:
        log.error("record failed: %s", f, extra={"topic": f.topic, "partition": f.partition,
                                                 "offset": f.offset, "reason": f.reason, "kind": f.kind})
    return result
