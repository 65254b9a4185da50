"""InfluxDB 3's own write API (``/api/v3/write_lp``): what each request carries, and exactly which
records are written and reported when the server refuses some lines.

InfluxDB 3 cannot be installed here: these tests talk to ``tests.influxdb3_standin``, a small
server written from InfluxDB 3 Core's published API reference and sources (statuses, bodies,
1-based ``line_number``). A record whose field ``v`` is a string after ``v`` was stored as a number
is refused by it, as InfluxDB 3 refuses a column type conflict.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handler import app
from handler.delivery import run_batch
from handler.errors import BatchFailed
from handler.records import parse_event
from handler.runtime import build
from influx_sink_tools.eventgen import Rec, build_event
from tests.influxdb3_standin import Influx3, influx3

KCQL = "INSERT INTO m SELECT * FROM t WITHTIMESTAMP _timestamp WITHTAG(_partition, _offset)"


@pytest.fixture
def server() -> Iterator[Influx3]:
    with influx3(token="tok-3") as s:
        yield s


def env(server: Influx3, policy: str = "NOOP", **extra: str) -> dict[str, str]:
    return {"CONNECT_INFLUX_URL": server.url, "CONNECT_INFLUX_VERSION": "3", "CONNECT_INFLUX_DB": "sensors",
            "CONNECT_INFLUX_TOKEN": "tok-3", "CONNECT_INFLUX_KCQL": KCQL, "CONNECT_INFLUX_ERROR_POLICY": policy,
            "CONNECT_INFLUX_RETRY_INTERVAL": "10", **extra}


def rec(partition: int, offset: int, bad: bool = False) -> Rec:
    value = {"v": "not a number"} if bad else {"v": offset + 0.5}
    return Rec("t", partition, offset, json.dumps(value).encode(), timestamp=1_700_000_000_000 + offset)


def records(spec: list[tuple[int, int, bool]]) -> list[Any]:
    return parse_event(build_event([rec(p, o, b) for p, o, b in spec]))


def stored(server: Influx3, db: str = "sensors") -> set[tuple[int, int]]:
    out = set()
    for line in server.lines(db):
        tags = dict(re.findall(r",(_offset|_partition)=(\d+)", line.split(" ", 1)[0]))
        out.add((int(tags["_partition"]), int(tags["_offset"])))
    return out


def writes(server: Influx3) -> list[bytes]:
    return [r.body for r in server.requests]


# Partition 0: offsets 0..5, 2 and 4 refused; partition 1: offsets 0..3, all good.
BATCH = [(0, 0, False), (0, 1, False), (1, 0, False), (0, 2, True), (1, 1, False), (0, 3, False),
         (0, 4, True), (1, 2, False), (0, 5, False), (1, 3, False)]
ALL = {(p, o) for p, o, _ in BATCH}


def test_request_carries_db_precision_partial_sync_and_bearer_token(server):
    rt = build(env(server, CONNECT_INFLUX_NO_SYNC="true", CONNECT_INFLUX_ACCEPT_PARTIAL="false"))
    run_batch(records([(0, 0, False)]), rt.plan, rt.writer, rt.settings.error_policy)
    (req,) = server.requests
    assert req.path == "/api/v3/write_lp"
    assert req.query == {"db": "sensors", "precision": "nanosecond", "accept_partial": "false", "no_sync": "true"}
    assert req.headers["Authorization"] == "Bearer tok-3"
    assert stored(server) == {(0, 0)}


def test_defaults_accept_partial_and_sync_and_bucket_names_the_database(server):
    rt = build(env(server, CONNECT_INFLUX_DB="", CONNECT_INFLUX_BUCKET="plant"))
    run_batch(records([(0, 0, False)]), rt.plan, rt.writer, rt.settings.error_policy)
    (req,) = server.requests
    assert req.query == {"db": "plant", "precision": "nanosecond", "accept_partial": "true", "no_sync": "false"}
    assert stored(server, "plant") == {(0, 0)}


def test_noop_partial_write_keeps_the_rest_and_sends_nothing_twice(server):
    rt = build(env(server, "NOOP"))
    result = run_batch(records(BATCH), rt.plan, rt.writer, rt.settings.error_policy)
    assert stored(server) == ALL - {(0, 2), (0, 4)}
    assert len(server.requests) == 1 and result.write_requests == 1
    assert [(f.partition, f.offset, f.kind) for f in result.failures] == [(0, 2, "rejected"), (0, 4, "rejected")]
    assert "invalid column type for column 'v'" in result.failures[0].reason
    assert result.response == {"batchItemFailures": []}
    assert result.written_records == len(ALL) - 2


def test_retry_partial_write_reports_from_the_first_refused_record_of_its_partition(server):
    rt = build(env(server, "RETRY"))
    result = run_batch(records(BATCH), rt.plan, rt.writer, rt.settings.error_policy)
    # One request: the server stored every valid line of it; only partition 0 from offset 2 goes back.
    assert len(server.requests) == 1
    assert stored(server) == ALL - {(0, 2), (0, 4)}
    assert [(i["itemIdentifier"]["partition"], i["itemIdentifier"]["offset"])
            for i in result.response["batchItemFailures"]] == [("t-0", 2), ("t-0", 3), ("t-0", 4), ("t-0", 5)]


def test_retry_later_chunks_skip_the_refused_partition(server):
    """With two-line requests, what follows the refused record in its partition is not sent."""
    rt = build(env(server, "RETRY", CONNECT_INFLUX_BATCH_LINES="2"))
    result = run_batch(records(BATCH), rt.plan, rt.writer, rt.settings.error_policy)
    bodies = [b.decode() for b in writes(server)]
    assert all(b.count("\n") <= 2 for b in bodies)
    # The event holds partition 0 first: (0,2) is refused in the second request, (0,3) beside it
    # is stored; the third request, (0,4) and (0,5), is never sent; partition 1 goes out.
    assert len(bodies) == 4
    assert stored(server) == {(0, 0), (0, 1), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3)}
    sent = [b for body in bodies for b in body.splitlines()]
    assert len(sent) == len(set(sent))  # no line sent twice
    assert {(i["itemIdentifier"]["partition"], i["itemIdentifier"]["offset"])
            for i in result.response["batchItemFailures"]} == {("t-0", 2), ("t-0", 3), ("t-0", 4), ("t-0", 5)}


def test_throw_names_each_refused_record_and_the_valid_lines_stay_written(server):
    rt = build(env(server, "THROW"))
    with pytest.raises(BatchFailed, match=r"partition=0 offset=2: InfluxDB rejected the point: invalid column") as err:
        run_batch(records(BATCH), rt.plan, rt.writer, rt.settings.error_policy)
    assert [(f.partition, f.offset) for f in err.value.failures] == [(0, 2), (0, 4)]
    assert len(server.requests) == 1
    assert stored(server) == ALL - {(0, 2), (0, 4)}


def test_without_accept_partial_the_request_is_split_to_find_the_refused_lines(server):
    rt = build(env(server, "NOOP", CONNECT_INFLUX_ACCEPT_PARTIAL="false"))
    result = run_batch(records(BATCH), rt.plan, rt.writer, rt.settings.error_policy)
    assert len(server.requests) > 1  # all-or-nothing requests: splitting finds the refused ones
    assert stored(server) == ALL - {(0, 2), (0, 4)}
    assert [(f.partition, f.offset, f.kind) for f in result.failures] == [(0, 2, "rejected"), (0, 4, "rejected")]


def test_a_5xx_is_retried_under_retry_and_then_written(server):
    server.fail_next.append((503, "busy"))
    rt = build(env(server, "RETRY"))
    result = run_batch(records([(0, 0, False), (0, 1, False)]), rt.plan, rt.writer, rt.settings.error_policy,
                       retry_interval=0.01)
    assert result.write_retries == 1 and len(server.requests) == 2
    assert stored(server) == {(0, 0), (0, 1)} and result.response == {"batchItemFailures": []}


def test_a_wrong_token_is_a_batch_error_reported_under_retry(server):
    rt = build(env(server, "RETRY", CONNECT_INFLUX_TOKEN="wrong"))
    result = run_batch(records([(0, 0, False), (0, 1, False)]), rt.plan, rt.writer, rt.settings.error_policy)
    assert result.write_error is not None and result.write_error.status == 401
    assert len(result.response["batchItemFailures"]) == 2 and stored(server) == set()
    assert "wrong" not in str(result.write_error)


def test_a_partial_write_naming_a_line_the_request_lacks_writes_nothing_it_cannot_account_for(server):
    """If the answer's line numbers do not fit the request, no record is counted as written."""
    from handler.write.protocol import V3Protocol
    from handler.write.transport import Answer, HttpTarget

    proto = V3Protocol(HttpTarget(server.url), db="d")
    body = json.dumps({"error": "partial write of line protocol occurred",
                       "data": [{"original_line": "x", "line_number": 3, "error_message": "bad"}]})
    with pytest.raises(Exception, match="naming line 3 of a request of 2 line"):
        proto.refused_lines(Answer(400, body), 2)
    body0 = body.replace('"line_number": 3', '"line_number": 1')
    assert proto.refused_lines(Answer(400, body0), 2) == {0: "bad"}
    assert proto.refused_lines(Answer(400, '{"error": "parsing failed for write_lp endpoint"}'), 2) is None


def test_lambda_handler_writes_through_v3(server, monkeypatch):
    for k, v in env(server, "RETRY").items():
        monkeypatch.setenv(k, v)
    app.reset_runtime()
    try:
        event = build_event([rec(0, 0), rec(0, 1, bad=True), rec(0, 2)])
        assert app.lambda_handler(event, None) == {"batchItemFailures": [
            {"itemIdentifier": {"partition": "t-0", "offset": 1}},
            {"itemIdentifier": {"partition": "t-0", "offset": 2}}]}
        assert stored(server) == {(0, 0), (0, 2)}
    finally:
        app.reset_runtime()


# ------------------------------------------------------------------ any batch: exact sets



def _expected_retry(batch: list[tuple[int, int, bool]], chunk: int) -> tuple[set[tuple[int, int]], int]:
    """What RETRY stores and how many requests it sends: chunk after chunk, the lines of a partition
    with a point refused in an earlier chunk are not sent; a request's valid lines are stored."""
    stopped: set[int] = set()
    stored_: set[tuple[int, int]] = set()
    requests = 0
    for start in range(0, len(batch), chunk):
        sent = [r for r in batch[start:start + chunk] if r[0] not in stopped]
        if sent:
            requests += 1
        stored_ |= {(p, o) for p, o, bad in sent if not bad}
        stopped |= {p for p, _, bad in sent if bad}
    return stored_, requests


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(1, 6), min_size=1, max_size=3), data=st.data(), chunk=st.integers(1, 7),
       policy=st.sampled_from(["RETRY", "NOOP"]))
def test_any_batch_writes_and_reports_exactly(sizes, data, chunk, policy):
    """Random partitions, refused records and request sizes: the stored and reported sets are the
    model's, and no line is ever sent twice."""
    batch = [(p, o, data.draw(st.booleans(), label=f"bad {p}/{o}")) for p, n in enumerate(sizes) for o in range(n)]
    with influx3(token="tok-3") as srv:
        srv.columns[("sensors", "m", "v")] = "float"  # the table exists: a string `v` is refused
        rt = build(env(srv, policy, CONNECT_INFLUX_BATCH_LINES=str(chunk)))
        result = run_batch(records(batch), rt.plan, rt.writer, rt.settings.error_policy)
        sent = [line for body in writes(srv) for line in body.decode().splitlines()]
        assert len(sent) == len(set(sent))
        bad = {(p, o) for p, o, b in batch if b}
        if policy == "NOOP":
            assert stored(srv) == {(p, o) for p, o, _ in batch} - bad
            assert len(srv.requests) == -(-len(batch) // chunk)
            assert result.response == {"batchItemFailures": []}
            assert {(f.partition, f.offset) for f in result.failures} == bad
        else:
            want, requests = _expected_retry(batch, chunk)
            assert stored(srv) == want and len(srv.requests) == requests
            first = {p: min(o for q, o in bad if q == p) for p, _ in bad}
            assert {(int(i["itemIdentifier"]["partition"][2:]), i["itemIdentifier"]["offset"])
                    for i in result.response["batchItemFailures"]} == {
                (p, o) for p, o, _ in batch if p in first and o >= first[p]}
