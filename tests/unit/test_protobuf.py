"""Protobuf decoding without servers: the .proto reader against protoc's descriptors, the record
shape of every field kind, both framings' message indexes, and the errors of bad bytes."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from google.protobuf import (
    any_pb2,
    descriptor_pool,
    duration_pb2,
    empty_pb2,
    field_mask_pb2,
    source_context_pb2,
    struct_pb2,
    timestamp_pb2,
    wrappers_pb2,
)
from google.protobuf.descriptor import Descriptor

from handler.decode import protobuf
from handler.errors import RecordError
from handler.lineproto import Instant, timestamp_reader
from influx_sink_tools.framing import confluent_protobuf_body, glue_protobuf_body, varint
from tests.conftest import ROOT
from tests.fixtures_registry import protobuf_classes

# The well-known types' .proto files as Google publishes them (comments and options left out).
_WKT = 'syntax = "proto3"; package google.protobuf; '
WELL_KNOWN_TEXT = {
    timestamp_pb2: _WKT + "message Timestamp { int64 seconds = 1; int32 nanos = 2; }",
    duration_pb2: _WKT + "message Duration { int64 seconds = 1; int32 nanos = 2; }",
    empty_pb2: _WKT + "message Empty {}",
    any_pb2: _WKT + "message Any { string type_url = 1; bytes value = 2; }",
    field_mask_pb2: _WKT + "message FieldMask { repeated string paths = 1; }",
    source_context_pb2: _WKT + "message SourceContext { string file_name = 1; }",
    wrappers_pb2: _WKT + "\n".join(
        f"message {name}Value {{ {kind} value = 1; }}" for name, kind in (
            ("Double", "double"), ("Float", "float"), ("Int64", "int64"), ("UInt64", "uint64"),
            ("Int32", "int32"), ("UInt32", "uint32"), ("Bool", "bool"), ("String", "string"),
            ("Bytes", "bytes"))),
    struct_pb2: '''syntax = "proto3";
        package google.protobuf;
        message Struct { map<string, Value> fields = 1; }
        message Value {
          oneof kind {
            NullValue null_value = 1; double number_value = 2; string string_value = 3;
            bool bool_value = 4; Struct struct_value = 5; ListValue list_value = 6;
          }
        }
        enum NullValue { NULL_VALUE = 0; }
        message ListValue { repeated Value values = 1; }''',
}


def shape(desc: Descriptor) -> Any:
    """What a descriptor says about reading messages, with the package left out of names."""
    strip = lambda name: name.split(".", 2)[-1] if name.startswith("google.protobuf.") else name.split(".", 1)[-1]
    fields = [(f.name, f.number, f.type, f.is_repeated, f.has_presence,
               f.message_type and strip(f.message_type.full_name), f.enum_type and strip(f.enum_type.full_name),
               f.containing_oneof and f.containing_oneof.name) for f in desc.fields]
    return (strip(desc.full_name), desc.GetOptions().map_entry, fields,
            [shape(n) for n in desc.nested_types],
            [(e.name, [(v.name, v.number) for v in e.values]) for e in desc.enum_types])


@pytest.mark.parametrize("module", list(WELL_KNOWN_TEXT), ids=lambda m: m.DESCRIPTOR.name)
def test_the_proto_reader_gives_what_protoc_gave_for_the_well_known_types(module):
    pool = descriptor_pool.DescriptorPool()
    text = WELL_KNOWN_TEXT[module].replace("package google.protobuf;", "package check;")
    file = protobuf.add_file(pool, protobuf.parse_proto(text, "check.proto", "test"), "test")
    mine = [shape(d) for d in file.message_types_by_name.values()]
    theirs = [shape(d) for d in module.DESCRIPTOR.message_types_by_name.values()]
    assert mine == theirs
    assert [(e.name, [v.name for v in e.values]) for e in file.enum_types_by_name.values()] == \
        [(e.name, [v.name for v in e.values]) for e in module.DESCRIPTOR.enum_types_by_name.values()]


def test_map_entries_are_named_as_protoc_names_them():
    assert protobuf._map_entry_name("tags") == "TagsEntry"
    assert protobuf._map_entry_name("my_map_2") == "MyMap2Entry"
    assert shape(struct_pb2.Struct.DESCRIPTOR)[3][0][0] == "Struct.FieldsEntry"


PROTO2 = '''
syntax = "proto2";
package legacy;
message Old { required int32 id = 1; optional string note = 2; optional int32 level = 3 [default = 5];
              repeated int32 xs = 4 [packed = true]; }
'''

EVERYTHING = '''
syntax = "proto3";
package plant.v1;
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
import "google/protobuf/struct.proto";

enum Status { STATUS_UNKNOWN = 0; RUNNING = 1; STOPPED = 2; }

message Reading {
  message Location { double lat = 1; double lon = 2; Inner inner = 3; message Inner { int32 floor = 1; } }
  string device = 1;
  Location location = 2;
  repeated double samples = 3;
  map<string, int64> counters = 4;
  Status status = 5;
  oneof source { string sensor = 6; int32 channel = 7; }
  google.protobuf.Timestamp at = 8;
  google.protobuf.DoubleValue level = 9;
  google.protobuf.Int64Value count = 10;
  google.protobuf.StringValue label = 11;
  google.protobuf.BoolValue flag = 12;
  google.protobuf.Struct extra = 13;
  google.protobuf.Value any_json = 14;
  google.protobuf.ListValue list_json = 15;
  optional int32 maybe = 16;
  int32 zero = 17;
  uint64 big = 18;
  sint32 neg = 19;
  fixed64 f64 = 20;
  float ratio = 21;
  repeated Location stops = 22;
  map<int32, Location> by_floor = 23;
  map<bool, string> flags = 24;
  repeated Status history = 25;
  repeated google.protobuf.Timestamp times = 26;
  bytes raw = 27;
  int32 class = 28;
}
'''


@pytest.fixture(scope="module")
def classes() -> dict[str, Any]:
    return protobuf_classes({"everything.proto": EVERYTHING, "legacy.proto": PROTO2})


def _schema(classes: dict[str, Any], confluent: bool = True) -> protobuf.ProtobufSchema:
    return protobuf.ProtobufSchema(classes["plant.v1.Reading"].DESCRIPTOR.file, "schema id 9", confluent)


def full_reading(classes: dict[str, Any]) -> Any:
    msg = classes["plant.v1.Reading"](device="pump-1", samples=[1.5, 2.5], status=1, sensor="s-7", maybe=0,
                                      big=2**64 - 1, neg=-5, f64=7, ratio=0.1, history=[1, 2])
    msg.location.lat, msg.location.lon, msg.location.inner.floor = 51.5, -0.12, 3
    msg.counters["starts"] = 12
    msg.at.seconds, msg.at.nanos = 1_700_000_000, 123_456_789
    msg.level.value = 0.75
    msg.count.value = 42
    msg.label.value = "main"
    msg.flag.value = False
    msg.extra.update({"n": 1, "s": "x", "b": True, "nil": None, "l": [1, "two"], "o": {"deep": 2}})
    msg.any_json.string_value = "text"
    msg.list_json.values.add().number_value = 3
    msg.stops.add(lat=1.0, lon=2.0)
    msg.by_floor[2].lat = 9.0
    msg.flags[True] = "on"
    msg.times.add(seconds=1, nanos=2)
    setattr(msg, "class", 4)
    return msg


def test_every_field_kind_reads_as_documented(classes):
    msg = full_reading(classes)
    value = _schema(classes).read(confluent_protobuf_body([0], msg.SerializeToString()), "value")
    at = value.pop("at")
    assert type(at) is Instant and at.ns == 1_700_000_000_123_456_789
    assert at.isoformat() == "2023-11-14T22:13:20.123456+00:00"
    (first,) = value.pop("times")
    assert first.ns == 1_000_000_002
    assert value == {
        "device": "pump-1",
        "location": {"lat": 51.5, "lon": -0.12, "inner": {"floor": 3}},
        "samples": [1.5, 2.5],
        "counters": {"starts": 12},
        "status": "RUNNING",
        "sensor": "s-7",  # the oneof's member that is set, and only it
        "level": 0.75, "count": 42, "label": "main", "flag": False,  # wrappers: their value
        "extra": {"n": 1.0, "s": "x", "b": True, "nil": None, "l": [1.0, "two"], "o": {"deep": 2.0}},
        "any_json": "text",
        "list_json": [3.0],
        "maybe": 0,  # proto3 optional, set to its default: present
        "zero": 0,  # no presence: written at its default
        "big": 2**64 - 1,  # an int; the line-protocol writer refuses it as outside int64
        "neg": -5, "f64": 7,
        "ratio": 0.10000000149011612,  # a 32-bit float, widened
        "stops": [{"lat": 1.0, "lon": 2.0}],
        "by_floor": {"2": {"lat": 9.0, "lon": 0.0}},
        "flags": {"true": "on"},
        "history": ["RUNNING", "STOPPED"],
        "raw": b"",  # bytes stay bytes: refused only if a statement writes them
        "class": 4,
    }


def test_fields_with_presence_are_left_out_when_unset(classes):
    value = _schema(classes).read(b"\x00" + classes["plant.v1.Reading"](device="d").SerializeToString(), "value")
    assert value == {"device": "d", "samples": [], "counters": {}, "status": "STATUS_UNKNOWN", "zero": 0, "big": 0,
                     "neg": 0, "f64": 0, "ratio": 0.0, "stops": [], "by_floor": {}, "flags": {}, "history": [],
                     "times": [], "raw": b"", "class": 0}


def test_proto2_fields_are_present_when_set(classes):
    old = classes["legacy.Old"]
    schema = protobuf.ProtobufSchema(old.DESCRIPTOR.file, "schema id 3", True)
    assert schema.read(b"\x00" + old(id=0, xs=[1, 2]).SerializeToString(), "value") == {"id": 0, "xs": [1, 2]}
    assert schema.read(b"\x00" + old(id=1, level=5).SerializeToString(), "value") == {"id": 1, "level": 5, "xs": []}


def test_a_timestamp_is_exact_to_the_nanosecond_as_withtimestamp_and_epoch_ms_as_a_field(classes):
    msg = classes["plant.v1.Reading"]()
    msg.at.seconds, msg.at.nanos = -1, 999_999_999  # 1969-12-31T23:59:59.999999999Z
    at = _schema(classes).read(b"\x00" + msg.SerializeToString(), "value")["at"]
    assert timestamp_reader("at", 1_000_000, 1_000_000_000)(at) == -1
    from handler.mapping import _storable

    assert _storable("at", at) == -1  # epoch milliseconds, floored


def test_an_invalid_timestamp_or_enum_number_fails_the_record(classes):
    msg = classes["plant.v1.Reading"]()
    msg.at.seconds = 10**12
    with pytest.raises(RecordError, match=r"value is not valid Protobuf for schema id 9 \(plant.v1.Reading\): "
                                          r"a google.protobuf.Timestamp of 1000000000000 s"):
        _schema(classes).read(b"\x00" + msg.SerializeToString(), "value")
    msg = classes["plant.v1.Reading"](status=9)  # open enums keep numbers they do not name
    with pytest.raises(RecordError, match=r"field 'status' holds 9, which enum plant.v1.Status does not name"):
        _schema(classes).read(b"\x00" + msg.SerializeToString(), "value")


def test_confluent_message_indexes_reach_nested_types(classes):
    inner = classes["plant.v1.Reading.Location.Inner"](floor=7)
    body = confluent_protobuf_body([0, 0, 0], inner.SerializeToString())
    assert body[:4] == b"\x06\x00\x00\x00"  # count 3, then three zeros, as zigzag varints
    assert _schema(classes).read(body, "value") == {"floor": 7}
    loc = classes["plant.v1.Reading.Location"](lat=1.0)
    assert _schema(classes).read(confluent_protobuf_body([0, 0], loc.SerializeToString()), "key") == \
        {"lat": 1.0, "lon": 0.0}


@pytest.mark.parametrize(("body", "reason"), [
    (confluent_protobuf_body([1], b""), r"value: message index \[1\] is outside schema id 9: it has 1 message "
                                        r"type\(s\) top-level"),
    (confluent_protobuf_body([0, 5], b""), r"message index \[0, 5\] is outside schema id 9: it has 4 message "
                                           r"type\(s\) nested in plant.v1.Reading"),  # Location and 3 map entries
    (b"\x02", r"value is not valid Protobuf for schema id 9: its message index is truncated"),
    (b"\x01", r"its message-index list says -1 index\(es\)"),
    (b"", r"its message index is truncated"),
    (b"\x00\x0a\x05ab", r"value is not valid Protobuf for schema id 9 \(plant.v1.Reading\): Error parsing message"),
    (b"\x00\xff", r"\(truncated or corrupt payload, or written with another schema\)"),
])
def test_bad_confluent_bodies_fail_the_record(classes, body, reason):
    with pytest.raises(RecordError, match=reason):
        _schema(classes).read(body, "value")


GLUE_ORDER = '''syntax = "proto3"; package p;
message B { message C {} message A { message D {} } }
message Z { map<string, int32> m = 1; }
'''


def test_glue_message_indexes_count_every_type_sorted_by_full_name():
    """The Glue SerDe's MessageIndexFinder: B = 0, B.A = 1, B.A.D = 2, B.C = 3 (its own example),
    then Z and Z's map entry (a nested type like any other)."""
    cls = protobuf_classes({"order.proto": GLUE_ORDER})
    schema = protobuf.ProtobufSchema(cls["p.B"].DESCRIPTOR.file, "AWS Glue schema version x", False)
    for index, name in enumerate(["p.B", "p.B.A", "p.B.A.D", "p.B.C", "p.Z", "p.Z.MEntry"]):
        assert schema._descriptor(index, "value").full_name == name
    z = cls["p.Z"]()
    z.m["a"] = 1
    assert schema.read(glue_protobuf_body(4, z.SerializeToString()), "value") == {"m": {"a": 1}}
    with pytest.raises(RecordError, match=r"value: message index 6 is outside AWS Glue schema version x, which "
                                          r"has 6 message type\(s\)"):
        schema.read(glue_protobuf_body(6, b""), "value")


def test_schema_text_is_a_serialized_descriptor_or_proto_text(classes):
    import base64

    file = classes["plant.v1.Reading"].DESCRIPTOR.file
    serialized = base64.b64encode(file.serialized_pb).decode()
    assert protobuf.is_serialized(serialized)
    assert not protobuf.is_serialized(EVERYTHING)
    assert protobuf.file_proto(serialized, "a.proto", "x").message_type[0].name == "Reading"
    assert protobuf.file_proto(EVERYTHING, "a.proto", "x").message_type[0].name == "Reading"


@pytest.mark.parametrize(("text", "reason"), [
    ('syntax = "proto3"; message { int32 x = 1; }', r"schema id 4 is not valid .proto text: line 1, column 28"),
    ('syntax = "proto3"; message M { Missing x = 1; }', r"schema id 4 cannot be used: "),
    ('syntax = "proto3"; import "other.proto"; message M {}', r"schema id 4 cannot be used: "),
    ('edition = "2023"; message M {}', r"editions .* are not supported"),
    ('syntax = "proto2"; message M { optional group G = 1 { optional int32 a = 2; } }', r"groups are not supported"),
])
def test_unusable_schemas_are_named_problems(text, reason):
    with pytest.raises(protobuf.SchemaProblem, match=reason):
        protobuf.add_file(protobuf.new_pool(), protobuf.file_proto(text, "s.proto", "schema id 4"), "schema id 4")


def test_json_and_avro_users_never_import_protobuf():
    """The protobuf package and the .proto reader load only when a Protobuf schema appears."""
    code = ("import sys, base64\n"
            "from handler.decode import Decoder\n"
            "from handler.records import KafkaRecord\n"
            "d = Decoder()\n"
            "d.value(KafkaRecord('t', 0, 0, 0, None, base64.b64encode(b'{\"a\": 1}').decode(), None, None, None))\n"
            "import handler.decode.registry, handler.app\n"
            "print(sorted(m for m in sys.modules if m.startswith(('google', 'proto_schema_parser', 'antlr4'))))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_protobuf_users_never_import_fastavro():
    """Framing and the registries read a Protobuf payload without the Avro reader (fastavro)."""
    code = ("import sys, base64\n"
            "from handler.decode import Decoder, registry\n"
            "from handler.records import KafkaRecord\n"
            "text = 'syntax = \"proto3\"; message M { int32 x = 1; }'\n"
            "schema = registry._build_protobuf(text, 'schema id 1', True)\n"
            "registry._confluent_cache['http://sr.invalid'] = {1: schema}\n"
            "payload = b'\\x00' + (1).to_bytes(4, 'big') + b'\\x00\\x08\\x05'\n"
            "value = Decoder(registry_url='http://sr.invalid').value(\n"
            "    KafkaRecord('t', 0, 0, 0, None, base64.b64encode(payload).decode(), None, None, None))\n"
            "print(value, sorted(m for m in sys.modules if m.startswith('fastavro')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "{'x': 5} []"


def test_the_mapping_writes_protobuf_records_as_documented(classes, monkeypatch):
    """Through the compiled KCQL: flattened names, map keys as text, an empty list writes nothing,
    a Timestamp is the point's time to the nanosecond whatever TIMESTAMPUNIT says, as a field its
    epoch milliseconds; an unset wrapper or optional field is no field."""
    import base64

    from handler.decode import Decoder
    from handler.decode import registry as registry_mod
    from handler.mapping import Plan
    from handler.records import KafkaRecord
    from kcql import parse
    from tests._lines import point_of

    registry_mod.clear_caches()
    monkeypatch.setitem(registry_mod._confluent_cache, "http://sr.invalid", {9: _schema(classes)})
    msg = classes["plant.v1.Reading"](device="d", samples=[], status=2, channel=3)
    msg.by_floor[7].lat = 1.5
    msg.at.seconds, msg.at.nanos = 1_700_000_000, 5
    msg.times.add(seconds=0, nanos=1_999_999)
    value = base64.b64encode(b"\x00" + (9).to_bytes(4, "big") + b"\x00" + msg.SerializeToString()).decode()
    plan = Plan(parse("INSERT INTO m SELECT * FROM t IGNORE raw, big, at WITHTIMESTAMP at TIMESTAMPUNIT = SECONDS"),
                Decoder(registry_url="http://sr.invalid"))
    (line,) = plan.lines(KafkaRecord("t", 0, 0, 0, None, value, None, None, None))
    point = point_of(line)
    assert point.time_ns == 1_700_000_000_000_000_005
    assert point.fields == {"device": "d", "status": "STOPPED", "channel": 3, "zero": 0, "neg": 0, "f64": 0,
                            "ratio": 0.0, "by_floor_7_lat": 1.5, "by_floor_7_lon": 0.0, "times0": 1, "class": 0}


def test_a_recursive_message_type_converts_to_any_depth_upb_parses():
    """A type that holds itself gets one converter that calls itself; upb refuses nesting past its
    limit (100), which fails the record instead of the interpreter's stack."""
    cls = protobuf_classes({"tree.proto": 'syntax = "proto3"; package t; message Node { int32 v = 1; Node next = 2; }'})
    node = cls["t.Node"]
    schema = protobuf.ProtobufSchema(node.DESCRIPTOR.file, "schema id 1", True)
    head = node(v=0)
    tail = head
    for i in range(1, 50):
        tail.next.v = i
        tail = tail.next
    value = schema.read(b"\x00" + head.SerializeToString(), "value")
    depth = 0
    while "next" in value:
        value, depth = value["next"], depth + 1
    assert (depth, value) == (49, {"v": 49})
    deep = b""
    for _ in range(150):  # Node{next: Node{next: ...}} written by hand, past upb's depth limit
        deep = b"\x12" + varint(len(deep)) + deep  # field 2, length-delimited
    with pytest.raises(RecordError, match="not valid Protobuf for schema id 1"):
        schema.read(b"\x00" + deep, "value")


def test_imports_serializers_never_send_are_dropped_when_unused():
    """confluent/meta.proto is imported for field options; the schema works without it (the option,
    an extension of FieldOptions, stays an unknown field). A field of a type from an unsent file
    still fails the schema, naming the type."""
    proto = protobuf.parse_proto('syntax = "proto3"; import "confluent/meta.proto"; message M { int32 a = 1; }',
                                 "m.proto", "x")
    proto.message_type[0].field[0].options.MergeFromString(b"\xba\x3e\x03\x0a\x01x")  # (confluent.field_meta)
    file = protobuf.add_file(protobuf.new_pool(), proto, "schema id 1")
    assert [d.name for d in file.dependencies] == []
    schema = protobuf.ProtobufSchema(file, "schema id 1", True)
    assert schema.read(b"\x00\x08\x05", "value") == {"a": 5}
    dated = protobuf.parse_proto('syntax = "proto3"; import "google/type/date.proto"; '
                                 "message M { google.type.Date d = 1; }", "d.proto", "x")
    with pytest.raises(protobuf.SchemaProblem, match=r"schema id 2 cannot be used: .*'google\.type\.Date'"):
        protobuf.add_file(protobuf.new_pool(), dated, "schema id 2")


def test_a_confluent_decimal_is_exact():
    """confluent.type.Decimal: big-endian two's-complement unscaled value and scale, no rounding."""
    from decimal import Decimal

    cls = protobuf_classes({"price.proto": 'syntax = "proto3"; import "confluent/type/decimal.proto"; '
                                           "message P { confluent.type.Decimal amount = 1; }"})["P"]
    unscaled = -(10**40) - 7  # 41 digits: more than the default decimal context's 28
    msg = cls()
    msg.amount.value = unscaled.to_bytes(18, "big", signed=True)
    msg.amount.scale = 3
    schema = protobuf.ProtobufSchema(cls.DESCRIPTOR.file, "schema id 1", True)
    value = schema.read(b"\x00" + msg.SerializeToString(), "value")
    assert value == {"amount": Decimal("-10000000000000000000000000000000000000.007")}
    assert str(value["amount"]) == "-10000000000000000000000000000000000000.007"


def test_a_decoders_kept_reader_reads_any_index_list_and_names_key_or_value(classes, monkeypatch):
    """The whole-payload reader a decoder keeps per schema id: the first message type's records
    (index byte 0) read straight, every other index list through the schema; a reader built on
    a value's record names the key in a key's error, and a header alone is a truncated index."""
    from handler.decode import Decoder, PayloadKind
    from handler.decode import registry as registry_mod
    from influx_sink_tools.framing import confluent_frame

    monkeypatch.setitem(registry_mod._confluent_cache, "http://sr.invalid", {9: _schema(classes)})
    dec = Decoder(registry_url="http://sr.invalid")

    def frame(indexes: list[int], body: bytes) -> bytes:
        return confluent_frame(9, confluent_protobuf_body(indexes, body))

    for kind in (PayloadKind.AUTO, PayloadKind.PROTOBUF):
        msg = classes["plant.v1.Reading"](device="d")
        assert dec.decode(frame([0], msg.SerializeToString()), kind, "value")["device"] == "d"
        inner = classes["plant.v1.Reading.Location.Inner"](floor=7)
        assert dec.decode(frame([0, 0, 0], inner.SerializeToString()), kind, "key") == {"floor": 7}
        with pytest.raises(RecordError, match=r"^key is not valid Protobuf for schema id 9 \(plant.v1.Reading\): "):
            dec.decode(frame([0], b"\xff"), kind, "key")
        with pytest.raises(RecordError, match=r"^value is not valid Protobuf for schema id 9 "
                                              r"\(plant.v1.Reading.Location.Inner\): "):
            dec.decode(frame([0, 0, 0], b"\xff"), kind, "value")
        with pytest.raises(RecordError, match=r"^value is not valid Protobuf for schema id 9: its message index "
                                              r"is truncated"):
            dec.decode(confluent_frame(9, b""), kind, "value")
