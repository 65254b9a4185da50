"""Avro payloads: Confluent and Glue framing, unframed schemas, type mapping, corrupt payloads."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest

from handler.decode import Decoder
from handler.errors import ConfigError, RecordError
from handler.mapping import Plan
from handler.records import KafkaRecord
from influx_sink_tools.framing import confluent_frame, glue_frame, write_body
from kcql import parse
from tests._lines import point_of

pytest_plugins = ["tests.fixtures_registry"]

USER = {"type": "record", "name": "User",
        "fields": [{"name": "company", "type": "string"}, {"name": "address", "type": "string"},
                   {"name": "latitude", "type": "float"}, {"name": "longitude", "type": "float"}]}
RECORD = {"company": "DataMountaineer", "address": "MontainTop", "latitude": -49.817964, "longitude": -141.645812}
WIDENED = {**RECORD, "latitude": -49.817962646484375, "longitude": -141.64581298828125}


def rec(value: bytes | None, key: bytes | None = None, *, topic: str = "t", offset: int = 0,
        meta: Any = None, key_meta: Any = None) -> KafkaRecord:
    b64 = lambda b: None if b is None else base64.b64encode(b).decode()
    return KafkaRecord(topic, 0, offset, 0, b64(key), b64(value), None, meta, key_meta)


def field(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def one_field(type_: Any) -> dict[str, Any]:
    return {"type": "record", "name": "R", "fields": [field("f", type_)]}


# ---------------------------------------------------------------- Confluent framing


def test_confluent_user_widens_avro_floats(registry):
    sid = registry.register("t-value", USER)
    d = Decoder(registry_url=registry.url)
    assert d.value(rec(confluent_frame(sid, write_body(USER, RECORD)))) == WIDENED


LOGICAL_CASES = [
    ({"type": "long", "logicalType": "timestamp-millis"}, 1_700_000_000_123, 1_700_000_000_123),
    ({"type": "long", "logicalType": "local-timestamp-millis"}, 1_700_000_000_123, 1_700_000_000_123),
    ({"type": "long", "logicalType": "timestamp-micros"}, 1_700_000_000_123_456,
     dt.datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=dt.UTC)),
    ({"type": "long", "logicalType": "local-timestamp-micros"}, 1_700_000_000_123_456,
     dt.datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=dt.UTC)),
    ({"type": "int", "logicalType": "date"}, 19_782, dt.date(2024, 2, 29)),
    ({"type": "int", "logicalType": "time-millis"}, 3_723_004, 3_723_004),
    ({"type": "long", "logicalType": "time-micros"}, 3_723_004_005, dt.time(1, 2, 3, 4005)),
    ({"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}, Decimal("-1234.56"),
     Decimal("-1234.56")),
    ({"type": "fixed", "name": "D", "size": 8, "logicalType": "decimal", "precision": 12, "scale": 3},
     Decimal("42.125"), Decimal("42.125")),
    ({"type": "string", "logicalType": "uuid"}, "6f4dbd32-d325-4eb7-87f9-2e7fa6701cba",
     "6f4dbd32-d325-4eb7-87f9-2e7fa6701cba"),
    ({"type": "enum", "name": "E", "symbols": ["OK", "FAULT"]}, "FAULT", "FAULT"),
    (["null", "string"], None, None),
    (["null", "long", "double"], 2.5, 2.5),
    (["null", {"type": "record", "name": "In", "fields": [field("x", "int")]}], {"x": 1}, {"x": 1}),
    ({"type": "map", "values": ["null", "int"]}, {"a": 1, "b": None}, {"a": 1, "b": None}),
    ({"type": "array", "items": "double"}, [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]),
]


@pytest.mark.parametrize(("type_", "written", "decoded"), LOGICAL_CASES,
                         ids=[json.dumps(c[0])[:60] for c in LOGICAL_CASES])
def test_types_decode_as_the_mapping_stage_expects(registry, type_, written, decoded):
    schema = one_field(type_)
    sid = registry.register("t-value", schema)
    value = Decoder(registry_url=registry.url).value(rec(confluent_frame(sid, write_body(schema, {"f": written}))))
    assert value == {"f": decoded}
    assert type(value["f"]) is type(decoded)


def _points(decoder: Decoder, kcql: str, record: KafkaRecord) -> list[Any]:
    return [point_of(line) for line in Plan(parse(kcql), decoder).lines(record)]


def test_logical_types_become_section_4_fields(registry):
    schema = {"type": "record", "name": "R", "fields": [
        field("ts", {"type": "long", "logicalType": "timestamp-micros"}),
        field("day", {"type": "int", "logicalType": "date"}),
        field("tm", {"type": "long", "logicalType": "time-micros"}),
        field("price", {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}),
        field("id", {"type": "string", "logicalType": "uuid"}),
        field("arr", {"type": "array", "items": "float"}),
        field("nested", {"type": "record", "name": "N", "fields": [field("a", "int")]})]}
    sid = registry.register("t-value", schema)
    value = {"ts": 1_700_000_000_123_456, "day": dt.date(1970, 1, 2), "tm": 1_500, "price": Decimal("9.99"),
             "id": str(uuid.UUID(int=1)), "arr": [1.0, 2.0, 3.0], "nested": {"a": 7}}
    (point,) = _points(Decoder(registry_url=registry.url), "INSERT INTO m SELECT * FROM t WITHTIMESTAMP ts",
                       rec(confluent_frame(sid, write_body(schema, value))))
    assert point.fields == {"ts": 1_700_000_000_123, "day": 86_400_000, "tm": 1, "price": 9.99,
                            "id": "00000000-0000-0000-0000-000000000001", "arr0": 1.0, "arr1": 2.0, "arr2": 3.0,
                            "nested_a": 7}
    assert point.time_ns == 1_700_000_000_123_456_000


@pytest.mark.parametrize("type_", [{"type": "fixed", "name": "F", "size": 2}, "bytes"])
def test_bytes_and_fixed_fail_the_record_only_when_written(registry, type_):
    schema = {"type": "record", "name": "R", "fields": [field("raw", type_), field("n", "int")]}
    sid = registry.register("t-value", schema)
    record = rec(confluent_frame(sid, write_body(schema, {"raw": b"\x01\x02", "n": 3})))
    d = Decoder(registry_url=registry.url)
    with pytest.raises(RecordError, match="'raw': bytes cannot be written"):
        _points(d, "INSERT INTO m SELECT * FROM t", record)
    (point,) = _points(d, "INSERT INTO m SELECT * FROM t IGNORE raw", record)
    assert point.fields == {"n": 3}


# ---------------------------------------------------------------- corrupt, truncated, unknown


def _decode_error(decoder: Decoder, value: bytes) -> RecordError:
    with pytest.raises(RecordError) as info:
        decoder.value(rec(value))
    assert info.value.kind == "decode"
    return info.value


def test_truncated_body(registry):
    sid = registry.register("t-value", USER)
    body = write_body(USER, RECORD)
    err = _decode_error(Decoder(registry_url=registry.url), confluent_frame(sid, body[:-3]))
    assert err.reason.startswith("value is not valid Avro for schema id 1: truncated")


def test_truncated_header():
    err = _decode_error(Decoder(registry_url="http://127.0.0.1:9"), b"\x00\x00\x01")
    assert "truncated: 3 byte(s)" in err.reason and "5-byte header" in err.reason


def test_left_over_bytes_are_corruption(registry):
    sid = registry.register("t-value", USER)
    err = _decode_error(Decoder(registry_url=registry.url), confluent_frame(sid, write_body(USER, RECORD) + b"\x02"))
    assert "1 byte(s) left over" in err.reason


def test_corrupt_union_index_and_utf8(registry):
    schema = {"type": "record", "name": "R", "fields": [field("u", ["null", "string"])]}
    sid = registry.register("t-value", schema)
    d = Decoder(registry_url=registry.url)
    assert "not valid Avro for schema id 1" in _decode_error(d, confluent_frame(sid, b"\x08")).reason
    err = _decode_error(d, confluent_frame(sid, b"\x02\x04\xff\xfe"))
    assert "UnicodeDecodeError" in err.reason


def test_unknown_schema_id_one_request_per_batch(registry):
    registry.register("t-value", USER)
    d = Decoder(registry_url=registry.url)
    payload = confluent_frame(99, write_body(USER, RECORD))
    for _ in range(3):
        err = _decode_error(d, payload)
        assert err.reason == (f"value: schema id 99 is not in the schema registry at {registry.url} "
                              "(HTTP 404: Schema 99 not found)")
    assert registry.requests["/schemas/ids/99"] == 1


def test_confluent_framing_without_registry_setting():
    err = _decode_error(Decoder(), confluent_frame(5, b"\x00"))
    assert err.reason == ("value is Avro in Confluent framing (schema id 5) but "
                          "connect.influx.schema.registry.url is not set")


def test_wrong_magic_byte_when_avro_is_forced():
    err = _decode_error(Decoder("avro"), b'{"a": 1}')
    assert err.reason.startswith("value is not framed Avro: the first byte is 0x7b, expected 0x00 (Confluent)")


def test_registry_outage_is_a_record_error_and_not_cached_as_a_schema(registry):
    sid = registry.register("t-value", USER)
    registry.fail_with = 500
    d = Decoder(registry_url=registry.url)
    payload = confluent_frame(sid, write_body(USER, RECORD))
    err = _decode_error(d, payload)
    assert "answered HTTP 500: Internal error" in err.reason
    _decode_error(d, payload)  # remembered for a few seconds: no second request in this batch
    assert registry.schema_requests() == 1


def test_registry_unreachable():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from handler.decode import registry as registry_mod

    registry_mod.clear_caches()
    err = _decode_error(Decoder(registry_url=f"http://127.0.0.1:{port}"), confluent_frame(1, b""))
    assert f"the schema registry at http://127.0.0.1:{port} is unreachable" in err.reason
    registry_mod.clear_caches()


# ---------------------------------------------------------------- registry features


def test_basic_auth_from_setting_and_from_url(secured_registry):
    sid = secured_registry.register("t-value", USER)
    payload = confluent_frame(sid, write_body(USER, RECORD))
    assert Decoder(registry_url=secured_registry.url, registry_user_info="sr-user:sr-secret").value(
        rec(payload)) == WIDENED
    from handler.decode import registry as registry_mod

    registry_mod.clear_caches()
    with_userinfo = secured_registry.url.replace("http://", "http://sr-user:sr-secret@")
    assert Decoder(registry_url=with_userinfo).value(rec(payload)) == WIDENED


def test_wrong_credentials_never_leak(secured_registry):
    sid = secured_registry.register("t-value", USER)
    payload = confluent_frame(sid, write_body(USER, RECORD))
    url = secured_registry.url.replace("http://", "http://sr-user:hunter2@")
    err = _decode_error(Decoder(registry_url=url, registry_user_info="sr-user:wrong-secret"), payload)
    assert "refused access (HTTP 401: Unauthorized)" in err.reason
    assert "hunter2" not in err.reason and "wrong-secret" not in err.reason and "sr-user" not in err.reason


def test_schema_references_are_resolved(registry):
    address = {"type": "record", "name": "Address", "namespace": "io.example",
               "fields": [field("city", "string")]}
    registry.register("address-value", address)
    person = {"type": "record", "name": "Person", "namespace": "io.example",
              "fields": [field("name", "string"), field("home", "io.example.Address")]}
    from fastavro import parse_schema

    named: dict[str, Any] = {}
    parse_schema(address, named_schemas=named)
    body = write_body(parse_schema(person, named_schemas=named), {"name": "Ann", "home": {"city": "Oslo"}})
    sid = registry.register("person-value", person,
                            references=[{"name": "io.example.Address", "subject": "address-value", "version": 1}])
    assert Decoder(registry_url=registry.url).value(rec(confluent_frame(sid, body))) == {
        "name": "Ann", "home": {"city": "Oslo"}}
    assert registry.requests["/subjects/address-value/versions/1"] == 1


def test_json_and_protobuf_schema_types_read_their_payloads(registry):
    jid = registry.register("j-value", {"type": "object"}, schema_type="JSON")
    pid = registry.register("p-value", 'syntax = "proto3"; message M { int32 a = 1; }', schema_type="PROTOBUF")
    d = Decoder(registry_url=registry.url)
    assert d.value(rec(confluent_frame(jid, b'{"a": 1}'))) == {"a": 1}
    assert d.value(rec(confluent_frame(pid, b"\x00\x08\x01"))) == {"a": 1}  # message index [0], then a = 1
    err = _decode_error(d, confluent_frame(pid, b"\x08\x01"))
    assert err.reason == "value is not valid Protobuf for schema id 2: its message index is truncated"


# ---------------------------------------------------------------- AWS Glue framing


def test_glue_plain_and_zlib(glue):
    vid = glue.register(USER)
    body = write_body(USER, RECORD)
    d = Decoder()
    assert d.value(rec(glue_frame(vid, body))) == WIDENED
    assert d.value(rec(glue_frame(vid, body, compress=True))) == WIDENED


def test_glue_unknown_version_bad_compression_and_bad_zlib(glue):
    vid = glue.register(USER)
    d = Decoder()
    unknown = str(uuid.UUID(int=12345))
    err = _decode_error(d, glue_frame(unknown, b""))
    assert err.reason.startswith(f"value: AWS Glue schema version {unknown} is not in the AWS Glue Schema Registry")
    bad = bytearray(glue_frame(vid, b""))
    bad[1] = 7
    assert _decode_error(d, bytes(bad)).reason == ("value has AWS Glue compression byte 7; known: 0 (none), "
                                                   "5 (zlib)")
    assert "not valid zlib data" in _decode_error(d, glue_frame(vid, b"", compress=True)[:18] + b"\x78\x9c\x01").reason
    assert "18-byte header" in _decode_error(d, b"\x03\x00\x01").reason


def test_glue_json_data_format(glue):
    vid = glue.register({"type": "object", "properties": {"a": {"type": "integer"}}}, data_format="JSON")
    assert Decoder().value(rec(glue_frame(vid, b'{"a": 2}'))) == {"a": 2}


# ---------------------------------------------------------------- unframed Avro from settings


def test_unframed_inline_and_file(tmp_path):
    body = write_body(USER, RECORD)
    assert Decoder(value_schema=json.dumps(USER)).value(rec(body)) == WIDENED  # auto: the schema is the hint
    path = tmp_path / "user.avsc"
    path.write_text(json.dumps(USER))
    assert Decoder("avro", value_schema=str(path)).value(rec(body)) == WIDENED


def test_forced_avro_with_schema_reads_bodies_starting_with_0_or_3():
    schema = one_field("int")
    d = Decoder("avro", value_schema=json.dumps(schema))
    assert d.value(rec(write_body(schema, {"f": 0}))) == {"f": 0}  # body b"\x00": not Confluent framing
    assert d.value(rec(b"\x03")) == {"f": -2}


@pytest.mark.parametrize(("text", "expected"), [
    ('{"type": "record", "name": "R", "fields": [{"name": "a"}]}',
     "connect.influx.value.avro.schema is not a valid Avro schema"),
    ("{not json", "connect.influx.value.avro.schema is not JSON"),
    ("/nonexistent/user.avsc", "connect.influx.value.avro.schema: '/nonexistent/user.avsc' is neither inline "
                               "JSON nor a readable file"),
])
def test_bad_schema_setting_is_a_config_error(text, expected):
    with pytest.raises(ConfigError) as info:
        Decoder(value_schema=text)
    assert expected in str(info.value)
    assert "CONNECT_INFLUX_VALUE_AVRO_SCHEMA" in str(info.value)


# ---------------------------------------------------------------- decoded by the event source


def test_event_source_metadata_json(registry):
    value = json.dumps(RECORD).encode()
    assert Decoder().value(rec(value, meta={"dataFormat": "AVRO", "schemaId": "1"})) == RECORD
    assert registry.requests == {}


def test_event_source_metadata_source_format_avro(registry, glue):
    sid = registry.register("t-value", USER)
    body = write_body(USER, RECORD)
    d = Decoder(registry_url=registry.url)
    assert d.value(rec(body, meta={"dataFormat": "AVRO", "schemaId": str(sid)})) == WIDENED
    vid = glue.register(USER)
    assert d.value(rec(body, meta={"dataFormat": "AVRO", "schemaId": vid})) == WIDENED


def test_event_source_metadata_protobuf_source_is_explained():
    with pytest.raises(RecordError) as info:
        Decoder().value(rec(b"\x08\x96\x01", meta={"dataFormat": "PROTOBUF", "schemaId": "3"}))
    assert "set EventRecordFormat to JSON" in info.value.reason


# ---------------------------------------------------------------- forced kinds


def test_forced_kinds():
    envelope = json.dumps({"schema": {"type": "double"}, "payload": 1}).encode()
    assert Decoder().value(rec(envelope)) == 1.0
    assert Decoder("json").value(rec(envelope)) == {"schema": {"type": "double"}, "payload": 1}
    assert Decoder("connect").value(rec(envelope)) == 1.0
    assert Decoder("string").value(rec(b'{"a": 1}')) == '{"a": 1}'
    with pytest.raises(RecordError, match="is not a Kafka Connect envelope"):
        Decoder("connect").value(rec(b'{"a": 1}'))
    with pytest.raises(RecordError, match="value is not UTF-8 text"):
        Decoder("string").value(rec(b"\xff"))


def test_tombstone_is_none_and_counted():
    plan = Plan(parse("INSERT INTO m SELECT * FROM t"), Decoder("avro"))
    assert plan.lines(rec(None)) == []
    assert plan.stats.tombstones == 1


# ------------------------------------------------------------------ a recursive schema, a body nested very deep

LINKED = ('{"type": "record", "name": "Node", "namespace": "ex", "fields": [{"name": "v", "type": "int"}, '
          '{"name": "next", "type": ["null", "Node"]}]}')


@pytest.mark.parametrize("depth", [10, 5000, 100_000])
def test_deep_body_of_a_recursive_schema_fails_the_record_not_the_process(depth):
    # fastavro's compiled reader recurses in C without a limit: a deep enough body is a segfault,
    # so the read runs in a child process whose exit shows it.
    import subprocess
    import sys

    code = ("from handler.decode.avro import parse\n"
            "from handler.errors import RecordError\n"
            f"s = parse({LINKED!r}, 'connect.influx.value.avro.schema')\n"
            f"body = b'\\x02\\x02' * {depth} + b'\\x02\\x00'\n"
            "try:\n"
            "    v = s.read(body, 'value')\n"
            "    n = 0\n"
            "    while v is not None:\n"
            "        n, v = n + 1, v['next']\n"
            "    print('ok', n)\n"
            "except RecordError as err:\n"
            "    print('record error:', err.reason)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    if depth == 10:
        assert out.stdout.strip() == "ok 11"
    else:
        assert out.stdout.strip() == ("record error: value is not valid Avro for connect.influx.value.avro.schema: "
                                      "nested too deeply")


def test_recursive_schemas_are_recognised():
    from handler.decode.avro import is_recursive, parse

    tree = '{"type": "record", "name": "T", "fields": [{"name": "kids", "type": {"type": "array", "items": "T"}}]}'
    shared = ('{"type": "record", "name": "R", "fields": [{"name": "a", "type": {"type": "record", "name": "S", '
              '"fields": [{"name": "x", "type": "int"}]}}, {"name": "b", "type": "S"}]}')
    assert is_recursive(parse(LINKED, "x").parsed) and is_recursive(parse(tree, "x").parsed)
    assert not is_recursive(parse(shared, "x").parsed)
