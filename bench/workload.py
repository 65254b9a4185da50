"""The benchmark's records: one sensor-reading shape, as plain JSON, Confluent-framed Avro and
Confluent-framed Protobuf.

Every run uses the same records (a fixed seed), so figures of different runs compare. The
timestamps of repetition ``rep`` are distinct from every other repetition's, so a repetition
adds points to the database instead of overwriting the previous one's.
"""

from __future__ import annotations

import json
import random
from typing import Any

from influx_sink_tools.eventgen import Rec, build_event

TOPIC = "readings"
PARTITIONS = 4
BATCH = 10_000  # the Kafka event source's maximum batch size
DEVICES = 200
T0_MS = 1_700_000_000_000
SCHEMA_ID = 7

KCQL = ("INSERT INTO sensors SELECT * FROM readings IGNORE device, site "
        "WITHTIMESTAMP ts WITHTAG(device, site)")

AVRO_SCHEMA: dict[str, Any] = {
    "type": "record", "name": "Reading", "namespace": "bench",
    "fields": [
        {"name": "device", "type": "string"},
        {"name": "site", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "temperature", "type": "double"},
        {"name": "humidity", "type": "double"},
        {"name": "pressure", "type": "double"},
        {"name": "battery", "type": "int"},
        {"name": "status", "type": "string"},
        {"name": "ok", "type": "boolean"},
        {"name": "firmware", "type": ["null", "string"], "default": None},
    ],
}


PROTOBUF_SCHEMA_ID = 8
# The Avro record's fields with the same names and types (``ts``: epoch milliseconds, as the Avro
# ``timestamp-millis`` is read raw; ``firmware``: with presence, like the nullable string).
PROTOBUF_SCHEMA = """
syntax = "proto3";
package bench;
message Reading {
  string device = 1;
  string site = 2;
  int64 ts = 3;
  double temperature = 4;
  double humidity = 5;
  double pressure = 6;
  int32 battery = 7;
  string status = 8;
  bool ok = 9;
  optional string firmware = 10;
}
"""


def protobuf_class() -> Any:
    """The generated-code equivalent of ``bench.Reading`` (the message class a producer has)."""
    from google.protobuf import message_factory

    from handler.decode import protobuf

    pool = protobuf.new_pool()
    file = protobuf.add_file(pool, protobuf.parse_proto(PROTOBUF_SCHEMA, "bench.proto", "bench"), "bench")
    return message_factory.GetMessageClass(file.message_types_by_name["Reading"])


def protobuf_registered() -> str:
    """The schema as confluent-kafka's ProtobufSerializer registers it: a base64 FileDescriptorProto."""
    import base64

    return base64.b64encode(protobuf_class().DESCRIPTOR.file.serialized_pb).decode("ascii")


def reading(i: int, rep: int, rnd: random.Random) -> dict[str, Any]:
    """Record ``i`` of repetition ``rep``: ~230 bytes of JSON, 8 fields and 2 tags once mapped."""
    dev = i % DEVICES
    return {
        "device": f"dev-{dev:04d}",
        "site": f"site-{dev % 7}",
        "ts": T0_MS + rep * BATCH + i,
        "temperature": round(rnd.uniform(-10, 40), 3),
        "humidity": round(rnd.uniform(10, 90), 2),
        "pressure": round(rnd.uniform(950, 1050), 1),
        "battery": rnd.randint(0, 100),
        "status": rnd.choice(("ok", "degraded", "calibrating")),
        "ok": rnd.random() > 0.1,
        "firmware": None if i % 5 == 0 else f"1.{dev % 4}.{i % 10}",
    }


def readings(rep: int, n: int = BATCH) -> list[dict[str, Any]]:
    rnd = random.Random(rep)
    return [reading(i, rep, rnd) for i in range(n)]


def json_payloads(docs: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(d, separators=(",", ":")).encode() for d in docs]


def avro_payloads(docs: list[dict[str, Any]], schema_id: int = SCHEMA_ID) -> list[bytes]:
    """Confluent framing: magic byte 0, the 4-byte schema id, the Avro body."""
    from fastavro import parse_schema

    from influx_sink_tools.framing import confluent_frame, write_body

    parsed = parse_schema(AVRO_SCHEMA)  # once: write_body takes a parsed schema as it is
    return [confluent_frame(schema_id, write_body(parsed, d)) for d in docs]


def protobuf_payloads(docs: list[dict[str, Any]], schema_id: int = PROTOBUF_SCHEMA_ID) -> list[bytes]:
    """Confluent framing: magic byte 0, the 4-byte schema id, message index [0] (one byte 0), the message."""
    from influx_sink_tools.framing import confluent_frame, confluent_protobuf_body

    cls = protobuf_class()
    return [confluent_frame(schema_id, confluent_protobuf_body(
        [0], cls(**{k: v for k, v in d.items() if v is not None}).SerializeToString())) for d in docs]


def event(payloads: list[bytes], rep: int) -> dict[str, Any]:
    """An MSK event: records spread over the partitions, offsets increasing per partition."""
    recs = [Rec(TOPIC, i % PARTITIONS, rep * BATCH + i // PARTITIONS, p, timestamp=T0_MS + rep * BATCH + i)
            for i, p in enumerate(payloads)]
    return build_event(recs)


def make_event(kind: str, rep: int, n: int = BATCH) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(event, the source documents) for ``kind`` = ``json``, ``avro`` or ``protobuf``."""
    docs = readings(rep, n)
    make = {"json": json_payloads, "avro": avro_payloads, "protobuf": protobuf_payloads}[kind]
    payloads = make(docs)
    return event(payloads, rep), docs
