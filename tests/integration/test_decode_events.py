"""The sample events in events/payload-*.json, run as docs/payloads.md says, into a real InfluxDB."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest

from handler.app import lambda_handler
from tests.conftest import ROOT, field_types, query_points

pytest_plugins = ["tests.fixtures_registry"]
pytestmark = pytest.mark.influx

EVENTS = ROOT / "events"
SCHEMAS = EVENTS / "schemas"
GLUE_SAMPLE_VERSION_ID = "0b0d1d2c-7a4e-4c3b-9a51-1f0d3e6c2a10"
COVERED = {"payload-avro-confluent.json", "payload-avro-glue.json", "payload-avro-unframed.json",
           "payload-connect-json.json", "payload-connect-string.json", "payload-esm-json.json"}
USER_ROW = {"company": "DataMountaineer", "address": "MontainTop", "latitude": -49.817962646484375,
            "longitude": -141.64581298828125}


def load(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def schema_text(name: str) -> str:
    return (SCHEMAS / name).read_text()


def test_every_sample_event_is_covered():
    assert {p.name for p in EVENTS.glob("payload-*.json")} == COVERED
    assert {p.name for p in SCHEMAS.glob("*.avsc")} == {"user.avsc", "reading.avsc"}


def test_avro_confluent(sink_env, influx, db, registry):
    assert registry.register("influx-topic-value", schema_text("user.avsc")) == 1  # the id the sample carries
    sink_env("INSERT INTO influxMeasure SELECT * FROM influx-topic WITHTIMESTAMP sys_time()",
             CONNECT_INFLUX_SCHEMA_REGISTRY_URL=registry.url)
    assert lambda_handler(load("payload-avro-confluent.json"), None) == {"batchItemFailures": []}
    (row,) = query_points(influx, db, "SELECT * FROM influxMeasure")
    assert {k: row[k] for k in USER_ROW} == USER_ROW


def test_avro_glue(sink_env, influx, db, glue):
    version_id = glue.register(schema_text("reading.avsc"))
    event = load("payload-avro-glue.json")
    # Glue assigns version ids: put ours where the sample's placeholder is (what docs/payloads.md says).
    for rec in event["records"]["sensors-0"]:
        raw = bytearray(base64.b64decode(rec["value"]))
        assert bytes(raw[2:18]) == uuid.UUID(GLUE_SAMPLE_VERSION_ID).bytes
        raw[2:18] = uuid.UUID(version_id).bytes
        rec["value"] = base64.b64encode(bytes(raw)).decode()
    sink_env("INSERT INTO readings SELECT * FROM sensors WITHTIMESTAMP ts WITHTAG(_key AS sensor_key, state)")
    assert lambda_handler(event, None) == {"batchItemFailures": []}
    rows = query_points(influx, db, "SELECT * FROM readings")
    assert [(r["time"], r["state"], r["sensor_key"]) for r in rows] == [
        (1_700_000_000_123_000_000, "OK", "s-1"), (1_700_000_060_123_000_000, "FAULT", "s-1")]
    first = rows[0]
    assert (first["price"], first["day"], first["level"], first["location_lat"], first["samples1"]) == (
        1234.56, 1_709_164_800_000, 0.75, 51.5, 2.5)
    assert rows[1]["level"] is None  # null in the second reading: left out
    assert field_types(influx, db, "readings")["ts"] == "integer"


def test_avro_unframed(sink_env, influx, db):
    sink_env("INSERT INTO influxMeasure SELECT * FROM influx-topic",
             CONNECT_INFLUX_VALUE_AVRO_SCHEMA=str(SCHEMAS / "user.avsc"))
    assert lambda_handler(load("payload-avro-unframed.json"), None) == {"batchItemFailures": []}
    (row,) = query_points(influx, db, "SELECT * FROM influxMeasure")
    assert {k: row[k] for k in USER_ROW} == USER_ROW


def test_connect_json(sink_env, influx, db):
    sink_env("INSERT INTO trades SELECT * FROM trades WITHTIMESTAMP traded_at WITHTAG(_key AS symbol_key)")
    assert lambda_handler(load("payload-connect-json.json"), None) == {"batchItemFailures": []}
    (row,) = query_points(influx, db, "SELECT * FROM trades")
    assert row["time"] == 1_700_000_000_123_000_000
    assert (row["symbol"], row["price"], row["qty"], row["fee"], row["trade_date"], row["symbol_key"]) == (
        "ACME", 101.0, 5, 12.34, 1_709_164_800_000, "ACME")
    assert field_types(influx, db, "trades")["price"] == "float"  # declared double, written as 101


def test_connect_string(sink_env, influx, db):
    sink_env("INSERT INTO devices SELECT * FROM devices WITHTAG(device)")
    assert lambda_handler(load("payload-connect-string.json"), None) == {"batchItemFailures": []}
    (row,) = query_points(influx, db, "SELECT * FROM devices")
    assert (row["device"], row["temperature"], row["humidity"]) == ("d-7", 21.5, 40)


def test_esm_json(sink_env, influx, db):
    sink_env("INSERT INTO influxMeasure SELECT * FROM influx-topic")
    assert lambda_handler(load("payload-esm-json.json"), None) == {"batchItemFailures": []}
    (row,) = query_points(influx, db, "SELECT * FROM influxMeasure")
    assert row["latitude"] == -49.817964  # JSON numbers: no Avro float widening


def test_frame_cli_rebuilds_the_samples(capsys):
    from influx_sink_tools import framing as frame

    user = json.dumps({"company": "DataMountaineer", "address": "MontainTop", "latitude": -49.817964,
                       "longitude": -141.645812})
    frame.main(["confluent", "--id", "1", "--schema", str(SCHEMAS / "user.avsc"), user])
    frame.main(["avro", "--schema", str(SCHEMAS / "user.avsc"), user])
    reading = json.dumps({"sensor": "s-1", "ts": 1700000000123, "day": "2024-02-29", "price": "1234.56",
                          "state": "OK", "level": 0.75, "location": {"lat": 51.5, "lon": -0.12},
                          "samples": [1.0, 2.5]})
    frame.main(["glue", "--version-id", GLUE_SAMPLE_VERSION_ID, "--schema", str(SCHEMAS / "reading.avsc"), reading])
    confluent, unframed, glue_value = capsys.readouterr().out.split()
    assert confluent == load("payload-avro-confluent.json")["records"]["influx-topic-0"][0]["value"]
    assert unframed == load("payload-avro-unframed.json")["records"]["influx-topic-0"][0]["value"]
    assert glue_value == load("payload-avro-glue.json")["records"]["sensors-0"][0]["value"]
