"""Kafka Connect JsonConverter envelopes: the declared types win over the JSON values' own."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from handler.app import lambda_handler
from handler.decode import Decoder
from handler.errors import RecordError
from handler.records import KafkaRecord
from tests._lines import point_of
from tests.conftest import field_types, json_event, query_points


def decode(doc: Any) -> Any:
    data = json.dumps(doc).encode()
    return Decoder().value(KafkaRecord("t", 0, 0, 0, None, base64.b64encode(data).decode()))


def struct(*fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "struct", "name": "R", "optional": False, "fields": list(fields)}


def f(fname: str, type_: str, **extra: Any) -> dict[str, Any]:
    return {"field": fname, "type": type_, "optional": True, **extra}


def test_declared_number_types_win():
    doc = {"schema": struct(f("d", "double"), f("fl", "float"), f("i8", "int8"), f("i64", "int64"),
                            f("b", "boolean"), f("s", "string")),
           "payload": {"d": 1, "fl": 2, "i8": 3.0, "i64": 9007199254740993, "b": True, "s": "x"}}
    value = decode(doc)
    assert value == {"d": 1.0, "fl": 2.0, "i8": 3, "i64": 9007199254740993, "b": True, "s": "x"}
    assert [type(value[k]) for k in ("d", "fl", "i8", "i64")] == [float, float, int, int]


def test_logical_types():
    dec = {"name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "2"}}
    doc = {"schema": struct(
        f("price", "bytes", **dec),
        f("price_numeric", "bytes", **dec),
        f("at", "int64", name="org.apache.kafka.connect.data.Timestamp"),
        f("day", "int32", name="org.apache.kafka.connect.data.Date"),
        f("clock", "int32", name="org.apache.kafka.connect.data.Time")),
        "payload": {"price": base64.b64encode((-123456).to_bytes(3, "big", signed=True)).decode(),
                    "price_numeric": 12.5, "at": 1_700_000_000_123, "day": 19_782, "clock": 3_723_004}}
    assert decode(doc) == {"price": -1234.56, "price_numeric": 12.5, "at": 1_700_000_000_123,
                           "day": 1_709_164_800_000, "clock": 3_723_004}


def test_string_schema_with_json_text_is_parsed_again_but_nested_strings_stay():
    assert decode({"schema": {"type": "string", "optional": False},
                   "payload": ' {"device": "d", "t": 21.5}'}) == {"device": "d", "t": 21.5}
    assert decode({"schema": {"type": "string"}, "payload": "plain text"}) == "plain text"
    assert decode({"schema": struct(f("raw", "string")), "payload": {"raw": '{"a": 1}'}}) == {"raw": '{"a": 1}'}


def test_nested_arrays_maps_optional_and_defaults():
    doc = {"schema": struct(
        f("loc", "struct", fields=[f("lat", "double"), f("lon", "double")]),
        f("tags", "map", keys={"type": "string"}, values={"type": "int32"}),
        f("ids", "map", keys={"type": "int32"}, values={"type": "double"}),
        f("xs", "array", items={"type": "double"}),
        f("missing", "int32"),
        f("dflt", "int32", default=5)),
        "payload": {"loc": {"lat": 1, "lon": 2}, "tags": {"a": 1}, "ids": [[1, 2], [3, 4]], "xs": [1, 2]}}
    assert decode(doc) == {"loc": {"lat": 1.0, "lon": 2.0}, "tags": {"a": 1}, "ids": {"1": 2.0, "3": 4.0},
                           "xs": [1.0, 2.0], "missing": None, "dflt": 5}


def test_schemaless_envelope_and_ordinary_documents():
    assert decode({"schema": None, "payload": {"a": 1}}) == {"a": 1}
    assert decode({"schema": "v1", "payload": {"a": 1}}) == {"schema": "v1", "payload": {"a": 1}}
    assert decode({"schema": {}, "payload": 3, "extra": 1}) == {"schema": {}, "payload": 3, "extra": 1}


@pytest.mark.parametrize(("field", "payload", "reason"), [
    (f("n", "int32"), "12", "'12' at 'n' is not an int32"),
    (f("n", "int32"), 1.5, "1.5 at 'n' is not an int32"),
    (f("d", "double"), True, "True at 'd' is not a double"),
    (f("b", "boolean"), 1, "1 at 'b' is not a boolean"),
    (f("s", "string"), 5, "5 at 's' is not a string"),
    (f("r", "bytes"), "***", "bytes at 'r' are not valid base64"),
    (f("st", "struct", fields=[f("x", "int8")]), [1], "struct at 'st' is a list"),
    (f("xs", "array", items={"type": "int8"}), [1, "a"], "'a' at 'xs[1]' is not an int8"),
])
def test_mismatches_are_decode_errors(field, payload, reason):
    with pytest.raises(RecordError) as info:
        decode({"schema": struct(field), "payload": {field["field"]: payload}})
    assert info.value.kind == "decode"
    assert info.value.reason == f"value does not match its Connect schema: {reason}"


def test_plain_bytes_fail_only_when_written():
    from handler.mapping import Plan
    from kcql import parse

    data = json.dumps({"schema": struct(f("raw", "bytes"), f("n", "int32")),
                       "payload": {"raw": "AQI=", "n": 1}}).encode()
    record = KafkaRecord("t", 0, 0, 0, None, base64.b64encode(data).decode())
    plan = Plan(parse("INSERT INTO m SELECT * FROM t IGNORE raw"), Decoder())
    assert point_of(plan.lines(record)[0]).fields == {"n": 1}
    with pytest.raises(RecordError, match="bytes cannot be written"):
        Plan(parse("INSERT INTO m SELECT * FROM t"), Decoder()).lines(record)


@pytest.mark.influx
def test_double_written_as_integer_stays_a_float_in_influxdb(sink_env, influx, db):
    schema = struct(f("reading", "double"), f("count", "int64"))
    values = [{"schema": schema, "payload": {"reading": 1, "count": 1}},
              {"schema": schema, "payload": {"reading": 1.5, "count": 2}}]
    sink_env("INSERT INTO m SELECT * FROM topic1 WITHTIMESTAMP _offset TIMESTAMPUNIT=SECONDS")
    assert lambda_handler(json_event(values), None) == {"batchItemFailures": []}
    assert field_types(influx, db, "m") == {"reading": "float", "count": "integer"}
    assert [r["reading"] for r in query_points(influx, db, "SELECT reading FROM m")] == [1.0, 1.5]
