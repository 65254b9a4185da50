"""Reading line protocol (``handler.lineproto.parse_lines``) and writing it again (line-protocol topics).

The examples pin what each construct of InfluxDB's line protocol reads as; the property tests
write random points in every style InfluxDB accepts (escapes, boolean spellings, float forms,
spacing, CRLF, comments, missing times) and check that exactly those points are read, and that
a line-protocol topic's statement ``INSERT INTO * SELECT *`` writes exactly those points again.
tests/integration/test_lineproto_topics.py compares with a real InfluxDB 1.x.
"""

from __future__ import annotations

import base64
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handler.decode import Decoder, PayloadKind
from handler.errors import ConfigError, RecordError
from handler.lineproto import ParsedLine, Unsigned, escape_field_key, escape_key, escape_measurement, parse_lines
from handler.mapping import Plan
from handler.records import KafkaRecord
from kcql import parse

KAFKA_MS = 1_700_000_000_123


def one(text: str) -> ParsedLine:
    (line,) = parse_lines(text)
    return line


def fails(text: str) -> str:
    with pytest.raises(RecordError) as info:
        parse_lines(text)
    assert info.value.kind == "decode"
    return info.value.reason


# ================================================================ examples


@pytest.mark.parametrize("text, fields", [
    ("m v=1", {"v": 1.0}), ("m v=-1.5", {"v": -1.5}), ("m v=.5", {"v": 0.5}), ("m v=1.", {"v": 1.0}),
    ("m v=1e3", {"v": 1000.0}), ("m v=1.5E+10", {"v": 1.5e10}), ("m v=-2e-3", {"v": -0.002}),
    ("m v=-0.0", {"v": -0.0}), ("m v=12i", {"v": 12}), ("m v=-9223372036854775808i", {"v": -(2**63)}),
    ("m v=007i", {"v": 7}), ("m v=18446744073709551615u", {"v": 2**64 - 1}),
    ("m a=t,b=T,c=true,d=True,e=TRUE", dict.fromkeys("abcde", True)),
    ("m a=f,b=F,c=false,d=False,e=FALSE", dict.fromkeys("abcde", False)),
    ('m s=""', {"s": ""}), ('m s="a b,c=d"', {"s": "a b,c=d"}), ('m s="say \\"hi\\""', {"s": 'say "hi"'}),
    ('m s="C:\\\\dir\\\\"', {"s": "C:\\dir\\"}), ('m s="a\\b"', {"s": "a\\b"}),  # a lone backslash is kept
    ('m s="two\nlines"', {"s": "two\nlines"}), ('m s="tab\there"', {"s": "tab\there"}),
    ('m a=1i,a=2i', {"a": 2}),  # a key given twice keeps its last value, as InfluxDB stores it
])
def test_field_values(text: str, fields: dict[str, Any]) -> None:
    got = one(text).fields
    assert got == fields
    assert [type(v) for v in got.values()] == [type(v) for v in fields.values()] or "u" in text
    if text.endswith("u"):
        assert type(got["v"]) is Unsigned


@pytest.mark.parametrize("text, measurement, tags, field_key", [
    ("cpu v=1", "cpu", (), "v"),
    ("my\\ cpu\\,1,host\\ name=a\\ b\\,c\\=d v=1", "my cpu,1", (("host name", "a b,c=d"),), "v"),
    ('m f\\ k\\,x\\=y\\"z=1', "m", (), 'f k,x=y"z'), ('m f"k=1', "m", (), 'f"k'),
    ("back\\slash,t\\x=v\\y v=1", "back\\slash", (("t\\x", "v\\y"),), "v"),  # other backslashes stay
    ("m,b=2,a=1 v=1", "m", (("b", "2"), ("a", "1")), "v"),  # written order kept (the writer sorts)
    ("ünï😀,тег=значение 字段=1", "ünï😀", (("тег", "значение"),), "字段"),
    ('m,q="x" v=1', "m", (("q", '"x"'),), "v"),  # quotes are part of names and tag values
])
def test_names_and_escapes(text: str, measurement: str, tags: tuple[tuple[str, str], ...], field_key: str) -> None:
    line = one(text)
    assert (line.measurement, line.tags, list(line.fields)) == (measurement, tags, [field_key])


@pytest.mark.parametrize("text, time_ns", [
    ("m v=1 1700000000000000000", 1_700_000_000_000_000_000), ("m v=1 -1", -1), ("m v=1 0", 0),
    ("m v=1", None), ("m v=1   ", None), ("m v=1 \t 5 \t", 5), ("m v=1 5\r\n", 5), ("m v=1\r\n", None),
    ("m v=1 9223372036854775806", 9223372036854775806), ("m v=1 -9223372036854775806", -9223372036854775806),
    ("  \tm v=1 5", 5), ("m  \tv=1 5", 5),
])
def test_times_and_spacing(text: str, time_ns: int | None) -> None:
    assert one(text).time_ns == time_ns


def test_a_value_of_many_lines_with_comments_blank_lines_and_crlf() -> None:
    text = ("# written by telegraf\r\n"
            "cpu,host=a usage=1.5 10\r\n"
            "\r\n"
            "   \n"
            '  # a comment with a "quote\n'
            'log,host=a msg="first\nsecond" 20\n'
            "mem,host=a free=3i 30")
    lines = parse_lines(text)
    assert [(p.number, p.measurement, p.time_ns) for p in lines] == [(2, "cpu", 10), (6, "log", 20), (8, "mem", 30)]
    assert lines[1].fields == {"msg": "first\nsecond"}
    assert parse_lines("") == [] and parse_lines("# only a comment\n\n") == []


@pytest.mark.parametrize("text, problem", [
    ("cpu", "expected a space and the fields"),
    ("cpu ", "expected a field key"),
    (",t=1 v=1", "expected a measurement"),
    ("cpu,host v=1", "expected '=' after the tag key 'host'"),
    ("cpu,host= v=1", "expected a value for the tag 'host'"),
    ("cpu,=a v=1", "expected a tag key after ','"),
    ("cpu,a=b=c v=1", "an unescaped '=' in its value"),
    ("cpu,a=1,a=2 v=1", "tag key 'a' appears twice"),
    ("cpu v", "expected '=' after the field key 'v'"),
    ("cpu v=", "expected a field value"),
    ("cpu v=1,", "expected a field key"),
    ("cpu v=NaN", "'NaN' is not a field value"),
    ("cpu v=Inf", "'Inf' is not a field value"),
    ("cpu v=+1", "'+1' is not a field value"),
    ("cpu v=yes", "'yes' is not a field value"),
    ("cpu v=1.5i", "'1.5i' is not a number"),
    ("cpu v=-1u", "'-1u' is not a number"),
    ("cpu v=1e", "'1e' is not a number"),
    ("cpu v=0x10", "'0x10' is not a number"),
    ("cpu v=1_000", "'1_000' is not a number"),
    ("cpu v=9223372036854775808i", "integer '9223372036854775808i' is outside int64"),
    ("cpu v=18446744073709551616u", "outside uint64"),
    ("cpu v=1e400", "float '1e400' is outside float64"),
    ('cpu v="open', "a string field value has no closing '\"'"),
    ("cpu v=1 12x", "the time is not an integer"),
    ("cpu v=1 1.5", "the time is not an integer"),
    ("cpu v=1 12 13", "the time is not an integer"),
    ("cpu v=1 9223372036854775807", "outside what InfluxDB stores"),
    ("cpu v=1\rx", "expected ',', a space and the time, or the end of the line"),
    ("cpu v=1\t5", "expected ',', a space and the time, or the end of the line"),  # as InfluxDB 1.x
])
def test_lines_that_do_not_parse(text: str, problem: str) -> None:
    reason = fails(text)
    assert reason.startswith("line 1 is not valid line protocol: ") and problem in reason, reason
    assert reason.endswith(f"{text!r}")


def test_an_error_names_the_line_by_number_and_shortened_text() -> None:
    long = "cpu,host=" + "h" * 100 + " v=bad"
    reason = fails('ok v=1\nlog msg="a\nb" 5\n# comment\n' + long + "\nnext v=1")
    assert reason.startswith("line 5 is not valid line protocol: 'bad' is not a field value")
    assert "(column 113)" in reason and reason.endswith(repr(long[:57] + "..."))
    assert "next" not in reason


def test_a_value_that_is_not_utf8_is_a_decode_error() -> None:
    with pytest.raises(RecordError) as info:
        Decoder(PayloadKind.LINEPROTOCOL).decode(b"m v=\xff", PayloadKind.LINEPROTOCOL, "value")
    assert info.value.reason == "value is not UTF-8 text (byte 4), so not line protocol"


def test_keys_are_never_line_protocol() -> None:
    with pytest.raises(ConfigError, match="only values are read as line protocol"):
        Decoder(key_kind="lineprotocol")


# ================================================================ statements over line-protocol topics


def record(value: bytes | None, ts: int | None = KAFKA_MS, headers: Any = None) -> KafkaRecord:
    return KafkaRecord("t", 3, 7, ts, base64.b64encode(b"k1").decode(),
                       None if value is None else base64.b64encode(value).decode(), headers)


def lines(kcql: str, value: bytes | None, **kw: Any) -> list[str]:
    return Plan(parse(kcql), Decoder(PayloadKind.LINEPROTOCOL)).lines(record(value, **kw))


TELEGRAF = (b"cpu,host=a,cpu=cpu0 usage_idle=98.5,usage_user=1.25 1700000000000000001\n"
            b"mem,host=a used=123i,available_percent=40.5 1700000000000000002\n"
            b'syslog,host=a message="disk \\"sda\\" full",ok=false\n')


def test_passthrough_keeps_each_line_and_gives_lines_without_time_the_kafka_time() -> None:
    assert lines("INSERT INTO * SELECT * FROM t", TELEGRAF) == [
        "cpu,cpu=cpu0,host=a usage_idle=98.5,usage_user=1.25 1700000000000000001",
        "mem,host=a used=123i,available_percent=40.5 1700000000000000002",
        'syslog,host=a message="disk \\"sda\\" full",ok=false 1700000000123000000',
    ]


def test_rename_ignore_tags_and_aliases() -> None:
    assert lines("INSERT INTO metrics SELECT * FROM t IGNORE usage_user, ok "
                 "WITHTAG(env=prod, host=other, _partition, _key AS k)", TELEGRAF) == [
        "metrics,_partition=3,cpu=cpu0,env=prod,host=a,k=k1 usage_idle=98.5 1700000000000000001",
        "metrics,_partition=3,env=prod,host=a,k=k1 used=123i,available_percent=40.5 1700000000000000002",
        'metrics,_partition=3,env=prod,host=a,k=k1 message="disk \\"sda\\" full" 1700000000123000000',
    ]
    cpu = TELEGRAF.split(b"\n")[0]
    assert lines("INSERT INTO * SELECT *, usage_idle AS idle FROM t", cpu) == [
        "cpu,cpu=cpu0,host=a usage_user=1.25,idle=98.5 1700000000000000001"]
    assert lines("INSERT INTO * SELECT usage_idle AS idle FROM t", cpu) == [
        "cpu,cpu=cpu0,host=a idle=98.5 1700000000000000001"]


def test_a_line_selected_field_missing_or_left_without_fields_fails_its_record() -> None:
    with pytest.raises(RecordError, match=r"^line 2: selected field 'usage_idle' is missing$"):
        lines("INSERT INTO * SELECT usage_idle FROM t", TELEGRAF)
    with pytest.raises(RecordError, match=r"^line 1: the point has no fields"):
        lines("INSERT INTO * SELECT * FROM t IGNORE v", b"m v=1")


def test_times_kafka_and_processing() -> None:
    assert lines("INSERT INTO * SELECT * FROM t WITHTIMESTAMP _timestamp", b"m v=1 5\nm v=2") == [
        "m v=1.0 1700000000123000000", "m v=2.0 1700000000123000000"]
    a, b = lines("INSERT INTO * SELECT * FROM t WITHTIMESTAMP sys_time()", b"m v=1 5\nm v=2")
    assert int(a.rsplit(" ", 1)[1]) < int(b.rsplit(" ", 1)[1]) and not a.endswith(" 5")
    with pytest.raises(RecordError, match=r"^line 1: the line has no time, and the record has no Kafka timestamp"):
        lines("INSERT INTO * SELECT * FROM t", b"m v=1", ts=None)
    assert lines("INSERT INTO * SELECT * FROM t", b"m v=1 5", ts=None) == ["m v=1.0 5"]


def test_names_the_encoder_cannot_carry_fail_the_record_naming_the_line() -> None:
    with pytest.raises(RecordError) as info:
        lines("INSERT INTO * SELECT * FROM t", b"ok v=1\nm,t=a\x01b v=1")
    assert info.value.reason.startswith("line 2: tag 't' value 'a\\x01b' cannot be written: it contains the "
                                        "control character")
    assert info.value.kind == "encode"


def test_a_field_named_time_is_left_out_as_for_every_payload(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="handler.mapping"):
        assert lines("INSERT INTO * SELECT * FROM t", b"m time=1i,v=2i 5") == ["m v=2i 5"]
    assert "a field named 'time' is left out" in caplog.text


def test_nothing_to_write() -> None:
    plan = Plan(parse("INSERT INTO * SELECT * FROM t"), Decoder(PayloadKind.LINEPROTOCOL))
    assert plan.lines(record(None)) == [] and plan.stats.tombstones == 1
    assert plan.lines(record(b"")) == [] and plan.lines(record(b"# nothing\n\n")) == []


def test_lines_of_one_record_on_one_series_and_time_are_counted() -> None:
    plan = Plan(parse("INSERT INTO * SELECT * FROM t"), Decoder(PayloadKind.LINEPROTOCOL))
    plan.lines(record(b"m,h=a v=1\nm,h=a w=2\nm,h=b v=1\nm,h=a v=3 5"))
    assert plan.stats.overwritten == 1  # the first two take the Kafka time


@pytest.mark.parametrize("kcql, problem", [
    ("INSERT INTO * SELECT * FROM t WITHTARGET = a", "WITHTARGET does not apply to line protocol"),
    ("INSERT INTO * SELECT * FROM t WITHTIMESTAMP ts", "WITHTIMESTAMP ts: a line of line protocol keeps its own time"),
    ("INSERT INTO * SELECT a.* FROM t", "SELECT a.*: the fields of a line are not nested"),
    ("INSERT INTO * SELECT a.b FROM t", "SELECT a.b: not a field of a line"),
    ("INSERT INTO * SELECT _offset FROM t", "SELECT _offset: not a field of a line"),
    ("INSERT INTO * SELECT * FROM t IGNORE _key.a", "IGNORE _key.a: IGNORE takes the names of the lines' fields"),
    ("INSERT INTO * SELECT * FROM t WITHTAG(host)", "WITHTAG(host): a line's own tags are kept as written"),
    ("INSERT INTO * SELECT * FROM t WITHTAG(time=1)", "InfluxDB reserves the tag name 'time'"),
    ("INSERT INTO * SELECT * FROM t WITHTAG(`a\\`=1)", "WITHTAG(a\\=1): tag key 'a\\\\' cannot be written"),
    ("INSERT INTO `#m` SELECT * FROM t", "measurement '#m' cannot be written"),
])
def test_clauses_that_do_not_apply_are_refused_at_cold_start(kcql: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        Plan(parse(kcql), Decoder(PayloadKind.LINEPROTOCOL))
    assert problem in str(info.value) and "connect.influx.kcql (CONNECT_INFLUX_KCQL)" in str(info.value)


def test_insert_into_star_needs_a_line_protocol_topic() -> None:
    with pytest.raises(ConfigError, match="INSERT INTO \\* keeps the measurement of each line"):
        Plan(parse("INSERT INTO * SELECT * FROM t"), Decoder())
    Plan(parse("INSERT INTO `*` SELECT * FROM t"), Decoder())  # a measurement named '*' stays possible


# ================================================================ property: random valid lines in, the same points out


def _carried(text: str, escape: Any) -> bool:
    try:
        escape(text)
    except RecordError:
        return False
    return True


_ALPHABET = st.sampled_from("abcXYZ019_-.: ,=\"'#\\/ü😀ж\u2028")
names = st.text(_ALPHABET, min_size=1, max_size=6)
measurements = names.filter(lambda t: _carried(t, escape_measurement))
tag_names = names.filter(lambda t: _carried(t, escape_key))
field_keys = names.filter(lambda t: _carried(t, escape_field_key) and t != "time")
strings = st.text(st.sampled_from('ab "\\,= \n\t\r\x00é😀'), max_size=8)


def points(unsigned: bool = True, timeless: bool = True) -> st.SearchStrategy[Any]:
    """Points (measurement, tags, fields, time) of every field type (``u`` only with ``unsigned``:
    InfluxDB 1.x refuses it) and, with ``timeless``, some without a time."""
    values = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1),
                       st.floats(allow_nan=False, allow_infinity=False), strings,
                       *([st.integers(0, 2**64 - 1).map(Unsigned)] if unsigned else []))
    times = st.integers(-9223372036854775806, 9223372036854775806)
    return st.tuples(measurements, st.dictionaries(tag_names, tag_names, max_size=3),
                     st.dictionaries(field_keys, values, min_size=1, max_size=4),
                     st.one_of(st.none(), times) if timeless else times)


def _name(text: str, specials: str) -> str:
    return "".join("\\" + c if c in specials else c for c in text)


@st.composite
def written(draw: st.DrawFn, point: tuple[str, dict[str, str], dict[str, Any], int | None], lenient: bool = True
            ) -> str:
    """One point as a line, in a style InfluxDB accepts (without the line ending); ``lenient``
    adds what the sink accepts and InfluxDB 1.x does not: trailing tabs."""
    measurement, tags, fields, time_ns = point
    out = _name(measurement, ", ")
    order = draw(st.permutations(list(tags)))
    out += "".join(f",{_name(k, ',= ')}={_name(tags[k], ',= ')}" for k in order)
    out += " " + draw(st.sampled_from(["", " ", "\t", " \t "]))
    parts = []
    for k, v in fields.items():
        # A quote in a field key may be escaped; it must be after a backslash, which would escape it.
        key = _name(k, ",= " + ('"' if '\\"' in k else draw(st.sampled_from(['"', ""]))))
        if type(v) is bool:
            spellings = ["t", "T", "true", "True", "TRUE"] if v else ["f", "F", "false", "False", "FALSE"]
            text = draw(st.sampled_from(spellings))
        elif type(v) is Unsigned:
            text = f"{int(v)}u"
        elif type(v) is int:
            text = f"{v}i"
        elif type(v) is float:
            text = draw(st.sampled_from([repr(v), f"{v:e}", f"{v:.17g}"]))
            if text in ("-0", "0") or float(text) != v:
                text = repr(v)
        else:
            lone = draw(st.booleans())  # a backslash before anything but '\\' or '"' may stand alone
            text = '"' + "".join(
                "\\\\" if c == "\\" and not (lone and i + 1 < len(v) and v[i + 1] not in '\\"') else
                '\\"' if c == '"' else c for i, c in enumerate(v)) + '"'
        parts.append(f"{key}={text}")
    out += ",".join(parts)
    if time_ns is not None:
        out += draw(st.sampled_from([" ", "  ", " \t"])) + str(time_ns)
    return out + draw(st.sampled_from(["", " ", "\t "] if lenient else ["", " "]))


@st.composite
def documents(draw: st.DrawFn, unsigned: bool = True, timeless: bool = True, lenient: bool = True
              ) -> tuple[str, list[ParsedLine]]:
    """A line-protocol value of random points, comments and blank lines, and the points it holds;
    ``lenient`` adds CRLF line endings, trailing tabs and leading whitespace (InfluxDB 1.x
    refuses the first two and can misread the third)."""
    text, expected = "", []
    for point in draw(st.lists(points(unsigned, timeless), min_size=1, max_size=5)):
        for _ in range(draw(st.integers(0, 1))):
            text += draw(st.sampled_from(["# comment\n", "\n", "  \t\n", "#x=1 \"y\n"]
                                         + (["  \t\r\n"] if lenient else [])))
        number = text.count("\n") + 1
        # InfluxDB 1.x cuts a line led by whitespace as if its measurement were fields (a '="' in it
        # then opens a string): leading whitespace is for the sink alone.
        text += draw(st.sampled_from(["", " ", "\t"] if lenient else [""])) + draw(written(point, lenient))
        text += draw(st.sampled_from(["\n", "\r\n"] if lenient else ["\n"]))
        measurement, tags, fields, time_ns = point
        expected.append(ParsedLine(number, measurement, tuple(tags.items()), fields, time_ns))
    if draw(st.booleans()):
        text = text.rstrip("\r\n")
    return text, expected


def _same(got: list[ParsedLine], expected: list[ParsedLine], ordered_tags: bool) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert (g.measurement, g.time_ns) == (e.measurement, e.time_ns)
        assert (g.tags if ordered_tags else dict(g.tags)) == (tuple(e.tags) if ordered_tags else dict(e.tags))
        assert g.fields == e.fields
        assert [type(v) for v in g.fields.values()] == [type(v) for v in e.fields.values()]
        assert [repr(v) for v in g.fields.values()] == [repr(v) for v in e.fields.values()]  # -0.0 stays -0.0


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(doc=documents())
def test_random_valid_lines_read_as_their_points(doc: tuple[str, list[ParsedLine]]) -> None:
    text, expected = doc
    got = parse_lines(text)
    _same(got, [e._replace(tags=tuple((k, v) for k, v in e.tags)) for e in expected], ordered_tags=False)
    assert [g.number for g in got] == [e.number for e in expected]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(doc=documents())
def test_passthrough_writes_the_same_points_again(doc: tuple[str, list[ParsedLine]]) -> None:
    text, expected = doc
    out = lines("INSERT INTO * SELECT * FROM t", text.encode())
    assert len(out) == len(expected)  # one line per point: nothing added, nothing lost
    again = parse_lines("\n".join(out))
    kafka_ns = KAFKA_MS * 1_000_000
    _same(again, [e._replace(tags=tuple(sorted(e.tags)), time_ns=kafka_ns if e.time_ns is None else e.time_ns)
                  for e in expected], ordered_tags=True)


# ================================================================ the examples of docs/payloads.md

DOCS = Path(__file__).resolve().parents[2] / "docs" / "payloads.md"


def section_blocks(heading: str) -> list[tuple[str, str]]:
    """The fenced blocks (info string, body) of one ``## `` section of docs/payloads.md."""
    text = DOCS.read_text(encoding="utf-8").split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w*)\n(.*?)```", text, re.S)


def test_the_documented_line_protocol_examples() -> None:
    (_, first), (_, value), (_, kept), (_, second), (_, renamed), (_, error) = section_blocks("Line-protocol topics")
    got = Plan(parse(first), Decoder(PayloadKind.LINEPROTOCOL)).lines(
        KafkaRecord("telegraf", 0, 0, KAFKA_MS, None, base64.b64encode(value.encode()).decode()))
    assert got == kept.splitlines()
    got = Plan(parse(second), Decoder(PayloadKind.LINEPROTOCOL)).lines(
        KafkaRecord("telegraf", 0, 0, KAFKA_MS, None, base64.b64encode(value.encode()).decode()))
    assert got == renamed.splitlines()
    where, reason = error.strip().split(": ", 1)
    assert where == "topic=telegraf partition=0 offset=1"
    assert fails("good,n=1 v=1i 1700000000000000000\nbad,n=2 v=NaN 1700000000000000000\n") == reason


def test_influx_sink_kcql_describes_insert_into_star_as_a_line_protocol_statement() -> None:
    from handler.mapping import describe_compiled

    (st_ok, st_bad) = parse("INSERT INTO * SELECT * FROM t IGNORE x WITHTAG(env=prod); "
                            "INSERT INTO * SELECT * FROM t WITHTIMESTAMP ts")
    assert describe_compiled(st_ok)[0] == ("line: {the line's measurement}{the line's tags},env=prod "
                                           "{every field of the line but x} "
                                           "{the line's time, else the record's Kafka timestamp, ns}")
    assert describe_compiled(st_bad)[0].startswith("refused at cold start: connect.influx.kcql (CONNECT_INFLUX_KCQL): "
                                                   "WITHTIMESTAMP ts: a line of line protocol keeps its own time")


def _both_ways(text: str) -> tuple[Any, Any]:
    """``parse_lines(text)`` with the split-based reading of simple lines, and without it."""
    import handler.lineproto as lp

    def read() -> Any:
        try:
            return parse_lines(text)
        except RecordError as err:
            return err.reason

    fast = read()
    saved = lp._LP_NOT_SIMPLE
    lp._LP_NOT_SIMPLE = re.compile(r"")  # every line "not simple": only the full reader
    try:
        return fast, read()
    finally:
        lp._LP_NOT_SIMPLE = saved


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(doc=documents())
def test_simple_lines_read_the_same_split_or_scanned(doc: tuple[str, list[ParsedLine]]) -> None:
    fast, full = _both_ways(doc[0])
    assert fast == full


@settings(max_examples=1000, deadline=None)
@given(text=st.lists(st.sampled_from(["m", "v", "=", "1", "1i", "-2u", "99999999999999999999u", "1e999", ",",
                                       " ", "  ", "t", "True", ".5", "-", "#", "\n", '"', "\\", "m v=1", ",a=b", " 5",
                                       " -9223372036854775807", "\r"]), max_size=12).map("".join))
def test_any_text_reads_the_same_split_or_scanned(text: str) -> None:
    fast, full = _both_ways(text)
    assert fast == full
    if isinstance(fast, list):
        assert [type(v) for p in fast for v in p.fields.values()] == [type(v) for p in full for v in p.fields.values()]


def test_every_statement_of_the_topic_writes_every_line() -> None:
    kcql = "INSERT INTO * SELECT * FROM t; INSERT INTO copy SELECT * FROM t WITHTAG(c=1)"
    assert lines(kcql, b"m v=1 5\nn w=2i 6") == ["m v=1.0 5", "n w=2i 6", "copy,c=1 v=1.0 5", "copy,c=1 w=2i 6"]
