"""Confluent-framed values whose schema id is already known are read straight in ``Decoder.value``:
the same value and the same error as the full path, for every way a later record can be wrong."""

from __future__ import annotations

from typing import Any

import pytest

from handler.decode import Decoder, PayloadKind
from handler.errors import RecordError
from handler.records import parse_event
from influx_sink_tools.eventgen import Rec, build_event
from influx_sink_tools.framing import confluent_frame, write_body

pytest_plugins = ["tests.fixtures_registry"]

SCHEMA = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}, {"name": "s", "type": "string"}]}


def outcome(fn: Any) -> Any:
    try:
        return ("value", fn())
    except RecordError as err:
        return ("error", err.reason, err.kind)


@pytest.mark.parametrize("kind", [PayloadKind.AUTO, PayloadKind.AVRO])
def test_known_schema_ids_read_the_same_as_the_full_path(registry, kind):
    from fastavro import parse_schema

    sid = registry.register("t-value", SCHEMA)
    other = registry.register("t-value", {**SCHEMA, "fields": [*SCHEMA["fields"], {"name": "b", "type": "int"}]})
    good = confluent_frame(sid, write_body(parse_schema(SCHEMA), {"a": 5, "s": "x"}))
    payloads = [
        good,  # teaches the decoder the id
        good,
        confluent_frame(sid, write_body(parse_schema(SCHEMA), {"a": -1, "s": "é" * 40})),
        good[:-1],  # truncated body
        good + b"\x00",  # a byte left over
        good[:3],  # truncated header: fewer than 4 id bytes
        good[:5],  # header only
        confluent_frame(other, write_body(parse_schema(SCHEMA), {"a": 1, "s": "y"})),  # another id: fetched
        confluent_frame(999, b"\x02"),  # an id the registry does not have
        b'{"a": 1}',  # JSON after Avro
    ]
    records = parse_event(build_event([Rec("t", 0, i, p) for i, p in enumerate(payloads)]))
    fast = Decoder(kind, registry_url=registry.url)
    full = Decoder(kind, registry_url=registry.url)
    for rec, payload in zip(records, payloads, strict=True):
        expected = outcome(lambda p=payload: full.decode(p, full.value_kind, "value", None, None))
        assert outcome(lambda r=rec: fast.value(r)) == expected, payload
    assert set(fast._framed_readers) == {b"\x00" + sid.to_bytes(4, "big"), b"\x00" + other.to_bytes(4, "big")}
    assert fast.value(records[1]) == {"a": 5, "s": "x"}
