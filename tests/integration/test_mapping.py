"""Every mapping rule of docs/kcql.md, including where the sink differs from the Stream Reactor sink.

Most tests go end to end: a Kafka event through ``handler.app.lambda_handler`` into the real
InfluxDB, read back. Rules that InfluxDB cannot show (types the JSON decoder never yields,
counters) are fast unit tests on ``Plan``. Errors use the default THROW policy: the batch fails
with ``BatchFailed`` naming topic, partition, offset and the reason, and nothing is written.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from handler import app
from handler.app import lambda_handler
from handler.decode import Decoder
from handler.errors import BatchFailed, RecordError
from handler.mapping import Context, Plan, Point
from handler.records import KafkaRecord
from influx_sink_tools.eventgen import Rec, build_event
from kcql import KcqlError, parse
from tests._lines import point_of
from tests.conftest import field_types, json_event, query_points, tag_keys

pytestmark = pytest.mark.influx

Row = tuple[str, dict[str, str], dict[str, Any], int]


def stored(influx: Any, db: str) -> list[Row]:
    """Every point in the database: (measurement, tags, fields, time ns), sorted by measurement/time."""
    res = influx.query("SELECT * FROM /.*/ GROUP BY *", db=db)["results"][0]
    out: list[Row] = []
    for series in res.get("series", []):
        for values in series["values"]:
            row = dict(zip(series["columns"], values, strict=True))
            t = row.pop("time")
            # GROUP BY * reports a tag the series lacks (but the measurement has) as "".
            tags = {k: v for k, v in series.get("tags", {}).items() if v != ""}
            out.append((series["name"], tags,
                        {k: v for k, v in row.items() if v is not None}, t))
    return sorted(out, key=lambda r: (r[0], r[3]))


def write(sink_env: Callable[..., None], kcql: str, event: dict[str, Any]) -> None:
    sink_env(kcql)
    assert lambda_handler(event, None) == {"batchItemFailures": []}


def fails(sink_env: Callable[..., None], influx: Any, db: str, kcql: str, event: dict[str, Any]) -> str:
    """The BatchFailed message; also checks that nothing of the batch reached the database."""
    sink_env(kcql)
    with pytest.raises(BatchFailed) as info:
        lambda_handler(event, None)
    assert stored(influx, db) == []
    return str(info.value)


def one_point(influx: Any, db: str) -> Row:
    (row,) = stored(influx, db)
    return row


def failure(offset: int, reason: str, topic: str = "topic1", partition: int = 0) -> str:
    return f"topic={topic} partition={partition} offset={offset}: {reason}"


# ---------------------------------------------------------------- unit-test helpers


def record(value: Any, key: Any = None, headers: list[tuple[str, bytes]] | None = None, topic: str = "t",
           raw_key: bytes | None = None) -> KafkaRecord:
    """A KafkaRecord exactly as parse_event builds it from an event."""
    from handler.records import parse_event
    from influx_sink_tools.eventgen import record_json

    rec = Rec(topic, 0, 7, json.dumps(value).encode() if value is not None else None,
              raw_key if raw_key is not None else (None if key is None else json.dumps(key).encode()),
              headers=headers or [], timestamp=1_700_000_000_123)
    (parsed,) = parse_event({"eventSource": "aws:kafka", "records": {f"{topic}-0": [record_json(rec)]}})
    return parsed


def points(kcql: str, value: Any, **kw: Any) -> list[Point]:
    """The record's lines, read back as points."""
    return [point_of(line) for line in Plan(parse(kcql)).lines(record(value, **kw))]


def point(kcql: str, value: Any, **kw: Any) -> Point:
    (p,) = points(kcql, value, **kw)
    return p


def map_error(kcql: str, value: Any, **kw: Any) -> RecordError:
    with pytest.raises(RecordError) as info:
        points(kcql, value, **kw)
    return info.value


def compiled_point(kcql: str, value: dict[str, Any]) -> Point:
    """Map a Python value the JSON decoder never produces (Avro types: bytes, decimal, dates)."""
    plan = Plan(parse(kcql))
    (compiled,) = plan.by_topic["t"]
    line = compiled.line(Context(record({}), value, Decoder(), plan.stats), value)
    if isinstance(line, RecordError):
        raise line
    return point_of(line)


# ================================================================ paths


def test_nested_key_paths(sink_env, influx, db):
    key = {"device": {"site": {"id": "s-1"}, "n": 4}}
    write(sink_env, "INSERT INTO m SELECT _key.device.n, v FROM topic1 WITHTAG(_key.device.site.id AS site)",
          json_event([{"v": 1.5}], keys=[key]))
    assert one_point(influx, db)[:3] == ("m", {"site": "s-1"}, {"n": 4, "v": 1.5})


def test_a_field_literally_named_with_a_dot_and_value_prefix(sink_env, influx, db):
    value = {"a.b": 1, "a": {"b": 2}, "_key": "payload-key", "_topic": "payload-topic"}
    write(sink_env, "INSERT INTO m SELECT `a.b` AS dotted, a.b AS nested, _value._key AS pk, _value._topic AS pt "
                    "FROM topic1", json_event([value], keys=["the-key"]))
    assert one_point(influx, db)[2] == {"dotted": 1, "nested": 2, "pk": "payload-key", "pt": "payload-topic"}


def test_headers_utf8_from_java_signed_bytes(sink_env, influx, db):
    text = "héllo wörld ✓ 🚀"
    assert any(b > 127 for b in text.encode())  # sent as negative Java bytes by the event source
    event = build_event([Rec("topic1", 0, 0, b'{"v": 1}', headers=[
        ("trace", text.encode()), ("binary", b"\xff\xfe\x00"), ("trace", b"second wins? no")])])
    write(sink_env, "INSERT INTO m SELECT v, _header.trace AS t FROM topic1 WITHTAG(_header.trace)", event)
    # The first of a repeated header wins; an unused binary header does not matter.
    assert one_point(influx, db)[:3] == ("m", {"trace": text}, {"v": 1, "t": text})


def test_header_that_is_not_utf8_fails_only_when_used(sink_env, influx, db):
    event = build_event([Rec("topic1", 0, 3, b'{"v": 1}', headers=[("bin", b"\xff\xfe")])])
    msg = fails(sink_env, influx, db, "INSERT INTO m SELECT v FROM topic1 WITHTAG(_header.bin)", event)
    assert failure(3, "tag 'bin': header 'bin' is not UTF-8 text (") in msg


def test_missing_header_tag_is_left_out_and_missing_header_field_fails(sink_env, influx, db):
    event = build_event([Rec("topic1", 0, 0, b'{"v": 1}')])
    write(sink_env, "INSERT INTO m SELECT v FROM topic1 WITHTAG(_header.absent)", event)
    assert one_point(influx, db)[1] == {}
    assert map_error("INSERT INTO m SELECT v, _header.absent FROM t", {"v": 1}).reason == \
        "selected field '_header.absent' is missing"


def test_metadata_paths_as_fields_and_tags(sink_env, influx, db):
    event = json_event([{"v": 1}], partition=3, start_offset=41)
    (rec,) = event["records"]["topic1-3"]
    write(sink_env, "INSERT INTO m SELECT v, _topic, _partition, _offset, _timestamp FROM topic1 "
                    "WITHTAG(_topic AS t, _partition, _offset)", event)
    assert one_point(influx, db)[:3] == (
        "m", {"t": "topic1", "_partition": "3", "_offset": "41"},
        {"v": 1, "_topic": "topic1", "_partition": 3, "_offset": 41, "_timestamp": rec["timestamp"]})
    assert field_types(influx, db, "m")["_timestamp"] == "integer"


def test_withtimestamp_kafka_record_time(sink_env, influx, db):
    event = json_event([{"v": 1}, {"v": 2}])
    write(sink_env, "INSERT INTO m SELECT v FROM topic1 WITHTIMESTAMP _timestamp", event)
    assert [r[3] for r in stored(influx, db)] == [r["timestamp"] * 10**6 for r in event["records"]["topic1-0"]]


def test_odd_keys_never_fail_records_that_do_not_use_the_key(sink_env, influx, db):
    recs = [Rec("topic1", 0, 0, b'{"v": 1}', key=b"plain string key"),
            Rec("topic1", 0, 1, b'{"v": 2}', key=b"\xff\xfe\x00\x81 binary"),
            Rec("topic1", 0, 2, b'{"v": 3}', key=None),
            Rec("topic1", 0, 3, b'{"v": 4}', key=b'{"not": "closed"')]
    write(sink_env, "INSERT INTO m SELECT v FROM topic1 WITHTAG(_topic)", build_event(recs))
    assert [r[2]["v"] for r in stored(influx, db)] == [1, 2, 3, 4]


def test_plain_string_key_is_usable_as_tag_and_field(sink_env, influx, db):
    recs = [Rec("topic1", 0, 0, b'{"v": 1}', key=b"sensor-7"), Rec("topic1", 0, 1, b'{"v": 2}', key=None)]
    write(sink_env, "INSERT INTO m SELECT v, _key AS k FROM topic1 WITHTAG(_key)", build_event(recs))
    assert [r[1:3] for r in stored(influx, db)] == [({"_key": "sensor-7"}, {"v": 1, "k": "sensor-7"}),
                                                    ({}, {"v": 2})]


def test_binary_key_fails_the_record_that_uses_it(sink_env, influx, db):
    event = build_event([Rec("topic1", 0, 9, b'{"v": 1}', key=b"\xff\xfe")])
    msg = fails(sink_env, influx, db, "INSERT INTO m SELECT v FROM topic1 WITHTAG(_key)", event)
    assert failure(9, "tag '_key': key is neither JSON nor UTF-8 text") in msg


def test_key_path_into_a_string_key_is_missing():
    err = map_error("INSERT INTO m SELECT v, _key.id FROM t", {"v": 1}, raw_key=b"plain")
    assert err.reason == "selected field '_key.id' is missing"


def test_the_key_is_decoded_only_when_a_statement_uses_it():
    class CountingDecoder(Decoder):
        keys = 0

        def key(self, rec: KafkaRecord) -> Any:
            CountingDecoder.keys += 1
            return super().key(rec)

    plan = Plan(parse("INSERT INTO a SELECT v FROM t; INSERT INTO b SELECT v FROM t WITHTAG(_topic)"),
                CountingDecoder())
    plan.lines(record({"v": 1}, raw_key=b"\xff"))
    assert CountingDecoder.keys == 0
    plan = Plan(parse("INSERT INTO a SELECT v, _key.x FROM t; INSERT INTO b SELECT v FROM t WITHTAG(_key.y)"),
                CountingDecoder())
    plan.lines(record({"v": 1}, key={"x": 1, "y": "z"}))
    assert CountingDecoder.keys == 1  # once per record, shared by the statements


# ================================================================ SELECT


def test_selected_field_named_by_alias_or_last_segment(sink_env, influx, db):
    write(sink_env, "INSERT INTO m SELECT fields.free, fields.used AS u FROM topic1",
          json_event([{"fields": {"free": 10, "used": 5}}]))
    assert one_point(influx, db)[2] == {"free": 10, "u": 5}


def test_sub_object_wildcard_differs_from_star(sink_env, influx, db):
    value = {"a": {"x": 1, "y": {"z": 2}}, "b": 3}
    write(sink_env, "INSERT INTO sub SELECT a.* FROM topic1; INSERT INTO all SELECT * FROM topic1",
          json_event([value]))
    rows = {r[0]: r[2] for r in stored(influx, db)}
    assert rows == {"sub": {"x": 1, "y_z": 2}, "all": {"a_x": 1, "a_y_z": 2, "b": 3}}


def test_key_star_selects_every_key_field(sink_env, influx, db):
    write(sink_env, "INSERT INTO m SELECT _key.*, v FROM topic1", json_event([{"v": 1}], keys=[{"id": "k1", "n": 2}]))
    assert one_point(influx, db)[2] == {"id": "k1", "n": 2, "v": 1}


def test_star_and_alias_write_everything_but_the_aliased_field(sink_env, influx, db):
    write(sink_env, "INSERT INTO m SELECT *, name AS who, a.b AS ab, _key.*, _key.k AS kk FROM topic1",
          json_event([{"name": "N", "x": 1, "a": {"b": 2, "c": 3}}], keys=[{"k": "K", "j": "J"}]))
    assert one_point(influx, db)[2] == {"who": "N", "x": 1, "ab": 2, "a_c": 3, "kk": "K", "j": "J"}


def test_star_and_unaliased_explicit_field_write_it_once(sink_env, influx, db):
    write(sink_env, "INSERT INTO m SELECT *, name FROM topic1", json_event([{"name": "N", "x": 1}]))
    assert one_point(influx, db)[2] == {"name": "N", "x": 1}


def test_nested_objects_are_flattened_with_underscores(sink_env, influx, db):
    value = {"name": {"first": "A", "last": "B"}, "geo": {"pos": {"lat": 1.5, "lon": -2.5}}, "ok": True}
    write(sink_env, "INSERT INTO m SELECT * FROM topic1; INSERT INTO n SELECT name, geo.pos AS p FROM topic1",
          json_event([value]))
    rows = {r[0]: r[2] for r in stored(influx, db)}
    assert rows["m"] == {"name_first": "A", "name_last": "B", "geo_pos_lat": 1.5, "geo_pos_lon": -2.5, "ok": True}
    assert rows["n"] == {"name_first": "A", "name_last": "B", "p_lat": 1.5, "p_lon": -2.5}


def test_arrays_are_flattened_with_the_index_appended(sink_env, influx, db):
    value = {"tags": ["a", "b"], "matrix": [[1, 2], [3]], "items": [{"id": 7, "q": 0.5}], "empty": [],
             "none": {}, "v": 1}
    write(sink_env, "INSERT INTO m SELECT * FROM topic1", json_event([value]))
    assert one_point(influx, db)[2] == {"tags0": "a", "tags1": "b", "matrix00": 1, "matrix01": 2, "matrix10": 3,
                                        "items0_id": 7, "items0_q": 0.5, "v": 1}


def test_an_empty_array_writes_nothing_and_may_leave_no_fields(sink_env, influx, db):
    msg = fails(sink_env, influx, db, "INSERT INTO m SELECT tags FROM topic1", json_event([{"tags": []}]))
    assert failure(0, "the point has no fields (InfluxDB cannot store a point without fields)") in msg


def test_ignore_top_level_and_nested_full_paths(sink_env, influx, db):
    value = {"name": {"first": "A", "last": "B"}, "a": {"b": {"c": 1, "d": 2}, "e": 3}, "x": 4, "y": 5}
    write(sink_env, "INSERT INTO m SELECT * FROM topic1 IGNORE name.first, a.b.c, y", json_event([value]))
    assert one_point(influx, db)[2] == {"name_last": "B", "a_b_d": 2, "a_e": 3, "x": 4}


def test_ignore_applies_below_a_sub_object_wildcard(sink_env, influx, db):
    write(sink_env, "INSERT INTO m SELECT a.* FROM topic1 IGNORE a.x, a.y.z",
          json_event([{"a": {"x": 1, "y": {"z": 2, "w": 3}, "v": 4}}]))
    assert one_point(influx, db)[2] == {"y_w": 3, "v": 4}


def test_ignored_fields_still_serve_as_tag_timestamp_and_target(sink_env, influx, db):
    value = {"host": "h1", "ts": 1_600_000_000_000, "kind": "cpu", "load": 0.5}
    write(sink_env, "INSERT INTO fallback SELECT * FROM topic1 IGNORE host, ts, kind WITHTAG(host) "
                    "WITHTIMESTAMP ts WITHTARGET=kind", json_event([value]))
    assert one_point(influx, db) == ("cpu", {"host": "h1"}, {"load": 0.5}, 1_600_000_000_000 * 10**6)


def test_timestamp_field_stays_a_field_unless_ignored(sink_env, influx, db):
    write(sink_env, "INSERT INTO m SELECT * FROM topic1 WITHTIMESTAMP ts; "
                    "INSERT INTO n SELECT * FROM topic1 IGNORE ts WITHTIMESTAMP ts",
          json_event([{"ts": 5, "v": 1}]))
    assert {r[0]: r[2] for r in stored(influx, db)} == {"m": {"ts": 5, "v": 1}, "n": {"v": 1}}


def test_missing_explicit_path_fails_that_record(sink_env, influx, db):
    event = json_event([{"a": 1, "b": 2}, {"a": 1}, {"a": 1, "b": None}])
    msg = fails(sink_env, influx, db, "INSERT INTO m SELECT a, b FROM topic1", event)
    assert msg.startswith("1 record(s) failed, batch not acknowledged: ")
    assert failure(1, "selected field 'b' is missing") in msg


def test_missing_nested_path_and_missing_sub_object_fail():
    assert map_error("INSERT INTO m SELECT a.b.c FROM t", {"a": {"b": {}}}).reason == \
        "selected field 'a.b.c' is missing"
    assert map_error("INSERT INTO m SELECT a.b FROM t", {"a": "text"}).reason == "selected field 'a.b' is missing"
    assert map_error("INSERT INTO m SELECT a.* FROM t", {"b": 1}).reason == "'a.*': there is no a in the record"
    assert map_error("INSERT INTO m SELECT a.* FROM t", {"a": [1]}).reason == \
        "'a.*' selects the fields of an object, but the a is a list"
    assert map_error("INSERT INTO m SELECT * FROM t", "text").reason == \
        "'*' selects the fields of an object, but the payload is a str"
    assert map_error("INSERT INTO m SELECT * FROM t", [1, 2]).reason == \
        "array element 0 is a number (1), not an object: each element of an array value is one point"
    assert map_error("INSERT INTO m SELECT _key.* FROM t", {"v": 1}, raw_key=b"text").reason == \
        "'_key.*' selects the fields of an object, but the payload is a str"


def test_null_fields_are_left_out_explicit_or_star(sink_env, influx, db):
    value = {"a": None, "b": 1, "c": {"d": None, "e": 2}, "f": [None, 3]}
    write(sink_env, "INSERT INTO s SELECT * FROM topic1; INSERT INTO e SELECT a, b, c.d, c.e, f FROM topic1",
          json_event([value]))
    assert {r[0]: r[2] for r in stored(influx, db)} == {"s": {"b": 1, "c_e": 2, "f1": 3},
                                                        "e": {"b": 1, "e": 2, "f1": 3}}


def test_a_point_with_no_fields_fails_the_record(sink_env, influx, db):
    event = json_event([{"v": 1}, {}, {"a": None}], start_offset=10)
    msg = fails(sink_env, influx, db, "INSERT INTO m SELECT * FROM topic1", event)
    reason = "the point has no fields (InfluxDB cannot store a point without fields)"
    assert msg.startswith("2 record(s) failed")
    assert failure(11, reason) in msg and failure(12, reason) in msg


# ================================================================ types


def test_json_types(sink_env, influx, db):
    value = {"b": True, "i": 12, "neg": -3, "f": 1.5, "whole_float": 2.0, "s": "text", "max": 2**63 - 1,
             "min": -(2**63)}
    write(sink_env, "INSERT INTO m SELECT * FROM topic1", json_event([value]))
    assert field_types(influx, db, "m") == {"b": "boolean", "i": "integer", "neg": "integer", "f": "float",
                                            "whole_float": "float", "s": "string", "max": "integer",
                                            "min": "integer"}
    assert one_point(influx, db)[2] == value


@pytest.mark.parametrize("big", [2**63, -(2**63) - 1, 10**30])
def test_integer_outside_int64_fails_the_record(sink_env, influx, db, big):
    msg = fails(sink_env, influx, db, "INSERT INTO m SELECT * FROM topic1", json_event([{"n": {"big": big}}]))
    assert failure(0, f"field 'n_big': integer {big} is outside int64") in msg


def test_nan_and_infinity_are_left_out_and_counted(sink_env, influx, db):
    event = json_event([{"v": 1.0, "nan": float("nan"), "inf": float("inf"), "ninf": float("-inf")},
                        {"v": 2.0, "arr": [float("nan"), 3.0]}])
    assert b"NaN" in json.dumps(float("nan")).encode()  # plain JSON as Java's Jackson writes it
    sink_env("INSERT INTO m SELECT * FROM topic1")
    plan = app.get_runtime().plan
    before = plan.stats.non_finite
    assert lambda_handler(event, None) == {"batchItemFailures": []}
    assert plan.stats.non_finite - before == 4
    assert [r[2] for r in stored(influx, db)] == [{"v": 1.0}, {"v": 2.0, "arr1": 3.0}]


def test_non_finite_timestamp_fails():
    assert map_error("INSERT INTO m SELECT v FROM t WITHTIMESTAMP ts", {"v": 1, "ts": float("nan")}).reason == \
        "timestamp 'ts' is nan"


def test_types_the_json_decoder_never_yields():
    kcql = "INSERT INTO m SELECT * FROM t"
    p = compiled_point(kcql, {"dec": Decimal("12.50"), "day": dt.date(1970, 1, 2),
                              "at": dt.datetime(1970, 1, 1, 0, 0, 1, 500_000, tzinfo=dt.UTC),
                              "clock": dt.time(1, 0, 0, 250_000), "t": (1, 2)})
    assert p.fields == {"dec": 12.5, "day": 86_400_000, "at": 1500, "clock": 3_600_250, "t0": 1, "t1": 2}
    with pytest.raises(RecordError) as info:
        compiled_point(kcql, {"raw": b"\x00\x01"})
    assert info.value.reason == "field 'raw': bytes cannot be written to InfluxDB"
    with pytest.raises(RecordError) as info:
        compiled_point(kcql, {"obj": object()})
    assert info.value.reason == "field 'obj': values of type object cannot be written"


# ================================================================ tags


def test_tag_named_by_last_segment_and_renamed(sink_env, influx, db):
    write(sink_env, "INSERT INTO m SELECT v FROM topic1 WITHTAG(tags.host, tags.dc AS datacenter, c=1)",
          json_event([{"v": 1, "tags": {"host": "h1", "dc": "eu"}}]))
    assert one_point(influx, db)[1] == {"host": "h1", "datacenter": "eu", "c": "1"}
    assert tag_keys(influx, db, "m") == {"host", "datacenter", "c"}


def test_constant_tags_bare_and_quoted(sink_env, influx, db):
    write(sink_env, "INSERT INTO m SELECT v FROM topic1 WITHTAG(Influx=rulz!, region='eu west', q='it''s', e='')",
          json_event([{"v": 1}]))
    assert one_point(influx, db)[1] == {"Influx": "rulz!", "region": "eu west", "q": "it's"}


def test_tag_values_become_strings(sink_env, influx, db):
    value = {"age": 27, "ok": True, "no": False, "balance": 3589.15, "neg": -1, "big": 2**70, "tiny": 1e-7,
             "s": "x", "v": 1}
    write(sink_env, "INSERT INTO m SELECT v FROM topic1 WITHTAG(age, ok, no, balance, neg, big, tiny, s)",
          json_event([value]))
    assert one_point(influx, db)[1] == {"age": "27", "ok": "true", "no": "false", "balance": "3589.15",
                                        "neg": "-1", "big": str(2**70), "tiny": "1e-07", "s": "x"}


def test_missing_null_or_empty_tag_is_left_out(sink_env, influx, db):
    write(sink_env, "INSERT INTO m SELECT v FROM topic1 WITHTAG(missing, nul, empty, a.b, ok)",
          json_event([{"v": 1, "nul": None, "empty": "", "a": None, "ok": "y"}]))
    assert one_point(influx, db)[1] == {"ok": "y"}


def test_object_or_array_tag_value_fails(sink_env, influx, db):
    msg = fails(sink_env, influx, db, "INSERT INTO m SELECT v FROM topic1 WITHTAG(o)",
                json_event([{"v": 1, "o": {"x": 1}}]))
    assert failure(0, "tag 'o': a dict cannot be a tag value") in msg


def test_tag_may_share_its_name_with_a_field(sink_env, influx, db):
    write(sink_env, "INSERT INTO both SELECT * FROM topic1 WITHTAG(eyeColor); "
                    "INSERT INTO tagonly SELECT * FROM topic1 IGNORE eyeColor WITHTAG(eyeColor)",
          json_event([{"eyeColor": "brown", "v": 1}]))
    rows = {r[0]: r[1:3] for r in stored(influx, db)}
    assert rows["both"] == ({"eyeColor": "brown"}, {"eyeColor": "brown", "v": 1})
    assert rows["tagonly"] == ({"eyeColor": "brown"}, {"v": 1})
    (row,) = query_points(influx, db, 'SELECT * FROM "both"')
    assert (row["eyeColor"], row["eyeColor_1"]) == ("brown", "brown")  # InfluxDB 1.x naming in SELECT *


def test_time_field_and_tag_are_left_out_with_one_warning_per_statement(sink_env, influx, db, caplog):
    event = json_event([{"time": 1, "v": 1, "o": {"x": 1}}, {"time": 2, "v": 2, "o": {"x": 2}}])
    kcql = ("INSERT INTO a SELECT * FROM topic1; INSERT INTO b SELECT v, time FROM topic1 WITHTAG(o.x AS time);"
            "INSERT INTO c SELECT *, time AS event_time FROM topic1 WITHTAG(time AS t)")
    with caplog.at_level(logging.WARNING, logger="handler.mapping"):
        write(sink_env, kcql, event)
    rows = stored(influx, db)
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("a", {}, {"v": 1, "o_x": 1}), ("a", {}, {"v": 2, "o_x": 2}),
        ("b", {}, {"v": 1}), ("b", {}, {"v": 2}),
        ("c", {"t": "1"}, {"event_time": 1, "v": 1, "o_x": 1}), ("c", {"t": "2"}, {"event_time": 2, "v": 2, "o_x": 2}),
    ]
    warnings = [r.getMessage() for r in caplog.records if r.name == "handler.mapping"]
    assert len(warnings) == 3, warnings  # a's field, b's field, b's tag: once each, not once per record
    assert sum("a field named 'time' is left out" in w for w in warnings) == 2
    assert sum("tag 'time' is left out" in w for w in warnings) == 1


# ================================================================ measurement


def test_withtarget_uses_the_value_and_falls_back_to_the_insert_name(sink_env, influx, db):
    values = [{"kind": "cpu", "v": 1}, {"v": 2}, {"kind": None, "v": 3}, {"kind": "", "v": 4}, {"kind": 27, "v": 5}]
    write(sink_env, "INSERT INTO fallback SELECT v FROM topic1 WITHTARGET=kind", json_event(values))
    assert sorted((r[0], r[2]["v"]) for r in stored(influx, db)) == [
        ("27", 5), ("cpu", 1), ("fallback", 2), ("fallback", 3), ("fallback", 4)]


def test_withtarget_from_key_header_or_topic(sink_env, influx, db):
    recs = [Rec("topic1", 0, 0, b'{"v": 1}', key=b'{"m": "from_key"}', headers=[("m", b"from_header")])]
    write(sink_env, "INSERT INTO x SELECT v FROM topic1 WITHTARGET=_key.m; "
                    "INSERT INTO x SELECT v FROM topic1 WITHTARGET=_header.m; "
                    "INSERT INTO x SELECT v FROM topic1 WITHTARGET=_topic", build_event(recs))
    assert sorted(r[0] for r in stored(influx, db)) == ["from_header", "from_key", "topic1"]


def test_withtarget_object_fails():
    assert map_error("INSERT INTO m SELECT v FROM t WITHTARGET=o", {"v": 1, "o": [1]}).reason == \
        "WITHTARGET: a list cannot be a tag value"


# ================================================================ timestamps

T_MS = 1_569_370_313_870


def run_time(sink_env, influx, db, ts: Any, unit: str | None = None) -> int:
    kcql = "INSERT INTO m SELECT v FROM topic1 WITHTIMESTAMP ts" + (f" TIMESTAMPUNIT={unit}" if unit else "")
    write(sink_env, kcql, json_event([{"v": 1, "ts": ts}]))
    return one_point(influx, db)[3]


@pytest.mark.parametrize("unit, ts, ns", [
    (None, T_MS, T_MS * 10**6),
    ("MILLISECONDS", T_MS, T_MS * 10**6),
    ("NANOSECONDS", 1_569_370_313_870_123_457, 1_569_370_313_870_123_457),
    ("MICROSECONDS", 1_569_370_313_870_123, 1_569_370_313_870_123_000),
    ("SECONDS", 1_569_370_313, 1_569_370_313 * 10**9),
    ("MINUTES", 26_156_171, 26_156_171 * 60 * 10**9),
    ("HOURS", 435_936, 435_936 * 3600 * 10**9),
    ("DAYS", 18_164, 18_164 * 86_400 * 10**9),
    ("days", -1, -86_400 * 10**9),
])
def test_integer_timestamps_scaled_exactly_in_each_unit(sink_env, influx, db, unit, ts, ns):
    assert run_time(sink_env, influx, db, ts, unit) == ns


def test_float_timestamp_without_unit_is_epoch_seconds(sink_env, influx, db):
    assert run_time(sink_env, influx, db, 1.56937031387e9) == T_MS * 10**6


@pytest.mark.parametrize("unit, ts, ns", [
    ("MILLISECONDS", 1569370313870.5, 1_569_370_313_870_500_000),
    ("SECONDS", 1.56937031387e9, T_MS * 10**6),
    ("HOURS", 1.5, 5_400 * 10**9),
])
def test_float_timestamp_with_unit(unit, ts, ns):
    kcql = f"INSERT INTO m SELECT v FROM t WITHTIMESTAMP ts TIMESTAMPUNIT={unit}"
    assert point(kcql, {"v": 1, "ts": ts}).time_ns == ns


@pytest.mark.parametrize("ts, unit, ns", [
    (str(T_MS), None, T_MS * 10**6),
    ("1569370313", "SECONDS", 1_569_370_313 * 10**9),
    ("-5", "DAYS", -5 * 86_400 * 10**9),
])
def test_digit_strings_are_integers(sink_env, influx, db, ts, unit, ns):
    assert run_time(sink_env, influx, db, ts, unit) == ns


@pytest.mark.parametrize("ts", [
    "2019-09-25T00:11:53.870123456Z",
    "2019-09-25T02:11:53.870123456+02:00",
    "2019-09-24T21:41:53.870123456-02:30",
    "2019-09-25T02:11:53.870123456+0200",
    "2019-09-25 00:11:53.870123456z",
])
def test_iso_8601_with_a_zone_keeps_sub_millisecond_digits(sink_env, influx, db, ts):
    assert run_time(sink_env, influx, db, ts) == 1_569_370_313_870_123_456


@pytest.mark.parametrize("ts, ns", [
    ("2019-09-25T00:11:53Z", 1_569_370_313 * 10**9),
    ("2019-09-25T00:11Z", 1_569_370_260 * 10**9),
    ("2019-09-25T00:11:53.8+00:00", 1_569_370_313_800_000_000),
])
def test_iso_8601_precision_variants(ts, ns):
    assert point("INSERT INTO m SELECT v FROM t WITHTIMESTAMP ts", {"v": 1, "ts": ts}).time_ns == ns


@pytest.mark.parametrize("value, reason", [
    ({"v": 1}, "timestamp 'ts' is missing"),
    ({"v": 1, "ts": None}, "timestamp 'ts' is null"),
    ({"v": 1, "ts": "2019-09-25T00:11:53"}, "timestamp '2019-09-25T00:11:53' is not an ISO-8601 instant with a zone "
                                            "(Z or +hh:mm)"),
    ({"v": 1, "ts": "yesterday"}, "timestamp 'yesterday' is not an ISO-8601 instant with a zone (Z or +hh:mm)"),
    ({"v": 1, "ts": True}, "timestamp 'ts' is a bool, not a time"),
    ({"v": 1, "ts": {"s": 1}}, "timestamp 'ts' is a dict, not a time"),
    ({"v": 1, "ts": 10**17}, "timestamp 'ts' = 100000000000000000 is outside what InfluxDB can store "
                             "(1677-09-21 .. 2262-04-11)"),
    ({"v": 1, "ts": "1500-01-01T00:00:00Z"}, "timestamp 'ts' = '1500-01-01T00:00:00Z' is outside what InfluxDB can "
                                             "store (1677-09-21 .. 2262-04-11)"),
])
def test_timestamp_errors_fail_the_record(sink_env, influx, db, value, reason):
    msg = fails(sink_env, influx, db, "INSERT INTO m SELECT v FROM topic1 WITHTIMESTAMP ts", json_event([value]))
    assert failure(0, reason) in msg


def test_timestamp_boundaries_inside_influx_range(sink_env, influx, db):
    write(sink_env, "INSERT INTO m SELECT v FROM topic1 WITHTIMESTAMP ts TIMESTAMPUNIT=NANOSECONDS",
          json_event([{"v": 1, "ts": -9223372036854775806}, {"v": 2, "ts": 9223372036854775806}]))
    assert [r[3] for r in stored(influx, db)] == [-9223372036854775806, 9223372036854775806]


def test_nested_timestamp_path(sink_env, influx, db):
    assert run_time_nested(sink_env, influx, db) == T_MS * 10**6


def run_time_nested(sink_env, influx, db) -> int:
    write(sink_env, "INSERT INTO m SELECT v FROM topic1 WITHTIMESTAMP meta.time.created",
          json_event([{"v": 1, "meta": {"time": {"created": T_MS}}}]))
    return one_point(influx, db)[3]


def test_sys_time_is_now_and_never_repeats_within_a_batch(sink_env, influx, db):
    before = time.time_ns()
    write(sink_env, "INSERT INTO m SELECT v FROM topic1 WITHTIMESTAMP sys_time(); INSERT INTO m SELECT v FROM topic1",
          json_event([{"v": i} for i in range(50)]))
    after = time.time_ns()
    times = [r[3] for r in stored(influx, db)]
    assert len(times) == len(set(times)) == 100  # same series, nothing overwritten
    assert before <= min(times) and max(times) <= after + 100


# ================================================================ topics and statements


def test_record_whose_topic_has_no_statement_fails(sink_env, influx, db):
    event = build_event([Rec("topic1", 0, 0, b'{"v": 1}'), Rec("orders", 2, 17, b'{"v": 2}')])
    msg = fails(sink_env, influx, db, "INSERT INTO m SELECT v FROM topic1; INSERT INTO n SELECT v FROM other", event)
    assert failure(17, "no KCQL statement reads topic 'orders' (statements read: other, topic1)", "orders", 2) in msg


def test_several_statements_on_one_topic_each_write_a_point(sink_env, influx, db):
    write(sink_env, "INSERT INTO a SELECT v FROM topic1; INSERT INTO b SELECT v AS w FROM topic1 WITHTAG(k=1);"
                    "INSERT INTO c SELECT * FROM other", json_event([{"v": 1}, {"v": 2}]))
    assert [(r[0], r[1], r[2]) for r in stored(influx, db)] == [
        ("a", {}, {"v": 1}), ("a", {}, {"v": 2}), ("b", {"k": "1"}, {"w": 1}), ("b", {"k": "1"}, {"w": 2})]


def test_tombstones_are_skipped_and_counted():
    plan = Plan(parse("INSERT INTO m SELECT * FROM t"))
    assert plan.lines(record(None)) == []
    assert plan.stats.tombstones == 1


def test_the_first_failure_of_many_is_named_with_coordinates(sink_env, influx, db):
    values = [{"v": i} if i % 2 else {"w": i} for i in range(14)]
    msg = fails(sink_env, influx, db, "INSERT INTO m SELECT v FROM topic1", json_event(values, partition=4))
    assert msg.startswith("7 record(s) failed, batch not acknowledged: topic=topic1 partition=4 offset=0: "
                          "selected field 'v' is missing; topic=topic1 partition=4 offset=2: ")
    assert msg.endswith("(and 2 more)")


# ================================================================ compiled plan


def test_statement_compile_errors_are_kcql_errors():
    from kcql import Path, PathTag, SelectField, Source, Statement

    v = Path(Source.VALUE, ("v",), "v")
    dup = Statement("m", "t", (SelectField(v),), tags=(PathTag(v), PathTag(v)))
    with pytest.raises(KcqlError, match="tag 'v' is given twice"):
        Plan((dup,))


def test_points_carry_sorted_tags_and_fields_in_selection_order():
    p = point("INSERT INTO m SELECT b, a FROM t WITHTAG(z=1, y, a AS x)", {"a": 1, "b": 2, "y": "Y"})
    assert p.tags == [("x", "1"), ("y", "Y"), ("z", "1")]
    assert list(p.fields) == ["b", "a"]
