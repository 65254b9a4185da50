"""Line-protocol topics (``connect.influx.value.format=lineprotocol``) against a real InfluxDB 1.x.

What the sink writes for a line-protocol value is compared with what InfluxDB stores when the
same text is written to it directly: the same series, fields, field types, values and times.
Malformed lines fail their record, under each error policy, and nothing else.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from handler import app
from handler.errors import BatchFailed, ConfigError
from influx_sink_tools import local_influxdb
from influx_sink_tools.eventgen import Rec, build_event
from tests.conftest import query_points
from tests.unit.test_lineproto_parse import documents

pytestmark = pytest.mark.influx
PASSTHROUGH = "INSERT INTO * SELECT * FROM telegraf"
KAFKA_MS = 1_700_000_000_000
_dbs = itertools.count()

TELEGRAF = [
    b"# telegraf, influx serializer\n"
    b"cpu,cpu=cpu-total,host=web\\ 1 usage_idle=97.2,usage_user=1.9,usage_system=0.9 1700000000000000000\n"
    b"mem,host=web\\ 1 used=8123456512i,available_percent=51.5,swap_in=0u 1700000000000000000\n",
    b"disk,device=sda1,host=web\\ 1,path=/var/lib fs_ok=true,inodes_used=1024i 1700000001000000000\r\n"
    b'syslog,appname=cron,host=web\\ 1 message="(root) CMD (run-parts \\"/etc/cron.hourly\\")",severity_code=6i '
    b"1700000001000000000\r\n"
    b"\r\n",
]


def event(values: list[bytes | None], topic: str = "telegraf", partition: int = 0) -> dict[str, Any]:
    return build_event([Rec(topic, partition, i, v, timestamp=KAFKA_MS + i) for i, v in enumerate(values)])


def write_direct(influx: local_influxdb.InfluxServer, db: str, text: bytes) -> tuple[int, bytes]:
    return influx._request("/write", {"db": db, "precision": "ns"}, data=text)


def stored(influx: local_influxdb.InfluxServer, db: str) -> dict[str, Any]:
    """Everything a database holds: series, field keys and types, and every row (ns times)."""
    def q(text: str) -> Any:
        return influx.query(text, db=db)["results"][0].get("series", [])
    return {"series": q("SHOW SERIES"), "fields": q("SHOW FIELD KEYS"), "rows": q('SELECT * FROM /.*/')}


def new_db(influx: local_influxdb.InfluxServer) -> str:
    name = f"lptopics{os.getpid()}_{next(_dbs)}"  # a prefix of its own: other modules count from 0 too
    influx.query(f'CREATE DATABASE "{name}"')
    return name


def test_a_telegraf_batch_is_stored_as_writing_it_directly_stores_it(influx, db, sink_env):
    sink_env(PASSTHROUGH, CONNECT_INFLUX_VALUE_FORMAT="lineprotocol")
    # swap_in=0u: InfluxDB 1.x refuses unsigned integers; without it both ways store the same.
    values = [TELEGRAF[0].replace(b",swap_in=0u", b""), TELEGRAF[1]]
    assert app.lambda_handler(event(values), None) == {"batchItemFailures": []}
    direct = new_db(influx)
    assert write_direct(influx, direct, b"".join(values).replace(b"\r\n", b"\n"))[0] == 204  # 1.x refuses CRLF
    assert stored(influx, db) == stored(influx, direct)
    rows = query_points(influx, db, 'SELECT * FROM "syslog"')
    assert rows[0]["message"] == '(root) CMD (run-parts "/etc/cron.hourly")' and rows[0]["host"] == "web 1"
    assert {r["_measurement"] for r in query_points(influx, db, "SELECT * FROM /.*/")} == {"cpu", "mem", "disk",
                                                                                          "syslog"}


@settings(max_examples=30, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
@given(doc=documents(unsigned=False, timeless=False, lenient=False))
def test_random_valid_lines_are_stored_as_written_directly(influx, sink_env, monkeypatch, doc):
    text, expected = doc
    through, direct = new_db(influx), new_db(influx)
    sink_env(PASSTHROUGH, CONNECT_INFLUX_VALUE_FORMAT="lineprotocol")
    monkeypatch.setenv("CONNECT_INFLUX_DB", through)
    app.reset_runtime()
    assert app.lambda_handler(event([text.encode()]), None) == {"batchItemFailures": []}
    try:
        status, body = write_direct(influx, direct, text.encode())
        assert status == 204, body
        got = stored(influx, through)
        assert got["series"] and got == stored(influx, direct)
        # Every series is there (a query may not return some names, as for a direct write: '="').
        assert len(got["series"][0]["values"]) == len({(p.measurement, tuple(sorted(p.tags))) for p in expected})
    finally:
        for name in (through, direct):
            influx.query(f'DROP DATABASE "{name}"')


def test_lines_without_time_take_the_kafka_time_so_redelivery_overwrites(influx, db, sink_env):
    sink_env(PASSTHROUGH, CONNECT_INFLUX_VALUE_FORMAT="lineprotocol")
    batch = event([b"sensor,room=a temp=20.5\nsensor,room=b temp=21.5\n", b"sensor,room=a temp=20.7"])
    for _ in range(2):  # a redelivered batch
        assert app.lambda_handler(batch, None) == {"batchItemFailures": []}
    rows = query_points(influx, db, 'SELECT * FROM "sensor" GROUP BY *')
    assert sorted((r["time"], r["temp"]) for r in rows) == [
        (KAFKA_MS * 1_000_000, 20.5), (KAFKA_MS * 1_000_000, 21.5), ((KAFKA_MS + 1) * 1_000_000, 20.7)]


def test_rename_ignore_and_constant_tags(influx, db, sink_env):
    sink_env("INSERT INTO metrics SELECT * FROM telegraf IGNORE usage_system WITHTAG(env=prod, host=other, _topic)",
             CONNECT_INFLUX_VALUE_FORMAT="lineprotocol")
    assert app.lambda_handler(event([TELEGRAF[0].replace(b",swap_in=0u", b"")]), None) == {"batchItemFailures": []}
    rows = query_points(influx, db, 'SELECT * FROM "metrics"')
    assert len(rows) == 2
    assert {(r["host"], r["env"], r["_topic"]) for r in rows} == {("web 1", "prod", "telegraf")}  # own host kept
    assert all("usage_system" not in r or r["usage_system"] is None for r in rows)
    assert rows[0]["usage_idle"] == 97.2 or rows[1]["usage_idle"] == 97.2


BAD = b"good,n=1 v=1i 1700000000000000000\nbad,n=2 v=NaN 1700000000000000000\n"


@pytest.mark.parametrize("policy", ["RETRY", "NOOP"])
def test_a_malformed_line_fails_its_record_whole(influx, db, sink_env, caplog, policy):
    sink_env(PASSTHROUGH, CONNECT_INFLUX_VALUE_FORMAT="lineprotocol", CONNECT_INFLUX_ERROR_POLICY=policy)
    values = [b"ok,n=0 v=0i 1700000000000000000", BAD, b"ok,n=2 v=2i 1700000000000000000"]
    answer = app.lambda_handler(event(values), None)
    written = {(r["_measurement"], r["n"]) for r in query_points(influx, db, "SELECT * FROM /.*/")}
    if policy == "RETRY":
        assert answer == {"batchItemFailures": [{"itemIdentifier": {"partition": "telegraf-0", "offset": 1}},
                                                {"itemIdentifier": {"partition": "telegraf-0", "offset": 2}}]}
        assert written == {("ok", "0")}
    else:
        assert answer == {"batchItemFailures": []}
        assert written == {("ok", "0"), ("ok", "2")}  # not even the record's good first line
    assert ("topic=telegraf partition=0 offset=1: line 2 is not valid line protocol: 'NaN' is not a field value "
            "(a number, a boolean or a \"string\") (column 11): 'bad,n=2 v=NaN 1700000000000000000'") in caplog.text


def test_throw_writes_nothing(influx, db, sink_env):
    sink_env(PASSTHROUGH, CONNECT_INFLUX_VALUE_FORMAT="lineprotocol")
    with pytest.raises(BatchFailed, match="offset=1: line 2 is not valid line protocol"):
        app.lambda_handler(event([b"ok v=1", BAD]), None)
    assert query_points(influx, db, "SELECT * FROM /.*/") == []


def test_nothing_is_injected(influx, db, sink_env):
    """A string field may hold a newline and what looks like a line: it stays the string's text."""
    sink_env(PASSTHROUGH, CONNECT_INFLUX_VALUE_FORMAT="lineprotocol")
    value = b'log msg="first\nevil,host=x v=1 1\n\\" end" 1700000000000000000'
    assert app.lambda_handler(event([value]), None) == {"batchItemFailures": []}
    rows = query_points(influx, db, "SELECT * FROM /.*/")
    assert [(r["_measurement"], r["msg"]) for r in rows] == [("log", 'first\nevil,host=x v=1 1\n" end')]


def test_unsigned_fields_are_refused_by_influxdb_1x_for_their_record_only(influx, db, sink_env, caplog):
    sink_env(PASSTHROUGH, CONNECT_INFLUX_VALUE_FORMAT="lineprotocol", CONNECT_INFLUX_ERROR_POLICY="NOOP")
    assert app.lambda_handler(event([b"a v=1u 5", b"b v=1i 5"]), None) == {"batchItemFailures": []}
    assert [r["_measurement"] for r in query_points(influx, db, "SELECT * FROM /.*/")] == ["b"]
    assert "offset=0: InfluxDB rejected the point" in caplog.text


def test_a_json_statement_cannot_keep_measurements(sink_env):
    sink_env(PASSTHROUGH)
    with pytest.raises(ConfigError, match="INSERT INTO \\* keeps the measurement of each line"):
        app.lambda_handler(event([b'{"v": 1}']), None)


def test_points_of_one_record_on_one_series_and_time_are_counted(sink_env, monkeypatch, capsys):
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    sink_env(PASSTHROUGH, CONNECT_INFLUX_VALUE_FORMAT="lineprotocol")
    capsys.readouterr()
    app.lambda_handler(event([b"m,h=a v=1 5\nm,h=a w=2 5\nm,h=b v=1 5"]), None)
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert docs[0]["PointsOverwrittenInRecord"] == [1.0] and docs[0]["PointsWritten"] == [3.0]



def test_a_line_influxdb_refuses_fails_its_record_and_the_rest_of_the_request_is_stored(influx, db, sink_env,
                                                                                         caplog):
    """InfluxDB 1.x stores the other points of a request with a refused one: the record's other
    lines are stored, the record is reported, and a redelivery writes them again at their times."""
    sink_env(PASSTHROUGH, CONNECT_INFLUX_VALUE_FORMAT="lineprotocol", CONNECT_INFLUX_ERROR_POLICY="RETRY")
    batch = event([b"a v=1i 5\nb v=1u 5\nc v=1i 5"])
    for _ in range(2):
        assert app.lambda_handler(batch, None) == {
            "batchItemFailures": [{"itemIdentifier": {"partition": "telegraf-0", "offset": 0}}]}
    assert sorted((r["_measurement"], r["time"]) for r in query_points(influx, db, "SELECT * FROM /.*/")) == [
        ("a", 5), ("c", 5)]
    assert "offset=0: InfluxDB rejected the point" in caplog.text
