"""The original connector's quickstart exactly, through lambda_handler into a real InfluxDB.

Avro ``User`` schema registered in a registry, record produced with Confluent framing, KCQL
``INSERT INTO influxMeasure SELECT * FROM influx-topic WITHTIMESTAMP sys_time()``. Also the same
record through AWS Glue framing (moto), and the logical types as InfluxDB stores them.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from handler.app import lambda_handler
from influx_sink_tools.eventgen import Rec, build_event
from influx_sink_tools.framing import confluent_frame, glue_frame, write_body
from tests.conftest import field_types, query_points, tag_keys

pytest_plugins = ["tests.fixtures_registry"]
pytestmark = pytest.mark.influx

USER = {"type": "record", "name": "User",
        "fields": [{"name": "company", "type": "string"}, {"name": "address", "type": "string"},
                   {"name": "latitude", "type": "float"}, {"name": "longitude", "type": "float"}]}
RECORD = {"company": "DataMountaineer", "address": "MontainTop", "latitude": -49.817964, "longitude": -141.645812}
KCQL = "INSERT INTO influxMeasure SELECT * FROM influx-topic WITHTIMESTAMP sys_time()"
EXPECTED = {"company": "DataMountaineer", "address": "MontainTop",
            "latitude": -49.817962646484375, "longitude": -141.645812988281250}


def test_seed_quickstart_confluent_registry(sink_env, influx, db, registry):
    # What kafka-avro-console-producer does: register the value schema under <topic>-value,
    # then frame the Avro body with magic byte 0 and the returned id.
    schema_id = registry.register("influx-topic-value", USER)
    value = confluent_frame(schema_id, write_body(USER, RECORD))
    event = build_event([Rec("influx-topic", 0, 0, value)])
    sink_env(KCQL, CONNECT_INFLUX_SCHEMA_REGISTRY_URL=registry.url)
    before = time.time_ns()
    assert lambda_handler(event, None) == {"batchItemFailures": []}
    after = time.time_ns()

    (row,) = query_points(influx, db, "SELECT * FROM influxMeasure")
    assert {k: row[k] for k in EXPECTED} == EXPECTED
    assert set(row) == {*EXPECTED, "time", "_measurement"}
    assert before <= row["time"] <= after
    assert field_types(influx, db, "influxMeasure") == {
        "company": "string", "address": "string", "latitude": "float", "longitude": "float"}
    assert tag_keys(influx, db, "influxMeasure") == set()
    assert registry.requests == {f"/schemas/ids/{schema_id}": 1}


def test_seed_quickstart_glue_registry_zlib(sink_env, influx, db, glue):
    version_id = glue.register(USER)
    body = write_body(USER, RECORD)
    event = build_event([Rec("influx-topic", 0, 0, glue_frame(version_id, body)),
                         Rec("influx-topic", 0, 1, glue_frame(version_id, body, compress=True))])
    sink_env(KCQL)
    assert lambda_handler(event, None) == {"batchItemFailures": []}
    rows = query_points(influx, db, "SELECT * FROM influxMeasure")
    assert len(rows) == 2
    for row in rows:
        assert {k: row[k] for k in EXPECTED} == EXPECTED


LOGICAL = {"type": "record", "name": "Reading", "namespace": "io.example", "fields": [
    {"name": "sensor", "type": "string"},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "ts_us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "t_ms", "type": {"type": "int", "logicalType": "time-millis"}},
    {"name": "t_us", "type": {"type": "long", "logicalType": "time-micros"}},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
    {"name": "state", "type": {"type": "enum", "name": "State", "symbols": ["OK", "FAULT"]}},
    {"name": "note", "type": ["null", "string"], "default": None},
    {"name": "level", "type": ["null", "long", "double"]},
    {"name": "loc", "type": {"type": "record", "name": "Loc", "fields": [
        {"name": "lat", "type": "double"}, {"name": "tags", "type": {"type": "map", "values": "string"}}]}},
    {"name": "samples", "type": {"type": "array", "items": "float"}},
]}


def test_logical_types_in_influxdb(sink_env, influx, db, registry):
    import datetime as dt

    rec = {"sensor": "s1", "ts": 1_700_000_000_123, "ts_us": 1_700_000_000_123_456,
           "day": dt.date(2024, 2, 29), "t_ms": 3_723_004, "t_us": 3_723_004_005,
           "price": Decimal("1234.56"), "state": "FAULT", "note": None, "level": 7,
           "loc": {"lat": 1.5, "tags": {"site": "north"}}, "samples": [0.5, 0.25]}
    sid = registry.register("sensors-value", LOGICAL)
    event = build_event([Rec("sensors", 0, 0, confluent_frame(sid, write_body(LOGICAL, rec)))])
    sink_env("INSERT INTO readings SELECT * FROM sensors WITHTIMESTAMP ts_us WITHTAG(state)",
             CONNECT_INFLUX_SCHEMA_REGISTRY_URL=registry.url)
    assert lambda_handler(event, None) == {"batchItemFailures": []}
    (row,) = query_points(influx, db, "SELECT * FROM readings")
    assert row["time"] == 1_700_000_000_123_456_000  # timestamp-micros as the point time: exact µs
    assert row["ts"] == 1_700_000_000_123
    assert row["ts_us"] == 1_700_000_000_123  # as a field: epoch milliseconds
    assert row["day"] == 1_709_164_800_000
    assert row["t_ms"] == 3_723_004 and row["t_us"] == 3_723_004
    assert row["price"] == 1234.56
    assert row["state"] == "FAULT"
    assert row["level"] == 7 and row["loc_lat"] == 1.5 and row["loc_tags_site"] == "north"
    assert row["samples0"] == 0.5 and row["samples1"] == 0.25
    assert "note" not in row  # a null union branch writes nothing
    types = field_types(influx, db, "readings")
    assert types["ts"] == types["day"] == types["t_ms"] == types["level"] == "integer"
    assert types["price"] == "float"
    assert "note" not in types
    assert tag_keys(influx, db, "readings") == {"state"}
