"""Line protocol: escaping rules, and no record can inject or lose a point.

The unit tests pin the exact encoding. The end-to-end tests send records through the handler
into the real InfluxDB 1.x and read everything back: each name and value must come back exactly,
or the record must fail with a clear error, and nothing else may ever appear in the database.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from handler.app import lambda_handler
from handler.errors import BatchFailed, RecordError
from handler.lineproto import encode, escape_field_key, escape_key, escape_measurement, field_value
from handler.mapping import Point
from influx_sink_tools.eventgen import Rec, build_event

# ================================================================ unit: exact encoding


@pytest.mark.parametrize("value, text", [
    (True, "true"), (False, "false"), (0, "0i"), (-(2**63), "-9223372036854775808i"), (1.5, "1.5"),
    (1e16, "1e+16"), (-0.0, "-0.0"), ("", '""'), ("plain", '"plain"'), ('say "hi"', '"say \\"hi\\""'),
    ("C:\\dir\\", '"C:\\\\dir\\\\"'), ("two\nlines\r\n", '"two\nlines\r\n"'), ("\x00\t,= ", '"\x00\t,= "'),
])
def test_field_values(value: Any, text: str) -> None:
    assert field_value(value) == text


def test_field_value_of_an_unexpected_type_is_an_encode_error() -> None:
    with pytest.raises(RecordError) as info:
        field_value(None)
    assert (info.value.reason, info.value.kind) == ("cannot encode a NoneType field", "encode")


@pytest.mark.parametrize("name, escaped", [
    ("cpu", "cpu"), ("a b,c", "a\\ b\\,c"), ("a=b", "a=b"), ('a"b', 'a"b'), (" #x", "\\ #x"), ("x#", "x#"),
    ("back\\slash", "back\\slash"), ("\\\\x", "\\\\x"), ("ünï😀\u2028\u00a0", "ünï😀\u2028\u00a0"),
])
def test_measurement_escaping(name: str, escaped: str) -> None:
    assert escape_measurement(name) == escaped


@pytest.mark.parametrize("name, escaped", [
    ("host", "host"), ("a b,c=d", "a\\ b\\,c\\=d"), ('q"uote', 'q"uote'), ("\\,", "\\\\,"), ("\\=", "\\\\="),
    ("\\\\ ", "\\\\\\ "), ("#x", "#x"),
])
def test_tag_key_and_value_escaping(name: str, escaped: str) -> None:
    assert escape_key(name) == escaped


@pytest.mark.parametrize("name, escaped", [
    ("f", "f"), ('a b,c=d"e', 'a\\ b\\,c\\=d\\"e'), ("\\\\,", "\\\\\\,"), ("\\\"", '\\\\"'),
])
def test_field_key_escaping(name: str, escaped: str) -> None:
    assert escape_field_key(name) == escaped


@pytest.mark.parametrize("name, reason", [
    ("", "measurement is empty"),
    ("a\nb", "measurement 'a\\nb' cannot be written: it contains a newline, which would end the line"),
    ("m\\", "measurement 'm\\\\' cannot be written: it ends with a backslash, which would escape the separator "
            "after it"),
    ("#m", "measurement '#m' cannot be written: it starts with '#', which makes the line a comment"),
    ("\tm", "measurement '\\tm' cannot be written: it contains the control character '\\t' (U+0009); names and "
            "tag values carry none"),
    ("m\r", "measurement 'm\\r' cannot be written: it contains the control character '\\r' (U+000D); names and "
            "tag values carry none"),
    ("a\\,b", "measurement 'a\\\\,b' cannot be written: it has a backslash right before ',', which line protocol "
              "cannot carry there"),
    ("a\\ b", "measurement 'a\\\\ b' cannot be written: it has a backslash right before ' ', which line protocol "
              "cannot carry there"),
    ("a\\=b", "measurement 'a\\\\=b' cannot be written: it has a backslash right before '=', which line protocol "
              "cannot carry there"),
    ('a\\"b', "measurement 'a\\\\\"b' cannot be written: it has a backslash right before '\"', which line "
              "protocol cannot carry there"),
    ("a\\\\,b", "measurement 'a\\\\\\\\,b' cannot be written: it has a backslash right before ',', which line "
                "protocol cannot carry there"),
    ("\udfffm", "measurement '\\udfffm' cannot be written: it contains the lone surrogate '\\udfff', which is not "
                "Unicode text"),
])
def test_measurements_that_cannot_be_carried(name: str, reason: str) -> None:
    with pytest.raises(RecordError) as info:
        escape_measurement(name)
    assert (info.value.reason, info.value.kind) == (reason, "encode")


@pytest.mark.parametrize("name, reason", [
    ("", "tag is empty"),
    ("a\nb", "contains a newline"),
    ("v\\", "ends with a backslash"),
    ("a\\ b", "has a backslash right before ' '"),
    ("a\\\\\\ b", "has a backslash right before ' '"),
    ("x\ud800", "contains the lone surrogate '\\ud800', which is not Unicode text"),
])
def test_tag_names_and_values_that_cannot_be_carried(name: str, reason: str) -> None:
    with pytest.raises(RecordError, match=re.escape(reason)):
        escape_key(name)


@pytest.mark.parametrize("name", ["a\\\\ b", "a\\,b", "a\\=b", "\\x", "a\\\"", "#", " x"])
def test_tag_backslashes_that_can_be_carried(name: str) -> None:
    escape_key(name)


@pytest.mark.parametrize("name, reason", [
    ("", "field key is empty"),
    ("a\nb", "contains a newline"),
    ("k\\", "ends with a backslash"),
    ("\tk", "contains the control character '\\t' (U+0009)"),
    ("k\x00", "contains the control character '\\x00' (U+0000)"),
    ("a\\,b", "has a backslash right before ','"),
    ("a\\=b", "has a backslash right before '='"),
    ("a\\ b", "has a backslash right before ' '"),
    ("a\\\\\\,b", "has a backslash right before ','"),
    ("\udc80", "contains the lone surrogate"),
])
def test_field_keys_that_cannot_be_carried(name: str, reason: str) -> None:
    with pytest.raises(RecordError, match=re.escape(reason)):
        escape_field_key(name)


def test_whole_lines() -> None:
    p = Point("my meas", [("host", "a,b"), ("k=k", "v v")], {"value": 1.5, "n": 3, "ok": True, "s": 'x"y'}, 17)
    assert encode(p) == 'my\\ meas,host=a\\,b,k\\=k=v\\ v value=1.5,n=3i,ok=true,s="x\\"y" 17'
    assert encode(Point("m", [], {"f": "l1\nl2"}, -5)) == 'm f="l1\nl2" -5'


def test_encode_names_the_part_that_cannot_be_carried() -> None:
    with pytest.raises(RecordError, match=r"^tag key 'a\\nb' cannot be written"):
        encode(Point("m", [("a\nb", "v")], {"f": 1}, 0))
    with pytest.raises(RecordError, match=r"^tag 'k' value 'v\\\\' cannot be written: it ends with a backslash"):
        encode(Point("m", [("k", "v\\")], {"f": 1}, 0))
    with pytest.raises(RecordError, match=r"^field key 'f\\n' cannot be written"):
        encode(Point("m", [], {"f\n": 1}, 0))


def test_long_names_are_shortened_in_messages() -> None:
    with pytest.raises(RecordError) as info:
        escape_measurement("x" * 200 + "\n")
    assert info.value.reason.startswith("measurement '" + "x" * 77 + "...' cannot be written")


# ================================================================ end to end

_dbs = itertools.count()


def _query(influx: Any, q: str, db: str) -> list[dict[str, Any]]:
    res = influx.query(q, db=db)["results"][0]
    assert "error" not in res, res
    return res.get("series", [])  # type: ignore[no-any-return]


def database_contents(influx: Any, db: str) -> dict[str, Any]:
    """Everything in ``db``, read without quoting any name: measurements, series, tags, fields, rows."""
    measurements = sorted(v[0] for s in _query(influx, "SHOW MEASUREMENTS", db) for v in s["values"])
    series = [v[0] for s in _query(influx, "SHOW SERIES", db) for v in s["values"]]
    field_keys = {s["name"]: {k: t for k, t in s["values"]} for s in _query(influx, "SHOW FIELD KEYS", db)}
    tag_keys = {s["name"]: {v[0] for v in s["values"]} for s in _query(influx, "SHOW TAG KEYS", db)}
    rows = []
    for s in _query(influx, "SELECT * FROM /.*/ GROUP BY *", db):
        for values in s["values"]:
            row = dict(zip(s["columns"], values, strict=True))
            rows.append((s["name"], {k: v for k, v in s.get("tags", {}).items() if v != ""},
                         {k: v for k, v in row.items() if v is not None and k != "time"}, row["time"]))
    return {"measurements": measurements, "series": len(series), "field_keys": field_keys, "tag_keys": tag_keys,
            "rows": sorted(rows, key=lambda r: (r[0], r[3]))}


# What the sink promises about names it cannot carry (docs/kcql.md, handler/lineproto.py).
_ODD_BACKSLASH_BEFORE = r"(?<!\\)(?:\\\\)*\\[{}]"


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def _has_control(text: str) -> bool:
    """Unicode category Cc: no name or tag value may hold one."""
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)


def measurement_ok(name: str) -> bool:
    return not (_has_control(name) or name.endswith("\\") or name[0] == "#" or re.search(r'\\[, ="]', name)
                or _has_surrogate(name))


def tag_ok(text: str) -> bool:
    return not (_has_control(text) or text.endswith("\\") or re.search(_ODD_BACKSLASH_BEFORE.format(" "), text)
                or _has_surrogate(text))


def field_key_ok(key: str) -> bool:
    return not (_has_control(key) or key.endswith("\\")
                or re.search(_ODD_BACKSLASH_BEFORE.format(",= "), key) or _has_surrogate(key))


# Characters that line protocol, JSON, KCQL or InfluxQL treat specially, plus odd Unicode. The
# "breakers" are the ones that can make a name impossible to carry.
HARMLESS = [*",= \"'`{}()/;.*", "\u2028", "\u2029", "\ufeff", "\u00a0", "😀", "é"]
BREAKERS = ["\\", "\n", "#", "\t", "\x00", "\r", "\x0b", "\x1f", "\x7f", "\x85"]
_plain = st.characters(exclude_categories=("Cs", "Cc"), exclude_characters="\\#")
_harmless = st.sampled_from(HARMLESS)
_any_special = st.sampled_from(HARMLESS + BREAKERS)
_surrogate = st.sampled_from(["\ud800", "\udfff"])
# Backslashes next to separators are where line protocol parsers disagree.
_pairs = st.sampled_from(["\\,", "\\ ", "\\=", '\\"', "\\\\", "\\\n", " \n", '="', ',\n'])


def _text(*parts: st.SearchStrategy[str], min_size: int = 1, max_size: int = 8) -> st.SearchStrategy[str]:
    return st.lists(st.one_of(*parts), min_size=min_size, max_size=max_size).map("".join)


def _sometimes(rare: st.SearchStrategy[str], usual: st.SearchStrategy[str], one_in: int = 6
               ) -> st.SearchStrategy[str]:
    return st.integers(0, one_in - 1).flatmap(lambda i: rare if i == 1 else usual)


# Usually names that can be carried (full of separators and odd characters); now and then one
# with backslash pairs, newlines, leading '#' or tab, or lone surrogates, which may not be.
_mild = _text(_harmless, _plain, _plain)
_tricky = _text(_any_special, _pairs, _plain)
# JSON can carry lone surrogates (as \\ud800 escapes); they cannot become UTF-8 for InfluxDB.
_surrogates = _text(_plain, _surrogate, min_size=0)
names = _sometimes(_tricky, _mild)
json_names = _sometimes(st.one_of(_tricky, _surrogates.filter(bool)), _mild)
json_values = _sometimes(_surrogates, _text(_any_special, _pairs, _plain, min_size=0, max_size=12))
# A tag key lives in the KCQL setting (an environment variable): no NUL, no surrogate, no backtick.
tag_names = names.filter(lambda s: "`" not in s and "\x00" not in s)

TS = 1_600_000_000_000


def _kcql(tag_key: str) -> str:
    return f"INSERT INTO fallback SELECT * FROM t IGNORE m, tv, ts WITHTARGET = m WITHTIMESTAMP ts " \
           f"WITHTAG(tv AS `{tag_key}`)"


def _as_decoded(text: str) -> str:
    """What the sink sees after JSON: an escaped surrogate *pair* becomes one valid character."""
    return json.loads(json.dumps(text))  # type: ignore[no-any-return]


def _expected(meas: str, tag_key: str, tag_value: str, field_key: str, text: str, n: int) -> tuple[Any, ...] | None:
    """The row InfluxDB must hold for this record, or None when the record must fail."""
    meas, tag_value, field_key, text = (_as_decoded(x) for x in (meas, tag_value, field_key, text))
    ok = (measurement_ok(meas) and tag_ok(tag_value) and not _has_surrogate(text)
          and (tag_key == "time" or tag_ok(tag_key)) and (field_key == "time" or field_key_ok(field_key)))
    if not ok:
        return None
    tags = {} if tag_key == "time" else {tag_key: tag_value}
    fields = {"n": n} if field_key == "time" else {field_key: text, "n": n}
    return (meas, tags, fields, (TS + n) * 10**6)


def _event(records: list[tuple[str, str, str, str]]) -> dict[str, Any]:
    recs = []
    for i, (meas, tag_value, field_key, text) in enumerate(records):
        value = {"m": meas, "tv": tag_value, field_key: text, "n": i, "ts": TS + i}
        recs.append(Rec("t", 0, 100 + i, json.dumps(value).encode()))
    return build_event(recs)


def _fresh_db(influx: Any) -> str:
    name = f"lp{os.getpid()}_{next(_dbs)}"
    influx.query(f'CREATE DATABASE "{name}"')
    return name


HYPOTHESIS = settings(max_examples=150, deadline=None, derandomize=False,
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.mark.influx
@HYPOTHESIS
@given(meas=json_names, tag_key=tag_names, tag_value=json_names, field_key=json_names, text=json_values)
def test_random_names_round_trip_exactly_or_fail_clearly(sink_env: Callable[..., None], influx: Any,
                                                         meas: str, tag_key: str, tag_value: str, field_key: str,
                                                         text: str) -> None:
    meas, tag_value, field_key, text = (_as_decoded(x) for x in (meas, tag_value, field_key, text))
    assume(field_key not in ("m", "tv", "ts", "n"))
    db = _fresh_db(influx)
    try:
        sink_env(_kcql(tag_key), CONNECT_INFLUX_DB=db)
        expected = _expected(meas, tag_key, tag_value, field_key, text, 0)
        event("written" if expected else "rejected")
        if expected is None:
            with pytest.raises(BatchFailed) as info:
                lambda_handler(_event([(meas, tag_value, field_key, text)]), None)
            msg = str(info.value)
            assert msg.startswith("1 record(s) failed, batch not acknowledged: topic=t partition=0 offset=100: ")
            assert "cannot be written" in msg or "not valid Unicode" in msg, msg
            assert database_contents(influx, db) == {"measurements": [], "series": 0, "field_keys": {},
                                                     "tag_keys": {}, "rows": []}
            return
        assert lambda_handler(_event([(meas, tag_value, field_key, text)]), None) == {"batchItemFailures": []}
        got = database_contents(influx, db)
        assert got["rows"] == [expected]
        assert got["measurements"] == [meas]
        assert got["series"] == 1
        assert got["field_keys"] == {meas: {k: "string" if k != "n" else "integer" for k in expected[2]}}
        assert got["tag_keys"] == ({meas: set(expected[1])} if expected[1] else {})
    finally:
        influx.query(f'DROP DATABASE "{db}"')


@pytest.mark.influx
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(tag_key=tag_names, records=st.lists(st.tuples(json_names, json_names, json_names, json_values),
                                           min_size=2, max_size=5))
def test_a_bad_record_never_leaks_into_its_neighbours(sink_env: Callable[..., None], influx: Any, tag_key: str,
                                                      records: list[tuple[str, str, str, str]]) -> None:
    """A mixed batch under NOOP: good records written exactly, bad ones dropped, nothing else."""
    assume(all(r[2] not in ("m", "tv", "ts", "n") for r in records))
    db = _fresh_db(influx)
    try:
        sink_env(_kcql(tag_key), CONNECT_INFLUX_DB=db, CONNECT_INFLUX_ERROR_POLICY="NOOP")
        assert lambda_handler(_event(records), None) == {"batchItemFailures": []}
        expected = [e for i, r in enumerate(records) if (e := _expected(r[0], tag_key, r[1], r[2], r[3], i))]
        got = database_contents(influx, db)
        assert got["rows"] == sorted(expected, key=lambda r: (r[0], r[3]))
        assert got["measurements"] == sorted({e[0] for e in expected})
    finally:
        influx.query(f'DROP DATABASE "{db}"')


# Cases found while measuring InfluxDB 1.6.7; kept as plain regression tests.
REGRESSIONS = [
    # (measurement, tag value, field key, string value)
    ("m", "a\\,b", "f", "x\nevil f=1i 2\ny"),         # escaped comma after a backslash, newline in the string
    ("m", "a\\=b", "k\\\\,x", "x\nevil f=1i 2"),      # even run of backslashes in a field key
    ("m", 'a"b', 'k"x', 'q"\\'),                       # quotes in tag values and field keys
    (" #m", "\\x", "\\y", "\\"),                       # escaped leading space; lone backslashes
    ("m\\\\x", "t", "f", "\x00\r\n\t\x7f\x85"),         # control characters are carried in string values
    ("m\\\\x", "\tt", "f", "s"),                        # rejected: a control character in a tag value
    ("m\u2028x", "\u2028", "\u2029", "\u2028\x85"),    # Unicode line separators are not line ends
    ("m", "a\\ b", "f", "x\nevil f=1i 2"),            # rejected: odd backslash run before a space in a tag
    ("m", "v", "k\\,x", "x\nevil f=1i 2"),            # rejected: odd backslash run before ',' in a field key
    ("m\\,x", "v", "f", "s"),                          # rejected: InfluxDB would store a broken series
    ("\tm", "v", "f", "s"),                            # rejected: InfluxDB strips a leading tab
    ("m", "v", "\x00f", "s"),                          # rejected: InfluxDB strips a leading NUL in a field key
    ("#m", "v", "f", "s"),                             # rejected: a comment line
    ("m", "v", "f", "\ud800"),                         # rejected: a lone surrogate is not UTF-8
]


@pytest.mark.influx
@pytest.mark.parametrize("meas, tag_value, field_key, text", REGRESSIONS)
def test_known_tricky_records(sink_env: Callable[..., None], influx: Any, db: str, meas: str, tag_value: str,
                              field_key: str, text: str) -> None:
    good = ("m", "v", "good", "fine")
    sink_env(_kcql("tk"), CONNECT_INFLUX_ERROR_POLICY="NOOP")
    assert lambda_handler(_event([good, (meas, tag_value, field_key, text), good]), None) == {
        "batchItemFailures": []}
    expected = [e for i, r in enumerate([good, (meas, tag_value, field_key, text), good])
                if (e := _expected(r[0], "tk", r[1], r[2], r[3], i))]
    assert database_contents(influx, db)["rows"] == sorted(expected, key=lambda r: (r[0], r[3]))


# Every control character (Unicode Cc), in every part and at the start, middle and end: the
# record fails with a reason naming the character, and nothing of it reaches InfluxDB; in a
# string field value each one comes back exactly.
CONTROLS = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]]


@pytest.mark.influx
def test_control_characters_fail_names_and_are_carried_in_string_values(sink_env: Callable[..., None],
                                                                       influx: Any, db: str) -> None:
    good = ("m", "v", "good", "fine")
    records = [good]
    for i, c in enumerate(CONTROLS):
        name = (c + "x", "x" + c + "y", "x" + c)[i % 3]
        records += [(name, "v", "f", "s"), ("m", name, "f", "s"), ("m", "v", name, "s")]
    records.append(("m", "v", "all", "".join(CONTROLS)))
    sink_env(_kcql("tk"), CONNECT_INFLUX_ERROR_POLICY="NOOP")
    assert lambda_handler(_event(records), None) == {"batchItemFailures": []}
    rows = database_contents(influx, db)["rows"]
    assert rows == [("m", {"tk": "v"}, {"good": "fine", "n": 0}, (TS + 0) * 10**6),
                    ("m", {"tk": "v"}, {"all": "".join(CONTROLS), "n": len(records) - 1},
                     (TS + len(records) - 1) * 10**6)]
    sink_env(_kcql("tk"))  # THROW: the error names the record and the character
    with pytest.raises(BatchFailed) as info:
        lambda_handler(_event([("m", "a\rb", "f", "s")]), None)
    assert str(info.value) == ("1 record(s) failed, batch not acknowledged: topic=t partition=0 offset=100: "
                               "tag 'tk' value 'a\\rb' cannot be written: it contains the control character "
                               "'\\r' (U+000D); names and tag values carry none")


# ================================================================ unit: the field writer


def test_the_field_writer_leaves_out_nulls_and_non_finite_floats_and_counts_the_floats() -> None:
    from handler.lineproto import field_key_eq, field_writer

    class Counts:
        non_finite = 0

    counts, others = Counts(), []
    put = field_writer({}, field_key_eq, lambda out, name, value: others.append((name, value)), counts)
    out: list[str] = []
    put(out, [("a", 1.5), ("n", None), ("x", float("nan")), ("y", float("-inf")), ("o", {"k": 1}), ("s", 'q"')])
    assert out == ["a=1.5", 's="q\\""']
    assert counts.non_finite == 2
    assert others == [("o", {"k": 1})]
    with pytest.raises(RecordError) as info:
        put(out, [("big", 2**63)])
    assert (info.value.reason, info.value.kind) == ("field 'big': integer 9223372036854775808 is outside int64",
                                                    "mapping")


def test_unique_fields_keeps_the_first_place_and_the_last_value_of_a_key() -> None:
    from handler.lineproto import unique_fields

    assert unique_fields(["a=1i", "b\\=c=2i", "a=3i", "b=4i", "b\\=c=5i", 'x\\\\\\=y="="']) == [
        "a=3i", "b\\=c=5i", "b=4i", 'x\\\\\\=y="="']
