"""A value that is a JSON array of objects: a point per element, against a real InfluxDB 1.x.

Elements that share series and time are one point in InfluxDB (the later fields win): the tests
show it and the metric that counts them. A bad element fails its whole record: none of the
record's points is written, and the error policy reports it like any failed record.
"""

from __future__ import annotations

import json

import pytest

from handler import app
from influx_sink_tools.eventgen import Rec, build_event
from tests.conftest import json_event, query_points

pytestmark = pytest.mark.influx

READINGS = [{"sensor": "s1", "ts": 1_700_000_000_000, "temp": 20.5},
            {"sensor": "s2", "ts": 1_700_000_000_000, "temp": 21.0, "hum": 40},
            {"sensor": "s1", "ts": 1_700_000_060_000, "temp": 20.7}]


def test_each_element_is_a_point(influx, db, sink_env):
    sink_env("INSERT INTO readings SELECT * FROM topic1 IGNORE sensor, ts WITHTAG(sensor, site=lab) WITHTIMESTAMP ts")
    assert app.lambda_handler(json_event([READINGS, {"sensor": "s3", "ts": 1_700_000_000_000, "temp": 5.0}]),
                              None) == {"batchItemFailures": []}
    rows = query_points(influx, db, 'SELECT * FROM "readings"')
    assert sorted((r["time"] // 1_000_000, r["sensor"], r["site"], r["temp"], r["hum"]) for r in rows) == [
        (1_700_000_000_000, "s1", "lab", 20.5, None), (1_700_000_000_000, "s2", "lab", 21.0, 40),
        (1_700_000_000_000, "s3", "lab", 5.0, None), (1_700_000_060_000, "s1", "lab", 20.7, None)]


def test_elements_on_one_series_and_time_are_one_point_and_are_counted(influx, db, sink_env, monkeypatch, capsys):
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    sink_env("INSERT INTO m SELECT * FROM topic1 WITHTIMESTAMP _timestamp")
    capsys.readouterr()
    # With the record's Kafka time, every element has the same time: without a tag, one series.
    value = [{"v": 1, "w": "first"}, {"v": 2}]
    assert app.lambda_handler(json_event([value], start_offset=7), None) == {"batchItemFailures": []}
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert docs[0]["PointsOverwrittenInRecord"] == [1.0] and docs[0]["PointsWritten"] == [2.0]
    rows = query_points(influx, db, 'SELECT * FROM "m"')
    assert [(r["v"], r["w"]) for r in rows] == [(2, "first")]  # merged: the later v, the earlier w


@pytest.mark.parametrize("policy", ["RETRY", "NOOP"])
def test_a_bad_element_fails_its_whole_record(influx, db, sink_env, caplog, policy):
    sink_env("INSERT INTO m SELECT * FROM t WITHTAG(_offset)", CONNECT_INFLUX_ERROR_POLICY=policy)
    values = [[{"v": 0}], [{"v": 1}, {"v": 1.5}, "oops"], [{"v": 2}]]
    event = build_event([Rec("t", 0, i, json.dumps(v).encode(), timestamp=i) for i, v in enumerate(values)])
    answer = app.lambda_handler(event, None)
    offsets = sorted(r["_offset"] for r in query_points(influx, db, 'SELECT * FROM "m"'))
    if policy == "RETRY":
        assert answer == {"batchItemFailures": [{"itemIdentifier": {"partition": "t-0", "offset": 1}},
                                                {"itemIdentifier": {"partition": "t-0", "offset": 2}}]}
        assert offsets == ["0"]
    else:
        assert answer == {"batchItemFailures": []}
        assert offsets == ["0", "2"]  # neither of offset 1's good elements
    assert ("topic=t partition=0 offset=1: array element 2 is the text 'oops', not an object: each element of an "
            "array value is one point") in caplog.text


def test_an_element_that_cannot_be_mapped_names_its_index(influx, db, sink_env, caplog):
    sink_env("INSERT INTO m SELECT v FROM topic1", CONNECT_INFLUX_ERROR_POLICY="NOOP")
    assert app.lambda_handler(json_event([[{"v": 1}, {"w": 2}], []]), None) == {"batchItemFailures": []}
    assert query_points(influx, db, 'SELECT * FROM "m"') == []  # an empty array has no points
    assert "offset=0: array element 1: selected field 'v' is missing" in caplog.text


def test_a_connect_envelope_holding_an_array(influx, db, sink_env):
    sink_env("INSERT INTO m SELECT * FROM topic1 WITHTIMESTAMP ts")
    envelope = {"schema": {"type": "array", "items": {"type": "struct", "fields": [
        {"field": "ts", "type": "int64"}, {"field": "v", "type": "double"}]}},
        "payload": [{"ts": 1_000, "v": 1}, {"ts": 2_000, "v": 2}]}
    assert app.lambda_handler(json_event([envelope]), None) == {"batchItemFailures": []}
    assert [(r["time"], r["v"]) for r in query_points(influx, db, 'SELECT * FROM "m"')] == [
        (1_000_000_000, 1.0), (2_000_000_000, 2.0)]
