"""Issue 8: writes overlap mapping only where an error policy allows it (real InfluxDB).

THROW with points timed by the clock maps the whole batch before the first request; NOOP, RETRY
and THROW with times from the record send each piece while the next one is mapped. These tests
watch when requests happen relative to mapping, and check that what is written and reported is
the same as without overlap, including the cases the overlap has to step around (a hand-made
event whose offsets go backwards, text UTF-8 cannot carry).
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from handler.delivery import run_batch
from handler.errors import BatchFailed
from handler.records import parse_event
from handler.runtime import Runtime, build
from influx_sink_tools.eventgen import Rec, build_event
from tests.conftest import query_points

pytestmark = pytest.mark.influx
KCQL = "INSERT INTO m SELECT * FROM t WITHTIMESTAMP _timestamp WITHTAG(_partition, _offset)"
KCQL_CLOCK = "INSERT INTO m SELECT * FROM t WITHTAG(_partition, _offset)"  # points timed at processing


def runtime(url: str, db: str, policy: str, batch_lines: int, kcql: str = KCQL) -> Runtime:
    return build({"CONNECT_INFLUX_URL": url, "CONNECT_INFLUX_DB": db, "CONNECT_INFLUX_KCQL": kcql,
                  "CONNECT_INFLUX_ERROR_POLICY": policy, "CONNECT_INFLUX_BATCH_LINES": str(batch_lines)})


def rec(partition: int, offset: int, body: bytes | None = None) -> Rec:
    return Rec("t", partition, offset, body or json.dumps({"v": offset}).encode(),
               timestamp=1_700_000_000_000 + partition * 100_000 + offset)


def written(server: Any, db: str) -> set[tuple[int, int]]:
    rows = query_points(server, db, 'SELECT "v", "_partition", "_offset" FROM m')
    return {(int(r["_partition"]), int(r["_offset"])) for r in rows}


def reported(result: Any) -> set[tuple[int, int]]:
    return {(int(f["itemIdentifier"]["partition"].rsplit("-", 1)[1]), f["itemIdentifier"]["offset"])
            for f in result.response["batchItemFailures"]}


def watch(rt: Runtime, hold_at: int | None = None) -> list[int]:
    """Count mapped records; return, per request, how many were mapped when it was sent.

    With ``hold_at``, mapping pauses at that record until a request has gone out (at most 10 s):
    requests that can go out while mapping is under way then do so at a known point.
    """
    mapped = [0]
    seen: list[int] = []
    sent = threading.Event()
    lines, post = rt.plan.lines, rt.writer.protocol.target.post

    def counting_lines(record: Any) -> Any:
        mapped[0] += 1
        if mapped[0] == hold_at:
            sent.wait(10)
        return lines(record)

    def watching_post(*args: Any, **kw: Any) -> Any:
        seen.append(mapped[0])
        sent.set()
        return post(*args, **kw)

    rt.plan.lines = counting_lines  # type: ignore[method-assign]
    rt.writer.protocol.target.post = watching_post  # type: ignore[method-assign]
    return seen


BATCH = [rec(p, o) for p in range(2) for o in range(2500)]  # 5 requests of 1000 lines


@pytest.mark.parametrize("policy", ["NOOP", "RETRY"])
def test_noop_and_retry_write_while_mapping(influx, db, policy):
    rt = runtime(influx.url, db, policy, 1000)
    seen = watch(rt, hold_at=3000)
    result = run_batch(parse_event(build_event(BATCH)), rt.plan, rt.writer, policy)
    assert result.response == {"batchItemFailures": []} and result.written_records == len(BATCH)
    assert len(seen) == 5
    assert seen[0] < 3000  # the first chunk went out while the batch was still being mapped
    assert written(influx, db) == {(r.partition, r.offset) for r in BATCH}


def test_throw_with_clock_timed_points_maps_everything_before_the_first_request(influx, db):
    rt = runtime(influx.url, db, "THROW", 1000, KCQL_CLOCK)
    seen = watch(rt)
    result = run_batch(parse_event(build_event(BATCH)), rt.plan, rt.writer, "THROW")
    assert result.written_records == len(BATCH)
    assert seen == [len(BATCH)] * 5


def test_throw_with_clock_timed_points_and_a_poison_record_at_the_end_writes_nothing(influx, db):
    rt = runtime(influx.url, db, "THROW", 1000, KCQL_CLOCK)
    seen = watch(rt)
    with pytest.raises(BatchFailed, match="partition=1 offset=2499"):
        run_batch(parse_event(build_event([*BATCH[:-1], rec(1, 2499, b"{bad")])), rt.plan, rt.writer, "THROW")
    assert seen == []
    assert written(influx, db) == set()


def test_throw_with_record_timestamps_writes_while_mapping(influx, db):
    """Lines taken from the record are the same on every retry, so THROW may write as it maps."""
    rt = runtime(influx.url, db, "THROW", 1000)
    seen = watch(rt, hold_at=3000)
    result = run_batch(parse_event(build_event(BATCH)), rt.plan, rt.writer, "THROW")
    assert result.response == {"batchItemFailures": []} and result.written_records == len(BATCH)
    assert len(seen) == 5 and seen[0] < 3000
    assert written(influx, db) == {(r.partition, r.offset) for r in BATCH}


def test_throw_with_record_timestamps_and_a_poison_record_writes_nothing_after_it(influx, db):
    """The batch fails naming the record; what was written before it is written again, identically,
    by the event source's retry of the batch (the same points, not new ones)."""
    poison = 3500  # partition 1, offset 1000
    records = [*BATCH[:poison], rec(1, 1000, b"{bad"), *BATCH[poison + 1:]]
    before = {(r.partition, r.offset) for r in BATCH[:poison]}
    rt = runtime(influx.url, db, "THROW", 1000)
    seen = watch(rt)
    with pytest.raises(BatchFailed, match="partition=1 offset=1000") as err:
        run_batch(parse_event(build_event(records)), rt.plan, rt.writer, "THROW")
    first = written(influx, db)
    # With 1000-line chunks the batch goes out in pieces of 1000 records: the three before the
    # piece that holds the failed record were handed on, nothing after.
    assert first == {(r.partition, r.offset) for r in BATCH[:3000]} and first <= before and len(seen) == 3
    assert err.value.written == len(first) and [f.offset for f in err.value.failures] == [1000]
    count = len(query_points(influx, db, 'SELECT "v" FROM m'))
    with pytest.raises(BatchFailed):  # the event source's retry: the same batch again
        run_batch(parse_event(build_event(records)), rt.plan, rt.writer, "THROW")
    assert written(influx, db) == first
    assert len(query_points(influx, db, 'SELECT "v" FROM m')) == count == len(first)


@pytest.mark.parametrize("batch_lines", [1, 3, 1000])
def test_retry_text_utf8_cannot_carry_cuts_its_partition_mid_pipeline(influx, db, batch_lines):
    """A lone surrogate (from a JSON escape) fails its record; the partition stops there."""
    bad = b'{"v": 4, "s": "\\ud800"}'
    records = [rec(0, o, bad if o == 4 else None) for o in range(10)] + [rec(1, o) for o in range(6)]
    rt = runtime(influx.url, db, "RETRY", batch_lines)
    result = run_batch(parse_event(build_event(records)), rt.plan, rt.writer, "RETRY")
    assert [(f.partition, f.offset, f.kind) for f in result.failures] == [(0, 4, "encode")]
    assert "not valid Unicode" in result.failures[0].reason
    assert reported(result) == {(0, o) for o in range(4, 10)}
    assert written(influx, db) == {(0, o) for o in range(4)} | {(1, o) for o in range(6)}


def test_retry_with_offsets_out_of_order_still_writes_only_before_the_first_failure(influx, db):
    """A hand-made event whose offsets go backwards in a partition is mapped in full first."""
    order = [5, 6, 7, 0, 1, 2]
    records = [rec(0, o, b"{bad" if o == 1 else None) for o in order] + [rec(1, o) for o in range(3)]
    rt = runtime(influx.url, db, "RETRY", 2)
    result = run_batch(parse_event(build_event(records)), rt.plan, rt.writer, "RETRY")
    assert reported(result) == {(0, o) for o in (1, 2, 5, 6, 7)}
    assert written(influx, db) == {(0, 0)} | {(1, o) for o in range(3)}


def test_an_unexpected_error_on_the_writer_thread_reaches_the_caller(influx, db):
    rt = runtime(influx.url, db, "NOOP", 1000)

    class Boom(RuntimeError):
        pass

    def post(*args: Any, **kw: Any) -> Any:
        raise Boom("writer thread failed")

    rt.writer.protocol.target.post = post  # type: ignore[method-assign]
    with pytest.raises(Boom):
        run_batch(parse_event(build_event(BATCH)), rt.plan, rt.writer, "NOOP")
