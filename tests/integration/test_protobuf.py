"""Protobuf through lambda_handler into a real InfluxDB 1.x: records produced by confluent-kafka's
ProtobufSerializer (the real client) against the local registry, and Glue-framed records whose
schema moto's Glue serves; what each field becomes, and the per-record errors."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from handler.app import lambda_handler
from handler.errors import BatchFailed
from influx_sink_tools.eventgen import Rec, build_event
from influx_sink_tools.framing import confluent_frame, confluent_protobuf_body, glue_frame, glue_protobuf_body
from tests.conftest import query_points

pytest_plugins = ["tests.fixtures_registry"]
pytestmark = pytest.mark.influx

COMMON = '''
syntax = "proto3";
package shared;
message Location { double lat = 1; double lon = 2; }
enum Unit { CELSIUS = 0; KELVIN = 1; }
'''

READING = '''
syntax = "proto3";
package plant;
import "common.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
import "google/protobuf/struct.proto";

message Key { string site = 1; int32 line = 2; }

message Reading {
  message Motor { double rpm = 1; Health health = 2; message Health { int32 score = 1; } }
  string device = 1;
  shared.Location where = 2;       // a type from the referenced schema
  Motor motor = 3;                 // nested messages, two deep
  repeated double samples = 4;
  map<string, int64> counters = 5;
  shared.Unit unit = 6;
  oneof source { string sensor = 7; int32 channel = 8; }
  google.protobuf.Timestamp at = 9;
  google.protobuf.DoubleValue level = 10;
  google.protobuf.Int64Value total = 11;
  google.protobuf.StringValue note = 12;
  google.protobuf.Struct extra = 13;
  optional int32 maybe = 14;
  int32 idle = 15;
  uint64 big = 16;
}
'''


def protobuf_classes(files: dict[str, str], preloaded: tuple[bytes, ...] = ()) -> dict[str, Any]:
    from tests.fixtures_registry import protobuf_classes as build  # the plugin module, loaded by pytest first

    return build(files, preloaded)


@pytest.fixture(scope="module")
def classes() -> dict[str, Any]:
    return protobuf_classes({"common.proto": COMMON, "reading.proto": READING})


def serializer(classes: dict[str, Any], name: str, registry: Any) -> Any:
    """confluent-kafka's ProtobufSerializer for ``name``, registering (with references) on first use."""
    return ProtobufSerializer(classes[name], SchemaRegistryClient({"url": registry.url}))


def reading(classes: dict[str, Any], i: int = 0) -> Any:
    msg = classes["plant.Reading"](device=f"pump-{i}", samples=[1.5, 2.5], unit=1, sensor="s-7", big=5)
    msg.where.lat, msg.where.lon = 51.5, -0.125
    msg.motor.rpm = 1200.5
    msg.motor.health.score = 97
    msg.counters["starts"] = 12
    msg.at.seconds, msg.at.nanos = 1_700_000_000 + i, 123_456_789
    msg.level.value = 0.75
    msg.total.value = 42
    msg.extra.update({"mode": "auto", "gain": 2})
    return msg


def test_every_field_reads_back_from_influxdb_as_documented(sink_env, influx, db, registry, classes):
    """Acceptance: nested messages, repeated fields, a map, an enum, a oneof, a Timestamp, wrappers and
    a schema reference, produced by the real serializer; the Timestamp is the point's time, exactly."""
    ser = serializer(classes, "plant.Reading", registry)
    value = ser(reading(classes), SerializationContext("plant", MessageField.VALUE))
    assert value[5:6] == b"\x02" and value[6:7] == b"\x02"  # message index [1]: Reading is the second type
    sink_env("INSERT INTO readings SELECT * FROM plant IGNORE at, device WITHTIMESTAMP at WITHTAG(device)",
             CONNECT_INFLUX_SCHEMA_REGISTRY_URL=registry.url)
    assert lambda_handler(build_event([Rec("plant", 0, 5, value)]), None) == {"batchItemFailures": []}
    (row,) = query_points(influx, db, "SELECT * FROM readings")
    assert row == {
        "_measurement": "readings",
        "time": 1_700_000_000_123_456_789,  # WITHTIMESTAMP of a Timestamp: to the nanosecond
        "device": "pump-0",
        "where_lat": 51.5, "where_lon": -0.125,
        "motor_rpm": 1200.5, "motor_health_score": 97,
        "samples0": 1.5, "samples1": 2.5,
        "counters_starts": 12,
        "unit": "KELVIN",
        "sensor": "s-7",
        "level": 0.75, "total": 42,  # wrappers: their value; the unset StringValue is no field
        "extra_mode": "auto", "extra_gain": 2.0,  # Struct: JSON values, numbers are doubles
        "idle": 0,  # no presence in proto3: written at its default; `maybe` (optional, unset) is not
        "big": 5,
    }
    assert registry.requests["/subjects/common.proto/versions/1"] == 1  # the reference, fetched once


def test_a_timestamp_as_a_field_is_epoch_milliseconds(sink_env, influx, db, registry, classes):
    ser = serializer(classes, "plant.Reading", registry)
    value = ser(reading(classes), SerializationContext("plant", MessageField.VALUE))
    sink_env("INSERT INTO m SELECT at, device FROM plant WITHTIMESTAMP _timestamp",
             CONNECT_INFLUX_SCHEMA_REGISTRY_URL=registry.url)
    assert lambda_handler(build_event([Rec("plant", 0, 1, value, timestamp=1_000)]), None) == {"batchItemFailures": []}
    (row,) = query_points(influx, db, "SELECT * FROM m")
    assert (row["at"], row["device"], row["time"]) == (1_700_000_000_123, "pump-0", 1_000_000_000)


def test_protobuf_keys_for_key_paths(sink_env, influx, db, registry, classes):
    key_ser = ProtobufSerializer(classes["plant.Key"], SchemaRegistryClient({"url": registry.url}))
    key = key_ser(classes["plant.Key"](site="north", line=3), SerializationContext("plant", MessageField.KEY))
    value = serializer(classes, "plant.Reading", registry)(reading(classes), SerializationContext("plant",
                                                                                                  MessageField.VALUE))
    assert key[5:6] == b"\x00"  # the first message: the single byte 0
    sink_env("INSERT INTO m SELECT device, _key.line AS line FROM plant WITHTAG(_key.site AS site)",
             CONNECT_INFLUX_SCHEMA_REGISTRY_URL=registry.url, CONNECT_INFLUX_KEY_FORMAT="protobuf",
             CONNECT_INFLUX_VALUE_FORMAT="protobuf")
    assert lambda_handler(build_event([Rec("plant", 0, 1, value, key=key)]), None) == {"batchItemFailures": []}
    (row,) = query_points(influx, db, "SELECT * FROM m")
    assert (row["site"], row["line"], row["device"]) == ("north", 3, "pump-0")


def test_one_request_per_schema_id_and_reference(sink_env, influx, db, registry, classes):
    ser = serializer(classes, "plant.Reading", registry)
    values = [ser(reading(classes, i), SerializationContext("plant", MessageField.VALUE)) for i in range(50)]
    sink_env("INSERT INTO m SELECT device FROM plant WITHTIMESTAMP at", CONNECT_INFLUX_SCHEMA_REGISTRY_URL=registry.url)
    for invocation in range(2):
        event = build_event([Rec("plant", 0, invocation * 50 + i, v) for i, v in enumerate(values)])
        assert lambda_handler(event, None) == {"batchItemFailures": []}
    sid = int.from_bytes(values[0][1:5], "big")
    assert registry.requests[f"/schemas/ids/{sid}"] == 1  # served as registered: a serialized descriptor
    assert registry.requests["/subjects/common.proto/versions/1"] == 1
    (count,) = query_points(influx, db, "SELECT count(device) FROM m")
    assert count["count"] == 50  # the same 50 times, twice


@pytest.mark.parametrize("serialized_format", [True, False], ids=["format-serialized", "proto-text-only"])
def test_a_schema_registered_as_proto_text(sink_env, influx, db, registry, classes, serialized_format):
    """A registry answering .proto text: asked again with ?format=serialized; one that ignores the
    parameter answers text again, which the function parses."""
    registry.serialized_format = serialized_format
    ref = registry.register("common.proto", COMMON, "PROTOBUF")
    assert ref == 1
    sid = registry.register("plant-value", READING, "PROTOBUF",
                            [{"name": "common.proto", "subject": "common.proto", "version": 1}])
    body = confluent_protobuf_body([1], reading(classes).SerializeToString())
    sink_env("INSERT INTO m SELECT device, where.lat AS lat, unit FROM plant WITHTIMESTAMP at",
             CONNECT_INFLUX_SCHEMA_REGISTRY_URL=registry.url)
    assert lambda_handler(build_event([Rec("plant", 0, 1, confluent_frame(sid, body))]), None) == \
        {"batchItemFailures": []}
    (row,) = query_points(influx, db, "SELECT * FROM m")
    assert (row["device"], row["lat"], row["unit"]) == ("pump-0", 51.5, "KELVIN")
    assert row["time"] == 1_700_000_000_123_456_789
    assert registry.requests[f"/schemas/ids/{sid}"] == 2  # the text, then the descriptor (or the text again)


def test_bad_records_fail_with_topic_partition_offset(sink_env, influx, db, registry, classes):
    ser = serializer(classes, "plant.Reading", registry)
    good = ser(reading(classes), SerializationContext("plant", MessageField.VALUE))
    sid = int.from_bytes(good[1:5], "big")
    big = ser(classes["plant.Reading"](device="x", big=2**63), SerializationContext("plant", MessageField.VALUE))
    event = build_event([
        Rec("plant", 3, 10, good),
        Rec("plant", 3, 11, good[:-4]),  # truncated
        Rec("plant", 3, 12, confluent_frame(999, b"\x00\x08\x01")),  # unknown schema id
        Rec("plant", 3, 13, confluent_frame(sid, confluent_protobuf_body([7], b""))),  # no 8th message
        Rec("plant", 3, 14, big),  # a uint64 InfluxDB cannot store as an integer
    ])
    sink_env("INSERT INTO m SELECT * FROM plant IGNORE at, extra", CONNECT_INFLUX_SCHEMA_REGISTRY_URL=registry.url,
             CONNECT_INFLUX_ERROR_POLICY="THROW")
    with pytest.raises(BatchFailed) as info:
        lambda_handler(event, None)
    failures = {f.offset: f for f in info.value.failures}
    assert sorted(failures) == [11, 12, 13, 14]
    assert {(f.topic, f.partition) for f in failures.values()} == {("plant", 3)}
    assert failures[11].reason.startswith(f"value is not valid Protobuf for schema id {sid} (plant.Reading): Error "
                                          "parsing message")
    assert failures[12].reason == (f"value: schema id 999 is not in the schema registry at {registry.url} "
                                   "(HTTP 404: Schema 999 not found)")
    assert failures[13].reason == (f"value: message index [7] is outside schema id {sid}: it has 2 message type(s) "
                                   "top-level")
    assert "integer 9223372036854775808 is outside int64" in failures[14].reason
    assert "topic=plant partition=3 offset=11: value is not valid Protobuf" in str(info.value)


def test_a_schema_importing_confluent_meta_for_options(sink_env, influx, db, registry):
    """The serializer never registers confluent/meta.proto (a built-in for it); the import is dropped."""
    from confluent_kafka.schema_registry.confluent import meta_pb2

    text = ('syntax = "proto3"; package doc; import "confluent/meta.proto"; '
            "message Doc { int32 n = 1; }")
    cls = protobuf_classes({"doc.proto": text}, (meta_pb2.DESCRIPTOR.serialized_pb,))["doc.Doc"]
    value = serializer({"doc.Doc": cls}, "doc.Doc", registry)(cls(n=4), SerializationContext("doc",
                                                                                             MessageField.VALUE))
    assert not any(path.startswith("POST /subjects/confluent") for path in registry.requests)
    sink_env("INSERT INTO m SELECT n FROM doc", CONNECT_INFLUX_SCHEMA_REGISTRY_URL=registry.url)
    assert lambda_handler(build_event([Rec("doc", 0, 0, value)]), None) == {"batchItemFailures": []}
    (row,) = query_points(influx, db, "SELECT n FROM m")
    assert row["n"] == 4


def test_a_confluent_decimal_is_a_float(sink_env, influx, db, registry):
    """confluent/type/decimal.proto is a built-in for the serializer (never registered); the sink has its own."""
    from decimal import Decimal

    from confluent_kafka.schema_registry.common.protobuf import decimal_to_protobuf

    text = 'syntax = "proto3"; package shop; import "confluent/type/decimal.proto"; ' \
           "message Sale { confluent.type.Decimal price = 1; }"
    cls = protobuf_classes({"sale.proto": text})["shop.Sale"]
    msg = cls()
    msg.price.MergeFromString(decimal_to_protobuf(Decimal("1234.56"), 2).SerializeToString())
    value = serializer({"shop.Sale": cls}, "shop.Sale", registry)(msg, SerializationContext("shop", MessageField.VALUE))
    sink_env("INSERT INTO m SELECT price FROM shop", CONNECT_INFLUX_SCHEMA_REGISTRY_URL=registry.url)
    assert lambda_handler(build_event([Rec("shop", 0, 0, value)]), None) == {"batchItemFailures": []}
    (row,) = query_points(influx, db, "SELECT price FROM m")
    assert row["price"] == 1234.56


def test_protobuf_format_refuses_an_avro_schema(sink_env, influx, db, registry):
    sid = registry.register("t-value", {"type": "record", "name": "A", "fields": [{"name": "n", "type": "int"}]})
    sink_env("INSERT INTO m SELECT * FROM t", CONNECT_INFLUX_SCHEMA_REGISTRY_URL=registry.url,
             CONNECT_INFLUX_VALUE_FORMAT="protobuf")
    event = build_event([Rec("t", 0, 4, confluent_frame(sid, b"\x02")), Rec("t", 0, 5, b'{"n": 1}')])
    with pytest.raises(BatchFailed) as info:
        lambda_handler(event, None)
    assert [(f.offset, f.reason) for f in info.value.failures] == [
        (4, "value: schema id 1 is not a Protobuf schema (its type is AVRO; connect.influx.value.format is "
            "protobuf)"),
        (5, "value is not framed Protobuf: the first byte is 0x7b, expected 0x00 (Confluent) or 0x03 (AWS Glue)")]


# ---------------------------------------------------------------- AWS Glue


GLUE_SCHEMA = '''
syntax = "proto3";
package fleet;
import "google/protobuf/timestamp.proto";
message Truck {
  string plate = 1;
  Position position = 2;
  google.protobuf.Timestamp seen = 3;
  repeated string cargo = 4;
  message Position { double lat = 1; double lon = 2; }
}
message Depot { string name = 1; }
'''


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "zlib"])
def test_glue_framed_protobuf_with_its_schema_from_moto(sink_env, influx, db, glue, compress):
    version_id = glue.register(GLUE_SCHEMA, data_format="PROTOBUF")
    cls = protobuf_classes({"fleet.proto": GLUE_SCHEMA})
    truck = cls["fleet.Truck"](plate="AB-12", cargo=["milk", "eggs"])
    truck.position.lat, truck.position.lon = 48.5, 2.25
    truck.seen.seconds, truck.seen.nanos = 1_700_000_000, 999_999_999
    # Sorted by full name: fleet.Depot = 0, fleet.Truck = 1, fleet.Truck.Position = 2.
    value = glue_frame(version_id, glue_protobuf_body(1, truck.SerializeToString()), compress=compress)
    depot = glue_frame(version_id, glue_protobuf_body(0, cls["fleet.Depot"](name="x").SerializeToString()))
    sink_env("INSERT INTO trucks SELECT * FROM fleet IGNORE seen, plate WITHTIMESTAMP seen WITHTAG(plate)",
             CONNECT_INFLUX_ERROR_POLICY="RETRY")
    event = build_event([Rec("fleet", 1, 7, value), Rec("fleet", 1, 8, depot)])
    # The Depot has no `seen`: its record fails for the timestamp, not for its decoding.
    assert lambda_handler(event, None) == {"batchItemFailures": [{"itemIdentifier": {"partition": "fleet-1",
                                                                                     "offset": 8}}]}
    (row,) = query_points(influx, db, "SELECT * FROM trucks")
    assert row == {"_measurement": "trucks", "time": 1_700_000_000_999_999_999, "plate": "AB-12",
                   "position_lat": 48.5, "position_lon": 2.25, "cargo0": "milk", "cargo1": "eggs"}
