"""Keys: decoded only when a statement uses ``_key``, with the same kinds as values."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from handler.app import lambda_handler
from handler.decode import Decoder
from handler.errors import BatchFailed, RecordError
from handler.mapping import Plan
from handler.records import KafkaRecord
from influx_sink_tools.eventgen import Rec, build_event
from influx_sink_tools.framing import confluent_frame, glue_frame, write_body
from kcql import parse
from tests._lines import point_of
from tests.conftest import query_points, tag_keys

pytest_plugins = ["tests.fixtures_registry"]

KEY = {"type": "record", "name": "Key", "fields": [{"name": "device", "type": "string"},
                                                    {"name": "site", "type": "int"}]}
KEY_VALUE = {"device": "d-1", "site": 7}


def rec(key: bytes | None, value: bytes = b'{"v": 1}', key_meta: Any = None) -> KafkaRecord:
    b64 = lambda b: None if b is None else base64.b64encode(b).decode()
    return KafkaRecord("t", 0, 5, 0, b64(key), b64(value), None, None, key_meta)


def point(decoder: Decoder, kcql: str, record: KafkaRecord) -> Any:
    (p,) = [point_of(line) for line in Plan(parse(kcql), decoder).lines(record)]
    return p


KCQL = "INSERT INTO m SELECT v, _key.device, _key.site FROM t"


def test_confluent_avro_key(registry):
    sid = registry.register("t-key", KEY)
    p = point(Decoder(registry_url=registry.url), KCQL, rec(confluent_frame(sid, write_body(KEY, KEY_VALUE))))
    assert p.fields == {"v": 1, "device": "d-1", "site": 7}


def test_glue_avro_key(glue):
    vid = glue.register(KEY)
    p = point(Decoder(), KCQL, rec(glue_frame(vid, write_body(KEY, KEY_VALUE), compress=True)))
    assert p.fields == {"v": 1, "device": "d-1", "site": 7}


def test_unframed_avro_key_from_settings():
    d = Decoder(key_schema=json.dumps(KEY))
    assert point(d, KCQL, rec(write_body(KEY, KEY_VALUE))).fields == {"v": 1, "device": "d-1", "site": 7}
    # A primitive key schema: the whole key is the value.
    d = Decoder("auto", "avro", key_schema='"long"')
    assert point(d, "INSERT INTO m SELECT v, _key AS k FROM t", rec(b"\x02")).fields == {"v": 1, "k": 1}


def test_json_string_and_connect_keys():
    d = Decoder()
    assert point(d, KCQL, rec(json.dumps(KEY_VALUE).encode())).fields == {"v": 1, "device": "d-1", "site": 7}
    p = point(d, "INSERT INTO m SELECT v FROM t WITHTAG(_key AS k)", rec(b"plain key"))
    assert p.tags == [("k", "plain key")]
    envelope = {"schema": {"type": "struct", "fields": [{"field": "device", "type": "string"},
                                                         {"field": "site", "type": "int32"}]},
                "payload": {"device": "d-1", "site": 7.0}}
    fields = point(d, KCQL, rec(json.dumps(envelope).encode())).fields
    assert fields == {"v": 1, "device": "d-1", "site": 7} and type(fields["site"]) is int
    # Forced kinds: a JSON-looking key kept as text; a key that must be a Connect envelope.
    p = point(Decoder(key_kind="string"), "INSERT INTO m SELECT v, _key AS k FROM t", rec(b'{"a": 1}'))
    assert p.fields == {"v": 1, "k": '{"a": 1}'}
    with pytest.raises(RecordError, match="key is not a Kafka Connect envelope"):
        point(Decoder(key_kind="connect"), KCQL, rec(b'{"a": 1}'))


def test_event_source_decoded_key():
    p = point(Decoder(), KCQL, rec(json.dumps(KEY_VALUE).encode(), key_meta={"dataFormat": "AVRO", "schemaId": "4"}))
    assert p.fields == {"v": 1, "device": "d-1", "site": 7}


def test_unused_keys_are_never_decoded(registry):
    d = Decoder(registry_url=registry.url)
    for key in (b"\x00\x00\x00\x00\x63garbage", b"\x03\x00" + b"\x01" * 16, b"\xff\xfe", None):
        assert point(d, "INSERT INTO m SELECT * FROM t", rec(key)).fields == {"v": 1}
    assert registry.requests == {}


def test_corrupt_keys_fail_with_the_key_named(registry):
    sid = registry.register("t-key", KEY)
    d = Decoder(registry_url=registry.url)
    with pytest.raises(RecordError) as info:
        point(d, KCQL, rec(confluent_frame(sid, write_body(KEY, KEY_VALUE))[:-1]))
    assert info.value.reason.startswith("key is not valid Avro for schema id 1: truncated")
    with pytest.raises(RecordError) as info:
        point(d, KCQL, rec(b"\xff\xfe"))
    assert info.value.reason == "key is neither JSON nor UTF-8 text"
    with pytest.raises(RecordError) as info:
        point(Decoder(key_schema=json.dumps(KEY)), KCQL, rec(b"\x02"))
    assert info.value.reason.startswith("key is not valid Avro for connect.influx.key.avro.schema: truncated")


@pytest.mark.influx
def test_avro_key_and_value_into_influxdb(sink_env, influx, db, registry):
    value_schema = {"type": "record", "name": "V", "fields": [{"name": "temp", "type": "float"}]}
    kid = registry.register("sensors-key", KEY)
    vid = registry.register("sensors-value", value_schema)
    event = build_event([Rec("sensors", 0, 0, confluent_frame(vid, write_body(value_schema, {"temp": 21.5})),
                             confluent_frame(kid, write_body(KEY, KEY_VALUE)), timestamp=1_700_000_000_000),
                         Rec("sensors", 0, 1, confluent_frame(vid, write_body(value_schema, {"temp": 22.5})),
                             b"\x00\x00\x00\x00\x09", timestamp=1_700_000_000_001)])
    sink_env("INSERT INTO temps SELECT temp FROM sensors WITHTIMESTAMP _timestamp WITHTAG(_key.device, _key.site)",
             CONNECT_INFLUX_SCHEMA_REGISTRY_URL=registry.url)
    with pytest.raises(BatchFailed) as info:
        lambda_handler(event, None)
    (failure,) = info.value.failures
    # The mapping stage names the tag that needed the key; the decode reason follows.
    assert str(failure).startswith("topic=sensors partition=0 offset=1: ")
    assert str(failure).endswith(f"key: schema id 9 is not in the schema registry at {registry.url} "
                                 "(HTTP 404: Schema 9 not found)")
    event["records"]["sensors-0"].pop()
    assert lambda_handler(event, None) == {"batchItemFailures": []}
    (row,) = query_points(influx, db, "SELECT * FROM temps")
    assert (row["temp"], row["device"], row["site"]) == (21.5, "d-1", "7")
    assert tag_keys(influx, db, "temps") == {"device", "site"}
