"""Issue 4: error policies against a real InfluxDB — exactly what is written, exactly what is reported."""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from handler import app
from handler.delivery import run_batch
from handler.errors import BatchFailed
from handler.records import parse_event
from handler.runtime import Runtime, build
from influx_sink_tools import local_influxdb
from influx_sink_tools.eventgen import Rec, build_event
from tests.conftest import query_points

pytestmark = pytest.mark.influx
KCQL = "INSERT INTO m SELECT * FROM t WITHTIMESTAMP _timestamp WITHTAG(_partition, _offset)"
POLICIES = ("THROW", "RETRY", "NOOP")


def rec(partition: int, offset: int, value: Any = None, poison: bool = False) -> Rec:
    body = b"{not json" if poison else json.dumps(value if value is not None else {"v": offset}).encode()
    return Rec("t", partition, offset, body, timestamp=1_700_000_000_000 + partition * 100_000 + offset)


def runtime(url: str, db: str, policy: str, **extra: str) -> Runtime:
    env = {"CONNECT_INFLUX_URL": url, "CONNECT_INFLUX_DB": db, "CONNECT_INFLUX_KCQL": KCQL,
           "CONNECT_INFLUX_ERROR_POLICY": policy, "CONNECT_INFLUX_RETRY_INTERVAL": "100",
           "CONNECT_INFLUX_READ_TIMEOUT_MS": "1000", "CONNECT_INFLUX_CONNECT_TIMEOUT_MS": "500", **extra}
    return build(env)


def written(server: local_influxdb.InfluxServer, db: str) -> set[tuple[int, int]]:
    rows = query_points(server, db, 'SELECT "v", "_partition", "_offset" FROM m')
    return {(int(r["_partition"]), int(r["_offset"])) for r in rows}


def reported(response: dict[str, Any]) -> set[tuple[int, int]]:
    return {(int(f["itemIdentifier"]["partition"].rsplit("-", 1)[1]), f["itemIdentifier"]["offset"])
            for f in response["batchItemFailures"]}


def batch(records: list[Rec]) -> list[Any]:
    return parse_event(build_event(records))


@pytest.fixture
def own_influx(tmp_path: Any) -> Iterator[local_influxdb.InfluxServer]:
    """A server of this test's own, to stop, kill and restart."""
    server = local_influxdb.start(str(tmp_path / "influxd"))
    server.query('CREATE DATABASE "own"')
    yield server
    server.kill()


# ------------------------------------------------------------------ a poison record mid-partition

POISON_BATCH = [rec(0, o, poison=(o == 5)) for o in range(10)] + [rec(1, o) for o in range(5)]
ALL = {(r.partition, r.offset) for r in POISON_BATCH}


def test_poison_throw_writes_nothing_and_names_the_record(influx, db):
    rt = runtime(influx.url, db, "THROW")
    with pytest.raises(BatchFailed) as err:
        run_batch(batch(POISON_BATCH), rt.plan, rt.writer, "THROW")
    assert "topic=t partition=0 offset=5" in str(err.value)
    assert "not valid JSON" in str(err.value)
    assert written(influx, db) == set()


def test_poison_retry_writes_prefix_and_reports_the_rest_of_its_partition(influx, db):
    rt = runtime(influx.url, db, "RETRY")
    result = run_batch(batch(POISON_BATCH), rt.plan, rt.writer, "RETRY")
    assert written(influx, db) == {(0, o) for o in range(5)} | {(1, o) for o in range(5)}
    assert reported(result.response) == {(0, o) for o in range(5, 10)}
    assert result.response["batchItemFailures"][0] == {"itemIdentifier": {"partition": "t-0", "offset": 5}}


def test_poison_noop_writes_every_good_record_and_logs_the_bad_one(influx, db, caplog):
    rt = runtime(influx.url, db, "NOOP")
    with caplog.at_level(logging.ERROR, logger="handler.delivery"):
        result = run_batch(batch(POISON_BATCH), rt.plan, rt.writer, "NOOP")
    assert written(influx, db) == ALL - {(0, 5)}
    assert result.response == {"batchItemFailures": []}
    assert [r.getMessage() for r in caplog.records if "offset=5" in r.getMessage()]
    assert [(f.partition, f.offset) for f in result.failures] == [(0, 5)]


# ------------------------------------------------------------------ InfluxDB stopped

GOOD = [rec(0, o) for o in range(20)] + [rec(1, o) for o in range(20)]


@pytest.mark.parametrize("policy", POLICIES)
def test_influx_stopped(own_influx, policy, caplog):
    rt = runtime(own_influx.url, "own", policy)
    own_influx.stop()
    t0 = time.monotonic()
    if policy == "THROW":
        with pytest.raises(BatchFailed) as err:
            run_batch(batch(GOOD), rt.plan, rt.writer, policy, deadline=time.monotonic() + 3)
        assert "topic=t partition=0 offset=0" in str(err.value) and "cannot reach InfluxDB" in str(err.value)
        return
    with caplog.at_level(logging.ERROR, logger="handler.delivery"):
        result = run_batch(batch(GOOD), rt.plan, rt.writer, policy, deadline=time.monotonic() + 3, retry_interval=0.2)
    assert time.monotonic() - t0 < 3.5
    if policy == "RETRY":
        assert reported(result.response) == {(r.partition, r.offset) for r in GOOD}
        assert result.write_retries >= 1
    else:
        assert result.response == {"batchItemFailures": []}
        assert len([r for r in caplog.records if "cannot reach InfluxDB" in r.getMessage()]) == len(GOOD)


# ------------------------------------------------------------------ killed mid-batch, restarted


def _kill_after_first_request(server: local_influxdb.InfluxServer, rt: Runtime, restart_after: float | None,
                              tmp_path: Any) -> dict[str, Any]:
    """Let the first request through, kill influxd before the second, restart it later on the same port."""
    state: dict[str, Any] = {"requests": 0, "server": server}
    original = rt.writer.protocol.target.post
    port = int(server.url.rsplit(":", 1)[1])

    def post(*args: Any, **kw: Any) -> Any:
        state["requests"] += 1
        if state["requests"] == 2:
            server.kill()
            if restart_after is not None:
                def restart() -> None:
                    time.sleep(restart_after)
                    state["server"] = local_influxdb.start(server.root, port=port)
                threading.Thread(target=restart, daemon=True).start()
        return original(*args, **kw)

    rt.writer.protocol.target.post = post  # type: ignore[method-assign]
    return state


BIG = [rec(p, o) for p in range(2) for o in range(3000)]


def test_killed_mid_batch_retry_recovers_and_writes_everything(own_influx, tmp_path):
    rt = runtime(own_influx.url, "own", "RETRY", CONNECT_INFLUX_BATCH_LINES="1000")
    state = _kill_after_first_request(own_influx, rt, 1.0, tmp_path)
    result = run_batch(batch(BIG), rt.plan, rt.writer, "RETRY", deadline=time.monotonic() + 30, retry_interval=0.3)
    assert result.response == {"batchItemFailures": []}
    assert result.write_retries >= 1
    assert written(state["server"], "own") == {(r.partition, r.offset) for r in BIG}
    state["server"].kill()


@pytest.mark.parametrize("policy", ["THROW", "NOOP"])
def test_killed_mid_batch_throw_and_noop(own_influx, tmp_path, policy):
    rt = runtime(own_influx.url, "own", policy, CONNECT_INFLUX_BATCH_LINES="1000")
    state = _kill_after_first_request(own_influx, rt, None, tmp_path)
    if policy == "THROW":
        with pytest.raises(BatchFailed) as err:
            run_batch(batch(BIG), rt.plan, rt.writer, policy, deadline=time.monotonic() + 10)
        # The first 1000 lines were written; the error names the first record that was not.
        assert "topic=t partition=0 offset=1000:" in str(err.value)
        assert err.value.written == 1000
    else:
        result = run_batch(batch(BIG), rt.plan, rt.writer, policy, deadline=time.monotonic() + 10)
        assert result.response == {"batchItemFailures": []}
        assert result.written_records == 1000
        assert {(f.partition, f.offset) for f in result.failures} == {(r.partition, r.offset) for r in BIG[1000:]}
    # What was written is exactly the first chunk: check on a restarted server.
    port = int(own_influx.url.rsplit(":", 1)[1])
    again = local_influxdb.start(own_influx.root, port=port)
    try:
        assert written(again, "own") == {(r.partition, r.offset) for r in BIG[:1000]}
    finally:
        again.kill()
    assert state["requests"] == 2


# ------------------------------------------------------------------ a server that never answers


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers (a real InfluxDB cannot be made to hang)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(50)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conns.append(sock.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    for c in conns:
        c.close()
    sock.close()


@pytest.mark.parametrize("policy", POLICIES)
def test_silent_server_cannot_eat_the_invocation(silent_server, policy):
    rt = runtime(silent_server, "db", policy)
    t0 = time.monotonic()
    deadline = t0 + 2.5
    if policy == "THROW":
        with pytest.raises(BatchFailed, match="did not answer within"):
            run_batch(batch(GOOD), rt.plan, rt.writer, policy, deadline=deadline)
    else:
        result = run_batch(batch(GOOD), rt.plan, rt.writer, policy, deadline=deadline, retry_interval=0.2)
        expected = {(r.partition, r.offset) for r in GOOD} if policy == "RETRY" else set()
        assert reported(result.response) == expected
        assert len(result.failures) == len(GOOD)
    assert time.monotonic() < deadline + 0.5


# ------------------------------------------------------------------ field-type conflict


@pytest.mark.parametrize("policy", POLICIES)
def test_field_type_conflict_in_a_good_batch(influx, db, policy):
    rt = runtime(influx.url, db, policy)
    run_batch(batch([rec(9, 0, {"v": 1})]), rt.plan, rt.writer, policy)  # v is an integer field now
    records = [rec(0, o, {"v": 1.5} if o == 3 else {"v": o}) for o in range(8)] + [rec(1, o) for o in range(4)]
    if policy == "THROW":
        with pytest.raises(BatchFailed, match=r"partition=0 offset=3: InfluxDB rejected the point: .*conflict"):
            run_batch(batch(records), rt.plan, rt.writer, policy)
        # The server keeps the valid points of a partial write; the event source's retry rewrites them identically.
        assert (0, 3) not in written(influx, db)
        return
    result = run_batch(batch(records), rt.plan, rt.writer, policy)
    assert [(f.partition, f.offset, f.kind) for f in result.failures] == [(0, 3, "rejected")]
    assert "field type conflict" in result.failures[0].reason
    got = written(influx, db) - {(9, 0)}
    assert (0, 3) not in got
    if policy == "RETRY":
        assert reported(result.response) == {(0, o) for o in range(3, 8)}
        # Records after the refused one that shared its request were stored by the server's partial write;
        # they are reported anyway and their redelivery overwrites them with identical points.
        assert {(0, o) for o in range(3)} | {(1, o) for o in range(4)} <= got
    else:
        assert result.response == {"batchItemFailures": []}
        assert got == {(r.partition, r.offset) for r in records} - {(0, 3)}


# ------------------------------------------------------------------ small max-body-size, 10,000 records


@pytest.mark.parametrize("policy", POLICIES)
def test_small_max_body_size_splits_requests(tmp_path, policy):
    server = local_influxdb.start(str(tmp_path / "small"), max_body_size=100_000)
    try:
        server.query('CREATE DATABASE "own"')
        rt = runtime(server.url, "own", policy)
        records = [rec(o % 4, o // 4) for o in range(10_000)]
        result = run_batch(batch(records), rt.plan, rt.writer, policy)
        assert result.response == {"batchItemFailures": []}
        assert result.failures == []
        assert result.write_requests > 2  # split at least once
        assert written(server, "own") == {(r.partition, r.offset) for r in records}
    finally:
        server.kill()


# ------------------------------------------------------------------ the audit


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("policy", ["RETRY", "NOOP"])
def test_audit_every_offset_is_written_or_reported(tmp_path, policy, seed, caplog):
    """Random good/poison records and outages: each offset is in InfluxDB or reported (RETRY) / logged (NOOP)."""
    rnd = random.Random(seed)
    server = local_influxdb.start(str(tmp_path / "audit"))
    server.query('CREATE DATABASE "own"')
    port = int(server.url.rsplit(":", 1)[1])
    try:
        rt = runtime(server.url, "own", policy, CONNECT_INFLUX_BATCH_LINES=str(rnd.choice([7, 50, 1000])))
        for invocation in range(3):
            records = [rec(p, invocation * 1000 + o, poison=rnd.random() < 0.03)
                       for p in range(3) for o in range(rnd.randint(0, 120))]
            outage = rnd.random() < 0.5
            if outage:  # the server goes away after a random number of requests
                cut = rnd.randint(1, 4)
                original, count = rt.writer.protocol.target.post, [0]

                def post(*a: Any, _o: Any = original, _c: list[int] = count, _cut: int = cut,
                         _s: local_influxdb.InfluxServer = server, **k: Any) -> Any:
                    _c[0] += 1
                    if _c[0] == _cut:
                        _s.kill()
                    return _o(*a, **k)

                rt.writer.protocol.target.post = post  # type: ignore[method-assign]
            caplog.clear()
            with caplog.at_level(logging.ERROR, logger="handler.delivery"):
                result = run_batch(batch(records), rt.plan, rt.writer, policy, deadline=time.monotonic() + 1.5,
                                   retry_interval=0.2)
            if outage:
                del rt.writer.protocol.target.post
                if server.proc is not None and server.proc.poll() is not None:
                    server = local_influxdb.start(server.root, port=port)
            have = {k for k in written(server, "own") if k[1] // 1000 == invocation}
            offsets = {(r.partition, r.offset) for r in records}
            failed = {(f.partition, f.offset) for f in result.failures}
            logged = {(r.partition, r.offset) for r in result.failures
                      if any(f"partition={r.partition} offset={r.offset}:" in m.getMessage() for m in caplog.records)}
            if policy == "RETRY":
                rep = reported(result.response)
                assert offsets <= have | rep, offsets - have - rep
                for p in range(3):
                    first = min((o for q, o in rep if q == p), default=None)
                    if first is not None:
                        assert not {o for q, o in have if q == p and o > first}, (p, first)
                        assert {o for q, o in offsets if q == p and o >= first} <= {o for q, o in rep if q == p}
            else:
                assert result.response == {"batchItemFailures": []}
                assert offsets <= have | failed
                assert failed == logged
                assert not (failed & have) or outage
    finally:
        server.kill()


# ------------------------------------------------------------------ the deadline, through the handler


class _Context:
    def __init__(self, ms: int) -> None:
        self.end = time.monotonic() + ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.end - time.monotonic()) * 1000))


def test_retry_returns_before_the_remaining_time_runs_out(silent_server, sink_env):
    sink_env(KCQL, CONNECT_INFLUX_URL=silent_server, CONNECT_INFLUX_ERROR_POLICY="RETRY",
             CONNECT_INFLUX_RETRY_INTERVAL="200", CONNECT_INFLUX_READ_TIMEOUT_MS="60000")
    ctx = _Context(3000)
    response = app.lambda_handler(build_event(GOOD), ctx)
    assert ctx.get_remaining_time_in_millis() > 0
    assert reported(response) == {(r.partition, r.offset) for r in GOOD}
