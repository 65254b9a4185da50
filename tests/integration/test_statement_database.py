"""A statement's own database (KCQL ``DATABASE`` / ``RETENTION POLICY``) against a real InfluxDB 1.x
with several databases: each request writes to one database, and what is written and reported
stays exact when one database refuses points or the whole request."""

from __future__ import annotations

import itertools
import json
import os
import time
from typing import Any

import pytest

from handler.delivery import run_batch
from handler.errors import BatchFailed, ConfigError
from handler.records import parse_event
from handler.runtime import build
from handler.settings import load
from influx_sink_tools import local_influxdb
from influx_sink_tools.eventgen import Rec, build_event
from tests.conftest import query_points
from tests.integration.test_targets import recording_proxy, victoria  # noqa: F401 - fixtures for the 2.x test

pytestmark = pytest.mark.influx
TAGS = "WITHTIMESTAMP _timestamp WITHTAG(_topic, _partition, _offset)"
_n = itertools.count()
NOW_MS = int(time.time() * 1000) - 60_000  # inside the short retention policies below


@pytest.fixture
def dbs(influx: local_influxdb.InfluxServer) -> tuple[str, str, str]:
    """The settings' database and two more; the second has a retention policy `week` besides autogen."""
    names = tuple(f"sd{os.getpid()}_{next(_n)}_{x}" for x in ("default", "a", "b"))
    for name in names:
        influx.query(f'CREATE DATABASE "{name}"')
    influx.query(f'CREATE RETENTION POLICY "week" ON "{names[2]}" DURATION 7d REPLICATION 1')
    return names  # type: ignore[return-value]


def env(url: str, db: str, kcql: str, policy: str, **extra: str) -> dict[str, str]:
    return {"CONNECT_INFLUX_URL": url, "CONNECT_INFLUX_DB": db, "CONNECT_INFLUX_KCQL": kcql,
            "CONNECT_INFLUX_ERROR_POLICY": policy, "CONNECT_INFLUX_RETRY_INTERVAL": "10",
            "CONNECT_INFLUX_READ_TIMEOUT_MS": "2000", **extra}


def rec(topic: str, partition: int, offset: int, value: Any = None) -> Rec:
    body = json.dumps({"v": offset + 0.5} if value is None else value).encode()
    return Rec(topic, partition, offset, body, timestamp=NOW_MS + offset)


def written(influx: local_influxdb.InfluxServer, db: str, source: str = "m") -> set[tuple[str, int, int]]:
    rows = query_points(influx, db, f'SELECT "v", "_topic", "_partition", "_offset" FROM {source}')
    return {(r["_topic"], int(r["_partition"]), int(r["_offset"])) for r in rows}


def reported(response: Any) -> set[tuple[str, int]]:
    return {(f["itemIdentifier"]["partition"], f["itemIdentifier"]["offset"]) for f in response["batchItemFailures"]}


def interleaved() -> list[Rec]:
    """Topics a, b, c, d, one record each in turn, so that every chunk holds every database."""
    return [rec(t, 0, o) for o in range(6) for t in "abcd"]


def test_each_topic_goes_to_its_statement_database_and_retention_policy(influx, dbs):
    default, db_a, db_b = dbs
    kcql = (f"INSERT INTO m SELECT * FROM a {TAGS} DATABASE {db_a};"
            f"INSERT INTO m SELECT * FROM b {TAGS};"
            f"INSERT INTO m SELECT * FROM c {TAGS} DATABASE {db_b} RETENTION POLICY week;"
            f"INSERT INTO m SELECT * FROM d {TAGS} RETENTION POLICY autogen DATABASE {db_b}")
    rt = build(env(influx.url, default, kcql, "THROW", CONNECT_INFLUX_BATCH_LINES="8"))
    result = run_batch(parse_event(build_event(interleaved())), rt.plan, rt.writer, "THROW")
    assert written(influx, db_a) == {("a", 0, o) for o in range(6)}
    assert written(influx, default) == {("b", 0, o) for o in range(6)}
    assert written(influx, db_b, '"week".m') == {("c", 0, o) for o in range(6)}
    assert written(influx, db_b, '"autogen".m') == {("d", 0, o) for o in range(6)}
    # 24 lines in chunks of 8: the event holds each topic's records together, so the chunks are
    # a+a+b+b... : one request per database present in each chunk, never one holding two databases.
    assert result.write_requests == 6


def test_a_statement_without_retention_policy_uses_its_database_default(influx, dbs):
    default, db_a, _ = dbs
    influx.query(f'CREATE RETENTION POLICY "short" ON "{db_a}" DURATION 2d REPLICATION 1 DEFAULT')
    rt = build(env(influx.url, default, f"INSERT INTO m SELECT * FROM a {TAGS} DATABASE {db_a}", "THROW",
                   CONNECT_INFLUX_RETENTION_POLICY="autogen"))
    run_batch(parse_event(build_event([rec("a", 0, 0)])), rt.plan, rt.writer, "THROW")
    assert written(influx, db_a, '"short".m') == {("a", 0, 0)}
    assert written(influx, db_a, '"autogen".m') == set()


def test_one_topic_into_two_databases(influx, dbs):
    default, db_a, db_b = dbs
    kcql = (f"INSERT INTO m SELECT * FROM a {TAGS} DATABASE {db_a};"
            f"INSERT INTO m SELECT * FROM a {TAGS} DATABASE {db_b}")
    rt = build(env(influx.url, default, kcql, "THROW"))
    result = run_batch(parse_event(build_event([rec("a", 0, o) for o in range(3)])), rt.plan, rt.writer, "THROW")
    assert written(influx, db_a) == written(influx, db_b) == {("a", 0, o) for o in range(3)}
    assert written(influx, default) == set() and result.write_requests == 2


def test_refused_points_in_one_database_under_retry(influx, dbs):
    """Database a refuses a's offset 2 (a string after floats): only a's partition goes back from 2."""
    default, db_a, _ = dbs
    kcql = f"INSERT INTO m SELECT * FROM a {TAGS} DATABASE {db_a}; INSERT INTO m SELECT * FROM b {TAGS}"
    records = [rec("a", 0, o, {"v": "text"} if o == 2 else None) for o in range(5)]
    records += [rec("b", 0, o) for o in range(5)]
    rt = build(env(influx.url, default, kcql, "RETRY"))
    result = run_batch(parse_event(build_event(records)), rt.plan, rt.writer, "RETRY")
    assert written(influx, db_a) == {("a", 0, o) for o in (0, 1, 3, 4)}  # sent with the refused one
    assert written(influx, default) == {("b", 0, o) for o in range(5)}
    assert reported(result.response) == {("a-0", o) for o in range(2, 5)}
    assert [(f.topic, f.offset, f.kind) for f in result.failures] == [("a", 2, "rejected")]


@pytest.mark.parametrize("policy", ["RETRY", "NOOP", "THROW"])
def test_a_missing_database_fails_its_requests_only_and_reports_exactly(influx, dbs, policy):
    """Statement b names a database that does not exist (404 from InfluxDB): in the first chunk,
    a's request (before it) is written; b's request and everything after it is not, and exactly
    those records are reported (RETRY), failed (NOOP) or named (THROW)."""
    default, db_a, _ = dbs
    kcql = (f"INSERT INTO m SELECT * FROM a {TAGS} DATABASE {db_a};"
            f"INSERT INTO m SELECT * FROM b {TAGS} DATABASE nowhere_{db_a}")
    records = [rec("a", 0, o) for o in range(3)] + [rec("b", 0, o) for o in range(3)]
    records += [rec("a", 1, o) for o in range(2)]
    rt = build(env(influx.url, default, kcql, policy, CONNECT_INFLUX_BATCH_LINES="100"))
    unwritten = {("b", 0, o) for o in range(3)}
    if policy == "THROW":
        with pytest.raises(BatchFailed) as err:
            run_batch(parse_event(build_event(records)), rt.plan, rt.writer, policy)
        failures = err.value.failures
    else:
        result = run_batch(parse_event(build_event(records)), rt.plan, rt.writer, policy)
        failures = result.failures
        if policy == "RETRY":
            assert reported(result.response) == {(f"{t}-{p}", o) for t, p, o in unwritten}
        else:
            assert result.response == {"batchItemFailures": []}
        assert result.write_requests == 2
    # One chunk: a-0's and a-1's lines are one request (database a), sent first; b's fails.
    # a-1's lines went with a-0's, so only b is unwritten.
    assert written(influx, db_a) == {("a", 0, o) for o in range(3)} | {("a", 1, o) for o in range(2)}
    assert {(f.topic, f.partition, f.offset) for f in failures} == {("b", 0, o) for o in range(3)}
    assert all(f.kind == "write" and "404" in f.reason for f in failures)


def test_a_missing_database_stops_later_chunks(influx, dbs):
    """With one line per request, the chunk after the failed one is not sent: its records are reported."""
    default, db_a, _ = dbs
    kcql = (f"INSERT INTO m SELECT * FROM a {TAGS} DATABASE {db_a};"
            f"INSERT INTO m SELECT * FROM b {TAGS} DATABASE nowhere_{db_a}")
    records = [rec("a", 0, 0), rec("b", 0, 0), rec("a", 1, 0)]
    rt = build(env(influx.url, default, kcql, "RETRY", CONNECT_INFLUX_BATCH_LINES="1"))
    result = run_batch(parse_event(build_event(records)), rt.plan, rt.writer, "RETRY")
    assert written(influx, db_a) == {("a", 0, 0)}
    assert reported(result.response) == {("b-0", 0), ("a-1", 0)}


def test_retention_policy_is_refused_for_2x_and_3x():
    kcql = "INSERT INTO m SELECT * FROM t DATABASE d RETENTION POLICY week"
    with pytest.raises(ConfigError, match=r"RETENTION POLICY applies to InfluxDB 1\.x only"):
        load({"CONNECT_INFLUX_URL": "http://h:8181", "CONNECT_INFLUX_VERSION": "3", "CONNECT_INFLUX_DB": "x",
              "CONNECT_INFLUX_KCQL": kcql})


def test_2x_statements_write_to_their_buckets(recording_proxy):  # noqa: F811 - the imported fixture
    """Through VictoriaMetrics' /api/v2/write: one request per bucket, the org unchanged."""
    import urllib.parse

    proxy, seen = recording_proxy
    kcql = f"INSERT INTO m SELECT * FROM a {TAGS} DATABASE bucket-a; INSERT INTO m SELECT * FROM b {TAGS}"
    rt = build(env(proxy, "", kcql, "THROW", CONNECT_INFLUX_VERSION="2", CONNECT_INFLUX_ORG="org",
                   CONNECT_INFLUX_BUCKET="main", CONNECT_INFLUX_TOKEN="tok"))
    run_batch(parse_event(build_event([rec("a", 0, 0), rec("b", 0, 0), rec("a", 0, 1)])), rt.plan, rt.writer,
              "THROW")
    got = [(urllib.parse.parse_qs(urllib.parse.urlsplit(r["path"]).query), r["body"].count(b"\n") + 1)
           for r in seen]
    assert [(q["bucket"], q["org"], n) for q, n in got] == [(["bucket-a"], ["org"], 2), (["main"], ["org"], 1)]


def test_3x_statements_write_to_their_databases():
    """Through the InfluxDB 3 stand-in (see tests/influxdb3_standin.py): one request per database."""
    from tests.influxdb3_standin import influx3

    with influx3() as server:
        kcql = f"INSERT INTO m SELECT * FROM a {TAGS} DATABASE plant_a; INSERT INTO m SELECT * FROM b {TAGS}"
        rt = build(env(server.url, "main", kcql, "NOOP", CONNECT_INFLUX_VERSION="3"))
        bad = rec("b", 0, 1, {"v": "text"})
        result = run_batch(parse_event(build_event([rec("a", 0, 0), rec("b", 0, 0), bad, rec("a", 0, 1)])),
                           rt.plan, rt.writer, "NOOP")
        assert [r.query["db"] for r in server.requests] == ["plant_a", "main"]
        assert len(server.lines("plant_a")) == 2 and len(server.lines("main")) == 1
        assert [(f.topic, f.offset, f.kind) for f in result.failures] == [("b", 1, "rejected")]


def test_array_values_and_line_protocol_values_route_each_statement_lines(influx, dbs):
    """A record giving several lines per statement (an array value; a line-protocol value) under two
    statements writing to different databases: each statement's lines go to its own database."""
    default, db_a, _ = dbs
    kcql = (f"INSERT INTO m SELECT * FROM arr WITHTAG(_offset) DATABASE {db_a};"
            "INSERT INTO n SELECT * FROM arr WITHTAG(_offset)")
    rt = build(env(influx.url, default, kcql, "THROW"))
    elements = [{"v": 1.5, "time_ms": 1}, {"v": 2.5}, {"v": 3.5}]
    event = build_event([Rec("arr", 0, o, json.dumps([{**e, "k": f"e{i}"} for i, e in enumerate(elements)]).encode(),
                             timestamp=NOW_MS + o) for o in range(2)])
    run_batch(parse_event(event), rt.plan, rt.writer, "THROW")
    assert len(query_points(influx, db_a, "SELECT * FROM m")) == 6
    assert query_points(influx, db_a, "SELECT * FROM n") == []
    assert len(query_points(influx, default, "SELECT * FROM n")) == 6
    assert query_points(influx, default, "SELECT * FROM m") == []

    lp_kcql = (f"INSERT INTO * SELECT * FROM lp DATABASE {db_a};"
               "INSERT INTO renamed SELECT * FROM lp")
    rt = build(env(influx.url, default, lp_kcql, "THROW", CONNECT_INFLUX_VALUE_FORMAT="lineprotocol"))
    t0 = NOW_MS * 1_000_000
    value = f"cpu,host=a u=1 {t0}\nmem,host=a used=2i {t0}\ndisk,host=a free=3i {t0}".encode()
    run_batch(parse_event(build_event([Rec("lp", 0, 0, value, timestamp=NOW_MS)])), rt.plan, rt.writer, "THROW")
    assert {r["_measurement"] for r in query_points(influx, db_a, "SELECT * FROM /.*/")} == {"m", "cpu", "mem", "disk"}
    rows = query_points(influx, default, "SELECT * FROM /.*/")
    assert {r["_measurement"] for r in rows} == {"n", "renamed"}
    # renamed, the three lines share series and time: one point holding the three fields
    (merged,) = [r for r in rows if r["_measurement"] == "renamed"]
    assert (merged["u"], merged["used"], merged["free"]) == (1.0, 2, 3)
