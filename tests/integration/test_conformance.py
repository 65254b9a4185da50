"""Section 8 of kcql-mapping.md: every worked example, written to a real InfluxDB and read back."""

from __future__ import annotations

import time

import pytest

from handler.app import lambda_handler
from tests.conftest import field_types, json_event, query_points, tag_keys

P = {"_id": "580151bca6f3a2f0577baaac", "index": 0, "guid": "6f4dbd32-d325-4eb7-87f9-2e7fa6701cba",
     "isActive": False, "balance": 3589.15, "age": 27, "eyeColor": "brown", "name": "Clements Crane",
     "company": "TERRAGEN", "email": "clements.crane@terragen.io", "phone": "+1 (905) 514-3719",
     "address": "316 Hoyt Street, Welda, Puerto Rico, 1474", "latitude": "-49.817964",
     "longitude": "-141.645812"}
P_STRINGS = ["_id", "guid", "eyeColor", "name", "company", "email", "phone", "address", "latitude", "longitude"]
P_TYPES = {**{k: "string" for k in P_STRINGS}, "index": "integer", "age": "integer", "balance": "float",
           "isActive": "boolean"}

pytestmark = pytest.mark.influx


def run(sink_env, kcql, event):  # type: ignore[no-untyped-def]
    sink_env(kcql)
    assert lambda_handler(event, None) == {"batchItemFailures": []}


def test_select_star_writes_14_typed_fields_no_tags_time_now(sink_env, influx, db):
    before = time.time_ns()
    run(sink_env, "INSERT INTO measurement1 SELECT * FROM topic1", json_event([P]))
    after = time.time_ns()
    (row,) = query_points(influx, db, "SELECT * FROM measurement1")
    assert field_types(influx, db, "measurement1") == P_TYPES
    assert tag_keys(influx, db, "measurement1") == set()
    assert {k: row[k] for k in P} == P
    assert before <= row["time"] <= after


def test_withtag_path_and_constant(sink_env, influx, db):
    run(sink_env, "INSERT INTO measurement1 SELECT * FROM topic1 WITHTAG(eyeColor, c1=value1)", json_event([P]))
    assert field_types(influx, db, "measurement1") == P_TYPES
    assert tag_keys(influx, db, "measurement1") == {"eyeColor", "c1"}
    (row,) = query_points(influx, db, 'SELECT "c1", "eyeColor"::tag AS tagEye, "eyeColor"::field AS fieldEye '
                                      "FROM measurement1")
    assert (row["c1"], row["tagEye"], row["fieldEye"]) == ("value1", "brown", "brown")


def test_ignore_two_fields(sink_env, influx, db):
    run(sink_env, "INSERT INTO measurement1 SELECT * FROM topic1 IGNORE longitude, latitude", json_event([P]))
    types = field_types(influx, db, "measurement1")
    assert len(types) == 12
    assert "longitude" not in types and "latitude" not in types


def test_star_with_alias(sink_env, influx, db):
    run(sink_env, "INSERT INTO measurement1 SELECT *, name as this_is_renamed FROM topic1", json_event([P]))
    types = field_types(influx, db, "measurement1")
    assert len(types) == 14
    assert "name" not in types and types["this_is_renamed"] == "string"
    (row,) = query_points(influx, db, "SELECT this_is_renamed FROM measurement1")
    assert row["this_is_renamed"] == "Clements Crane"


def test_explicit_fields_with_tags(sink_env, influx, db):
    run(sink_env, "INSERT INTO measurement1 SELECT _id, name as this_is_renamed, email FROM topic1 "
                  "WITHTAG(age, eyeColor)", json_event([P]))
    assert field_types(influx, db, "measurement1") == {"_id": "string", "this_is_renamed": "string",
                                                        "email": "string"}
    (row,) = query_points(influx, db, "SELECT * FROM measurement1")
    assert (row["age"], row["eyeColor"]) == ("27", "brown")
    assert tag_keys(influx, db, "measurement1") == {"age", "eyeColor"}


def test_withtarget_and_tag_alias(sink_env, influx, db):
    run(sink_env, "INSERT INTO measurement1 SELECT _id, name as this_is_renamed, email FROM topic1 "
                  "WITHTARGET=company WITHTAG(age as AgeTag, eyeColor)", json_event([P]))
    assert query_points(influx, db, "SELECT * FROM measurement1") == []
    (row,) = query_points(influx, db, "SELECT * FROM TERRAGEN")
    assert tag_keys(influx, db, "TERRAGEN") == {"AgeTag", "eyeColor"}
    assert (row["AgeTag"], row["eyeColor"]) == ("27", "brown")
    assert set(field_types(influx, db, "TERRAGEN")) == {"_id", "this_is_renamed", "email"}


def test_withtimestamp_field_in_ms(sink_env, influx, db):
    run(sink_env, "INSERT INTO measurement1 SELECT * FROM topic1 WITHTIMESTAMP timestamp",
        json_event([{**P, "timestamp": 123456}]))
    types = field_types(influx, db, "measurement1")
    assert len(types) == 15 and types["timestamp"] == "integer"
    (row,) = query_points(influx, db, "SELECT * FROM measurement1")
    assert row["time"] == 123456 * 1_000_000
    assert row["timestamp"] == 123456


def test_key_star_with_ignore(sink_env, influx, db):
    key = {"_id": "580151bca6f3a2f0577baaac", "index": 0, "guid": "x"}
    run(sink_env, "INSERT INTO measurement1 SELECT _key.* FROM topic1 IGNORE index",
        json_event([{}], keys=[key]))
    assert field_types(influx, db, "measurement1") == {"_id": "string", "guid": "string"}
    (row,) = query_points(influx, db, "SELECT * FROM measurement1")
    assert (row["_id"], row["guid"]) == ("580151bca6f3a2f0577baaac", "x")


def test_key_path_and_value_path_with_same_name(sink_env, influx, db):
    run(sink_env, "INSERT INTO measurement1 SELECT _key._id, index FROM topic1",
        json_event([{"_id": "v", "index": 0}], keys=[{"_id": "k"}]))
    (row,) = query_points(influx, db, "SELECT * FROM measurement1")
    assert field_types(influx, db, "measurement1") == {"_id": "string", "index": "integer"}
    assert (row["_id"], row["index"]) == ("k", 0)


def test_array_of_floats_is_flattened(sink_env, influx, db):
    # The contract's example is an Avro record; the JSON form must give the same point.
    run(sink_env, "INSERT INTO measurement1 SELECT * FROM topic1",
        json_event([{"name": "Array with floats", "array": [1.0, 2.0, 3.0]}]))
    (row,) = query_points(influx, db, "SELECT * FROM measurement1")
    assert field_types(influx, db, "measurement1") == {"name": "string", "array0": "float", "array1": "float",
                                                        "array2": "float"}
    assert (row["array0"], row["array1"], row["array2"]) == (1.0, 2.0, 3.0)


def test_seed_quickstart_as_json(sink_env, influx, db):
    run(sink_env, "INSERT INTO influxMeasure SELECT * FROM influx-topic WITHTIMESTAMP sys_time()",
        json_event([{"company": "DataMountaineer", "address": "MontainTop", "latitude": -49.817964,
                     "longitude": -141.645812}], topic="influx-topic"))
    (row,) = query_points(influx, db, "SELECT * FROM influxMeasure")
    assert {k: row[k] for k in ("company", "address", "latitude", "longitude")} == {
        "company": "DataMountaineer", "address": "MontainTop", "latitude": -49.817964, "longitude": -141.645812}
