"""KCQL: every clause, names, paths, and the syntax errors.

Pure parsing: no InfluxDB needed. What the parsed statements *do* is in test_mapping.py.
"""

from __future__ import annotations

import itertools

import pytest

from kcql import ConstantTag, KcqlSyntaxError, Path, PathTag, SelectField, Source, Statement, TimeUnit, parse
from kcql.grammar import UNSUPPORTED

BASE = "INSERT INTO m SELECT * FROM t"


def one(text: str) -> Statement:
    (statement,) = parse(text)
    return statement


def error(text: str) -> KcqlSyntaxError:
    with pytest.raises(KcqlSyntaxError) as info:
        parse(text)
    return info.value


def value(*segments: str, text: str | None = None) -> Path:
    return Path(Source.VALUE, segments, text if text is not None else ".".join(segments))


STAR = SelectField(Path(Source.VALUE, (), "*"), wildcard=True)


# ---------------------------------------------------------------- statements


def test_minimal_statement() -> None:
    s = one(BASE)
    assert (s.measurement, s.topic, s.fields) == ("m", "t", (STAR,))
    assert (s.ignores, s.target, s.timestamp, s.timestamp_unit, s.tags) == ((), None, None, None, ())
    assert (s.text, s.line, s.column) == (BASE, 1, 1)


@pytest.mark.parametrize("text", [
    f"{BASE}; INSERT INTO n SELECT a FROM u",
    f"{BASE};INSERT INTO n SELECT a FROM u;",
    f";; {BASE} ;; ; INSERT INTO n SELECT a FROM u ;;",
    f"{BASE};\n\n;\nINSERT INTO n SELECT a FROM u;\n",
])
def test_several_statements_with_trailing_and_empty_ones(text: str) -> None:
    first, second = parse(text)
    assert (first.measurement, first.topic, first.text) == ("m", "t", BASE)
    assert (second.measurement, second.topic, second.fields) == ("n", "u", (SelectField(value("a")),))
    assert second.text == "INSERT INTO n SELECT a FROM u"


def test_statement_positions_for_messages() -> None:
    first, second, third = parse(f"{BASE};\n  INSERT INTO n SELECT a FROM u; INSERT INTO o SELECT b FROM u")
    assert (first.line, first.column) == (1, 1)
    assert (second.line, second.column) == (2, 3)
    assert (third.line, third.column) == (2, 34)


def test_several_statements_may_read_one_topic() -> None:
    a, b = parse("INSERT INTO m1 SELECT a FROM t; INSERT INTO m2 SELECT b FROM t")
    assert a.topic == b.topic == "t"
    assert (a.measurement, b.measurement) == ("m1", "m2")


@pytest.mark.parametrize("text", ["", "   ", ";", " ; ;\n;"])
def test_no_statement_at_all_is_an_error(text: str) -> None:
    assert error(text).reason == "expected at least one INSERT INTO ... statement"


# ---------------------------------------------------------------- keywords


def _case_variants(word: str) -> list[str]:
    return [word.upper(), word.lower(), word.capitalize(), "".join(
        c.lower() if i % 2 else c.upper() for i, c in enumerate(word))]


@pytest.mark.parametrize("variant", range(4))
def test_keywords_in_any_case(variant: int) -> None:
    words = ["INSERT", "INTO", "SELECT", "AS", "FROM", "IGNORE", "WITHTARGET", "WITHTIMESTAMP",
             "TIMESTAMPUNIT", "SECONDS", "WITHTAG"]
    k = {w: _case_variants(w)[variant] for w in words}
    text = (f"{k['INSERT']} {k['INTO']} m {k['SELECT']} *, a {k['AS']} b {k['FROM']} t {k['IGNORE']} c "
            f"{k['WITHTARGET']}=d {k['WITHTIMESTAMP']} e {k['TIMESTAMPUNIT']}={k['SECONDS']} "
            f"{k['WITHTAG']}(f {k['AS']} g)")
    s = one(text)
    assert s.fields == (STAR, SelectField(value("a"), alias="b"))
    assert (s.ignores, s.target, s.timestamp) == ((value("c"),), value("d"), value("e"))
    assert s.timestamp_unit is TimeUnit.SECONDS
    assert s.tags == (PathTag(value("f"), alias="g"),)


@pytest.mark.parametrize("text", ["INSERT INTO m SELECT * FROM fromage", "INSERT INTO m SELECT * FROM from_x",
                                  "INSERT INTO m SELECT * FROM select-topic"])
def test_a_keyword_inside_a_longer_name_is_a_name(text: str) -> None:
    assert one(text).topic == text.rsplit(" ", 1)[1]


@pytest.mark.parametrize("text, what, word", [
    ("INSERT INTO select SELECT * FROM t", "a measurement name", "select"),
    ("INSERT INTO m SELECT * FROM withtag", "a topic name", "withtag"),
    ("INSERT INTO m SELECT * FROM Ignore IGNORE a", "a topic name", "Ignore"),
    ("INSERT INTO m SELECT a AS from FROM t", "an alias", "from"),
    ("INSERT INTO m SELECT as FROM t", "a field path or *", "as"),
    ("INSERT INTO m SELECT * FROM t IGNORE withtag", "a field path", "withtag"),
    ("INSERT INTO m SELECT * FROM t WITHTARGET=withtimestamp", "a field path", "withtimestamp"),
    ("INSERT INTO m SELECT * FROM t WITHTIMESTAMP timestampunit", "a field path", "timestampunit"),
])
def test_a_bare_keyword_that_could_come_next_is_not_a_name(text: str, what: str, word: str) -> None:
    err = error(text)
    assert err.reason == (f"expected {what}, found the keyword {word!r} (quote it with backticks, `{word}`, "
                          "to use it as a name)")


@pytest.mark.parametrize("text", [
    "INSERT INTO from SELECT insert, into, select, ignore AS withtag FROM select WITHTIMESTAMP from",
    "INSERT INTO measureA SELECT * FROM topicA  WITHTAG (from, to)",
    "INSERT INTO measureA SELECT * FROM topicA  WITHTAG (from, to, provider=DataMountaineer)",
    "INSERT INTO m SELECT * FROM t WITHTAG(as AS from, withtag AS select, ignore=into)",
])
def test_keywords_that_cannot_be_confused_are_names(text: str) -> None:
    parse(text)


def test_seed_tag_examples() -> None:
    assert one("INSERT INTO measureA SELECT * FROM topicA  WITHTAG (from, to, provider=DataMountaineer)").tags == (
        PathTag(value("from")), PathTag(value("to")), ConstantTag("provider", "DataMountaineer"))
    assert one("INSERT INTO measureA SELECT * FROM topicA  WITHTAG (DataMountaineer=awesome, Influx=rulz!)").tags == (
        ConstantTag("DataMountaineer", "awesome"), ConstantTag("Influx", "rulz!"))


def test_backticked_keywords_are_names() -> None:
    s = one("INSERT INTO `select` SELECT `from`, `as` AS `where` FROM `from` WITHTAG(`ignore`, from=select)")
    assert (s.measurement, s.topic) == ("select", "from")
    assert s.fields == (SelectField(value("from", text="`from`")), SelectField(value("as", text="`as`"),
                                                                               alias="where"))
    assert s.tags == (PathTag(value("ignore", text="`ignore`")), ConstantTag("from", "select"))


# ---------------------------------------------------------------- names


def test_bare_names_take_letters_digits_and_punctuation() -> None:
    name = "a_B-9.c+d/e:f@g{h}"
    s = one(f"INSERT INTO {name} SELECT x AS {name} FROM {name} WITHTAG(y AS {name}, k=v)")
    assert s.measurement == s.topic == s.fields[0].alias == s.tags[0].name == name


@pytest.mark.parametrize("topic", ["influx-topic", "a.b.c", "orders.v2-eu", "my_topic", "{prefix}-x", "ünï-cödé"])
def test_topic_names_with_dashes_and_dots_work_unquoted(topic: str) -> None:
    assert one(f"INSERT INTO m SELECT * FROM {topic}").topic == topic


def test_backticked_names_take_anything_but_a_backtick() -> None:
    odd = "my measure, with = \"quotes\" 'and' ; (parens)\ttab"
    s = one(f"INSERT INTO `{odd}` SELECT x AS `{odd}` FROM `{odd}` WITHTAG(y AS `{odd}`)")
    assert s.measurement == s.topic == s.fields[0].alias == s.tags[0].name == odd


def test_tabs_and_newlines_inside_backticks_are_kept() -> None:
    assert one("INSERT INTO `a\tb\nc` SELECT * FROM t").measurement == "a\tb\nc"


# ---------------------------------------------------------------- paths


@pytest.mark.parametrize("text, path", [
    ("a", Path(Source.VALUE, ("a",), "a")),
    ("a.b.c", Path(Source.VALUE, ("a", "b", "c"), "a.b.c")),
    ("`a.b`", Path(Source.VALUE, ("a.b",), "`a.b`")),
    ("`a.b`.c", Path(Source.VALUE, ("a.b", "c"), "`a.b`.c")),
    ("a.`b c`.`d.e`", Path(Source.VALUE, ("a", "b c", "d.e"), "a.`b c`.`d.e`")),
    ("_value.a", Path(Source.VALUE, ("a",), "_value.a")),
    ("_value._key", Path(Source.VALUE, ("_key",), "_value._key")),
    ("`_key`", Path(Source.VALUE, ("_key",), "`_key`")),
    ("_key", Path(Source.KEY, (), "_key")),
    ("_key.a", Path(Source.KEY, ("a",), "_key.a")),
    ("_key.a.b", Path(Source.KEY, ("a", "b"), "_key.a.b")),
    ("_header.name", Path(Source.HEADER, ("name",), "_header.name")),
    ("_header.`trace id`", Path(Source.HEADER, ("trace id",), "_header.`trace id`")),
    ("_header.x.y", Path(Source.HEADER, ("x.y",), "_header.x.y")),
    ("_topic", Path(Source.TOPIC, (), "_topic")),
    ("_partition", Path(Source.PARTITION, (), "_partition")),
    ("_offset", Path(Source.OFFSET, (), "_offset")),
    ("_timestamp", Path(Source.TIMESTAMP, (), "_timestamp")),
    ("a-b+c/d:e@f{g}", Path(Source.VALUE, ("a-b+c/d:e@f{g}",), "a-b+c/d:e@f{g}")),
])
def test_paths_everywhere_a_path_goes(text: str, path: Path) -> None:
    s = one(f"INSERT INTO m SELECT {text} FROM t IGNORE x WITHTARGET={text} WITHTIMESTAMP {text} "
            f"WITHTAG({text})")
    assert s.fields == (SelectField(path),)
    assert s.target == s.timestamp == path
    assert s.tags == (PathTag(path),)


@pytest.mark.parametrize("text, name", [
    ("a", "a"), ("a.b.c", "c"), ("`a.b`", "a.b"), ("_key", "_key"), ("_key.a.b", "b"), ("_header.h", "h"),
    ("_topic", "_topic"), ("_partition", "_partition"), ("_offset", "_offset"), ("_timestamp", "_timestamp"),
])
def test_default_names_are_the_last_segment_or_the_metadata_name(text: str, name: str) -> None:
    s = one(f"INSERT INTO m SELECT {text} FROM t WITHTAG({text})")
    assert s.fields[0].name == s.tags[0].name == name


@pytest.mark.parametrize("text, path", [
    ("*", Path(Source.VALUE, (), "*")),
    ("_value.*", Path(Source.VALUE, (), "_value.*")),
    ("a.*", Path(Source.VALUE, ("a",), "a.*")),
    ("a.b.*", Path(Source.VALUE, ("a", "b"), "a.b.*")),
    ("`a.b`.*", Path(Source.VALUE, ("a.b",), "`a.b`.*")),
    ("_key.*", Path(Source.KEY, (), "_key.*")),
    ("_key.a.*", Path(Source.KEY, ("a",), "_key.a.*")),
])
def test_wildcards(text: str, path: Path) -> None:
    assert one(f"INSERT INTO m SELECT {text} FROM t").fields == (SelectField(path, wildcard=True),)


def test_select_list_with_wildcards_and_aliases() -> None:
    s = one("INSERT INTO m SELECT *, name AS who, _key.*, a.b AS `b b`, _header.h AS hh, _offset FROM t")
    assert s.fields == (
        STAR,
        SelectField(value("name"), alias="who"),
        SelectField(Path(Source.KEY, (), "_key.*"), wildcard=True),
        SelectField(value("a", "b"), alias="b b"),
        SelectField(Path(Source.HEADER, ("h",), "_header.h"), alias="hh"),
        SelectField(Path(Source.OFFSET, (), "_offset")),
    )
    assert [f.name for f in s.fields[1:]] == ["who", "_key", "b b", "hh", "_offset"]


@pytest.mark.parametrize("text, reason", [
    ("INSERT INTO m SELECT * AS x FROM t", "'*' selects many fields and cannot take an alias"),
    ("INSERT INTO m SELECT a.* AS x FROM t", "'a.*' selects many fields and cannot take an alias"),
    (f"{BASE} IGNORE a.*", "'a.*' selects many fields; only SELECT takes a wildcard"),
    (f"{BASE} WITHTAG(_key.*)", "'_key.*' selects many fields; only SELECT takes a wildcard"),
    ("INSERT INTO m SELECT _header FROM t", "_header needs one header name: _header.<name>"),
    ("INSERT INTO m SELECT _header.* FROM t", "_header needs one header name: _header.<name>"),
    ("INSERT INTO m SELECT _topic.x FROM t", "_topic is Kafka metadata and has no fields"),
    ("INSERT INTO m SELECT _offset.* FROM t", "_offset is Kafka metadata and has no fields"),
    (f"{BASE} IGNORE _topic", "IGNORE takes fields of the value or the key; '_topic' is never selected by a "
                              "wildcard"),
    (f"{BASE} IGNORE _header.h", "IGNORE takes fields of the value or the key; '_header.h' is never selected by "
                                 "a wildcard"),
    (f"{BASE} IGNORE _key", "IGNORE takes fields of the value or the key; '_key' is never selected by a "
                            "wildcard"),
])
def test_path_mistakes(text: str, reason: str) -> None:
    assert error(text).reason == reason


# ---------------------------------------------------------------- clauses


def test_ignore_top_level_nested_and_key_paths() -> None:
    s = one(f"{BASE} IGNORE a, b.c.d, `e.f`, _key.k, _value.v")
    assert s.ignores == (value("a"), value("b", "c", "d"), value("e.f", text="`e.f`"),
                         Path(Source.KEY, ("k",), "_key.k"), value("v", text="_value.v"))


@pytest.mark.parametrize("clause", ["WITHTARGET=company", "WITHTARGET = company", "WITHTARGET =company",
                                    "WITHTARGET\n=\ncompany"])
def test_withtarget(clause: str) -> None:
    assert one(f"{BASE} {clause}").target == value("company")


@pytest.mark.parametrize("clause", ["WITHTIMESTAMP sys_time()", "WITHTIMESTAMP SYS_TIME()",
                                    "WITHTIMESTAMP Sys_Time ( )", "withtimestamp sys_time()"])
def test_withtimestamp_sys_time_is_processing_time(clause: str) -> None:
    s = one(f"{BASE} {clause}")
    assert (s.timestamp, s.timestamp_unit) == (None, None)


def test_withtimestamp_path_and_a_field_named_sys_time() -> None:
    assert one(f"{BASE} WITHTIMESTAMP ts.created").timestamp == value("ts", "created")
    assert one(f"{BASE} WITHTIMESTAMP sys_time").timestamp == value("sys_time")


@pytest.mark.parametrize("unit", list(TimeUnit))
@pytest.mark.parametrize("spelling", [str.upper, str.lower, str.capitalize])
def test_timestampunit_all_seven_units(unit: TimeUnit, spelling: type[str]) -> None:
    s = one(f"{BASE} WITHTIMESTAMP ts TIMESTAMPUNIT={spelling(unit.name)}")  # type: ignore[operator]
    assert s.timestamp_unit is unit


def test_seven_units_scale_to_nanoseconds() -> None:
    assert {u.name: u.nanos for u in TimeUnit} == {
        "NANOSECONDS": 1, "MICROSECONDS": 1_000, "MILLISECONDS": 1_000_000, "SECONDS": 1_000_000_000,
        "MINUTES": 60_000_000_000, "HOURS": 3_600_000_000_000, "DAYS": 86_400_000_000_000}


@pytest.mark.parametrize("text, reason", [
    (f"{BASE} TIMESTAMPUNIT=SECONDS", "TIMESTAMPUNIT needs WITHTIMESTAMP <path> (sys_time() is already in "
                                      "nanoseconds)"),
    (f"{BASE} WITHTIMESTAMP sys_time() TIMESTAMPUNIT=SECONDS", "TIMESTAMPUNIT needs WITHTIMESTAMP <path> "
                                                               "(sys_time() is already in nanoseconds)"),
    (f"{BASE} WITHTIMESTAMP _timestamp TIMESTAMPUNIT=SECONDS", "_timestamp is always epoch milliseconds; "
                                                               "TIMESTAMPUNIT does not apply to it"),
    (f"{BASE} WITHTIMESTAMP ts TIMESTAMPUNIT=fortnights",
     "expected a unit (NANOSECONDS, MICROSECONDS, MILLISECONDS, SECONDS, MINUTES, HOURS, DAYS), found "
     "'fortnights'"),
    (f"{BASE} WITHTIMESTAMP ts TIMESTAMPUNIT=SECOND", "expected a unit (NANOSECONDS, MICROSECONDS, MILLISECONDS, "
                                                      "SECONDS, MINUTES, HOURS, DAYS), found 'SECOND'"),
])
def test_timestamp_mistakes(text: str, reason: str) -> None:
    assert error(text).reason == reason


def test_timestamp_of_kafka_record_in_milliseconds_is_fine() -> None:
    s = one(f"{BASE} WITHTIMESTAMP _timestamp TIMESTAMPUNIT=MILLISECONDS")
    assert (s.timestamp, s.timestamp_unit) == (Path(Source.TIMESTAMP, (), "_timestamp"), TimeUnit.MILLISECONDS)


def test_withtag_paths_aliases_and_constants() -> None:
    s = one(f"{BASE} WITHTAG(eyeColor, a.b.host, age AS AgeTag, _key.k AS kk, _header.h, _topic, "
            "c1=value1, Influx=rulz!, region='eu west', `odd key`='it''s', empty='', n=3.5e-2, path=a/b:c)")
    assert s.tags == (
        PathTag(value("eyeColor")),
        PathTag(value("a", "b", "host")),
        PathTag(value("age"), alias="AgeTag"),
        PathTag(Path(Source.KEY, ("k",), "_key.k"), alias="kk"),
        PathTag(Path(Source.HEADER, ("h",), "_header.h")),
        PathTag(Path(Source.TOPIC, (), "_topic")),
        ConstantTag("c1", "value1"),
        ConstantTag("Influx", "rulz!"),
        ConstantTag("region", "eu west"),
        ConstantTag("odd key", "it's"),
        ConstantTag("empty", ""),
        ConstantTag("n", "3.5e-2"),
        ConstantTag("path", "a/b:c"),
    )
    assert [t.name for t in s.tags] == ["eyeColor", "host", "AgeTag", "kk", "h", "_topic", "c1", "Influx",
                                        "region", "odd key", "empty", "n", "path"]


@pytest.mark.parametrize("text", [f"{BASE} WITHTAG(c1 = value1)", f"{BASE} WITHTAG( c1=value1 )",
                                  f"{BASE} WITHTAG\n(\n  c1\n  =\n  value1\n)"])
def test_constant_tags_with_spaces_around(text: str) -> None:
    assert one(text).tags == (ConstantTag("c1", "value1"),)


CLAUSE_TEXTS = {
    "IGNORE": ("IGNORE a, b", {"ignores": (value("a"), value("b"))}),
    "WITHTARGET": ("WITHTARGET=company", {"target": value("company")}),
    "WITHTIMESTAMP": ("WITHTIMESTAMP ts", {"timestamp": value("ts")}),
    "TIMESTAMPUNIT": ("TIMESTAMPUNIT=HOURS", {"timestamp_unit": TimeUnit.HOURS}),
    "WITHTAG": ("WITHTAG(x, y=z)", {"tags": (PathTag(value("x")), ConstantTag("y", "z"))}),
}


def test_clauses_in_any_order() -> None:
    expected = {k: v for _, attrs in CLAUSE_TEXTS.values() for k, v in attrs.items()}
    for order in itertools.permutations(CLAUSE_TEXTS):
        s = one(f"{BASE} " + " ".join(CLAUSE_TEXTS[c][0] for c in order))
        assert {k: getattr(s, k) for k in expected} == expected, order


def test_clauses_on_their_own_lines() -> None:
    s = one(f"{BASE}\n  WITHTAG(x, y=z)\n  WITHTIMESTAMP ts\n  TIMESTAMPUNIT=HOURS\n  IGNORE a, b\n"
            "  WITHTARGET=company\n")
    assert (s.target, s.timestamp, s.timestamp_unit) == (value("company"), value("ts"), TimeUnit.HOURS)


@pytest.mark.parametrize("clause", list(CLAUSE_TEXTS))
def test_each_clause_at_most_once(clause: str) -> None:
    text = CLAUSE_TEXTS[clause][0]
    extra = " WITHTIMESTAMP ts" if clause == "TIMESTAMPUNIT" else ""
    kcql = f"{BASE}{extra} {text} WITHTARGET=other {text}" if clause != "WITHTARGET" else f"{BASE} {text} {text}"
    err = error(kcql)
    assert err.reason == f"{clause} appears twice in one statement"
    assert err.column == kcql.rindex(text) + 1


def test_duplicate_names_would_overwrite_each_other() -> None:
    assert error("INSERT INTO m SELECT a AS x, b AS x FROM t").reason == (
        "two selected fields would both be written as 'x' (a and b); give one an alias with AS")
    assert error("INSERT INTO m SELECT a.v, b.v FROM t").reason == (
        "two selected fields would both be written as 'v' (a.v and b.v); give one an alias with AS")
    assert error(f"{BASE} WITHTAG(a, b AS a)").reason == "two tags are named 'a'; give one an alias with AS"
    assert error(f"{BASE} WITHTAG(a, a=1)").reason == "two tags are named 'a'; give one an alias with AS"
    # A wildcard and an explicit field may overlap: both write the same value.
    assert len(one("INSERT INTO m SELECT *, name FROM t").fields) == 2


# ---------------------------------------------------------------- other sinks' clauses


@pytest.mark.parametrize("word", sorted(UNSUPPORTED))
def test_clauses_of_other_sinks_are_rejected_by_name(word: str) -> None:
    err = error(f"{BASE} {word.lower()} x")
    assert err.reason == f"{word} belongs to other Stream Reactor sinks; the InfluxDB sink does not support it"
    assert err.column == len(BASE) + 2


@pytest.mark.parametrize("text, word", [
    (f"{BASE} PK id", "PK"), (f"{BASE} AUTOCREATE", "AUTOCREATE"), (f"{BASE} STOREAS AVRO", "STOREAS"),
    (f"{BASE} PROPERTIES('a'='b')", "PROPERTIES"), (f"{BASE} WITHTAG(a) PARTITIONBY b", "PARTITIONBY"),
    (f"{BASE} AutoEvolve", "AUTOEVOLVE"), (f"{BASE} BATCH = 100", "BATCH"),
])
def test_common_other_sink_clauses(text: str, word: str) -> None:
    assert error(text).reason.startswith(f"{word} belongs to other Stream Reactor sinks")


def test_upsert_is_rejected() -> None:
    err = error("UPSERT INTO m SELECT * FROM t")
    assert err.reason == "UPSERT belongs to other Stream Reactor sinks; the InfluxDB sink only INSERTs"


# ---------------------------------------------------------------- syntax errors: exact text


def test_error_text_missing_select_list() -> None:
    assert str(error("INSERT INTO m SELECT FROM t")) == (
        "KCQL syntax error at line 1, column 22: expected a field path or *, found 'FROM'\n"
        "  INSERT INTO m SELECT FROM t\n"
        "                       ^")


def test_error_text_withtarget_without_equals() -> None:
    err = error("INSERT INTO m SELECT * FROM t WITHTARGET company")
    assert (err.line, err.column) == (1, 42)
    assert str(err) == (
        "KCQL syntax error at line 1, column 42: expected '=' after WITHTARGET, found 'company'\n"
        "  INSERT INTO m SELECT * FROM t WITHTARGET company\n"
        "                                           ^")


def test_error_text_unknown_trailing_text() -> None:
    assert str(error("INSERT INTO m SELECT * FROM t garbage")) == (
        "KCQL syntax error at line 1, column 31: expected a clause (IGNORE, WITHTARGET, WITHTIMESTAMP, "
        "TIMESTAMPUNIT, WITHTAG, DATABASE, RETENTION POLICY), ';' or the end, found 'garbage'\n"
        "  INSERT INTO m SELECT * FROM t garbage\n"
        "                                ^")


def test_error_text_multi_line_statement_error_on_line_3() -> None:
    text = "INSERT INTO m\nSELECT *\nFROM t WITHTAG(a b)\nWITHTARGET=x"
    err = error(text)
    assert (err.line, err.column, err.source_line) == (3, 18, "FROM t WITHTAG(a b)")
    assert str(err) == (
        "KCQL syntax error at line 3, column 18: expected ',' or ')', found 'b'\n"
        "  INSERT INTO m\n"
        "  SELECT *\n"
        "  FROM t WITHTAG(a b)\n"
        "                   ^")


def test_error_text_second_statement_on_line_2_shows_only_its_lines() -> None:
    text = "INSERT INTO a SELECT * FROM t;\nINSERT INTO b SELECT x y FROM t"
    assert str(error(text)) == (
        "KCQL syntax error at line 2, column 24: expected ',' or FROM, found 'y'\n"
        "  INSERT INTO b SELECT x y FROM t\n"
        "                         ^")


def test_error_text_at_the_end_of_the_text() -> None:
    assert str(error("INSERT INTO m SELECT * FROM t\n  WITHTIMESTAMP")) == (
        "KCQL syntax error at line 2, column 16: expected sys_time() or a field path, found the end\n"
        "  INSERT INTO m SELECT * FROM t\n"
        "    WITHTIMESTAMP\n"
        "                 ^")


def test_error_text_long_statement_shows_the_last_four_lines() -> None:
    text = "INSERT INTO m\nSELECT a,\nb,\nc,\nd\nFROM t WITHTAG(x=)"
    assert str(error(text)) == (
        "KCQL syntax error at line 6, column 18: expected a tag value, found ')'\n"
        "  b,\n"
        "  c,\n"
        "  d\n"
        "  FROM t WITHTAG(x=)\n"
        "                   ^")


def test_error_column_counts_a_tab_as_one_column() -> None:
    err = error("INSERT\tINTO m SELECT * FROM t\tWITHTAG(x")
    assert (err.line, err.column) == (1, 40)
    assert str(err).splitlines()[1:] == ["  INSERT INTO m SELECT * FROM t WITHTAG(x",
                                         "                                         ^"]


def test_error_text_seed_and_example() -> None:
    assert str(error("INSERT INTO m SELECT x AS a, y AS b and z AS c FROM t")) == (
        "KCQL syntax error at line 1, column 37: 'and' does not join fields in KCQL: separate them with ','\n"
        "  INSERT INTO m SELECT x AS a, y AS b and z AS c FROM t\n"
        "                                      ^")


@pytest.mark.parametrize("text, column, reason", [
    ("SELECT * FROM t", 1, "expected INSERT INTO (a statement) or ';', found 'SELECT'"),
    ("INSERT m SELECT * FROM t", 8, "expected INTO, found 'm'"),
    ("INSERT INTO SELECT * FROM t", 13, "expected a measurement name, found the keyword 'SELECT' (quote it with "
                                        "backticks, `SELECT`, to use it as a name)"),
    ("INSERT INTO m * FROM t", 15, "expected SELECT, found '*'"),
    ("INSERT INTO m SELECT a,, b FROM t", 24, "expected a field path or *, found ','"),
    ("INSERT INTO m SELECT a, FROM t", 25, "expected a field path or *, found 'FROM'"),
    ("INSERT INTO m SELECT a b FROM t", 24, "expected ',' or FROM, found 'b'"),
    ("INSERT INTO m SELECT *", 23, "expected ',' or FROM, found the end"),
    ("INSERT INTO m SELECT * FROM", 28, "expected a topic name, found the end"),
    ("INSERT INTO m SELECT `x FROM t", 22, "this ` opens a quoted name that is never closed"),
    ("INSERT INTO m SELECT * FROM t WITHTAG(a='x)", 41, "this ' opens a quoted value that is never closed"),
    ("INSERT INTO m SELECT * FROM t WITHTAG a", 39, "expected '(' after WITHTAG, found 'a'"),
    ("INSERT INTO m SELECT * FROM t WITHTAG()", 39, "expected a tag (path, path AS name, or name=value), found ')'"),
    ("INSERT INTO m SELECT * FROM t WITHTAG(a,)", 41, "expected a tag (path, path AS name, or name=value), found "
                                                      "')'"),
    ("INSERT INTO m SELECT * FROM t WITHTAG(a", 40, "expected ',' or ')', found the end"),
    ("INSERT INTO m SELECT * FROM t WITHTAG(a=)", 41, "expected a tag value, found ')'"),
    ("INSERT INTO m SELECT * FROM t WITHTAG(a AS)", 43, "expected an alias, found ')'"),
    ("INSERT INTO m SELECT * FROM t IGNORE", 37, "expected a field path, found the end"),
    ("INSERT INTO m SELECT * FROM t IGNORE a,", 40, "expected a field path, found the end"),
    ("INSERT INTO m SELECT * FROM t WITHTARGET=", 42, "expected a field path, found the end"),
    ("INSERT INTO m SELECT * FROM t WITHTIMESTAMP", 44, "expected sys_time() or a field path, found the end"),
    ("INSERT INTO m SELECT * FROM t TIMESTAMPUNIT SECONDS", 45, "expected '=' after TIMESTAMPUNIT, found 'SECONDS'"),
    ("INSERT INTO m SELECT * FROM t WITHTAG(a) INSERT INTO n SELECT * FROM t", 42,
     "expected a clause (IGNORE, WITHTARGET, WITHTIMESTAMP, TIMESTAMPUNIT, WITHTAG, DATABASE, RETENTION POLICY), "
     "';' or the end, found 'INSERT'"),
    ("INSERT INTO m SELECT * FROM t WITHTAG(a) )", 42,
     "expected a clause (IGNORE, WITHTARGET, WITHTIMESTAMP, TIMESTAMPUNIT, WITHTAG, DATABASE, RETENTION POLICY), "
     "';' or the end, found ')'"),
    ("INSERT INTO m SELECT * FROM t WITHTAG(a) WITHTIMESTAMP", 55,
     "expected sys_time() or a field path, found the end"),
])
def test_errors_say_where_and_what_was_expected(text: str, column: int, reason: str) -> None:
    err = error(text)
    assert (err.reason, err.line, err.column) == (reason, 1, column)
    lines = str(err).splitlines()
    assert lines[0] == f"KCQL syntax error at line 1, column {column}: {reason}"
    assert lines[1:] == [f"  {text}", "  " + " " * (column - 1) + "^"]


def test_upstream_silently_lost_clauses_out_of_order_here_they_work() -> None:
    # Upstream lost the timestamp in `... WITHTAG(a) WITHTIMESTAMP ts`.
    s = one(f"{BASE} WITHTAG(a) WITHTIMESTAMP ts")
    assert (s.tags, s.timestamp) == ((PathTag(value("a")),), value("ts"))


# ------------------------------------------------------------------ Unicode whitespace and look-alike characters

UNICODE_SPACES = ["\u00a0", "\u2002", "\u2003", "\u2009", "\u202f", "\u3000", "\u200b", "\ufeff", "\x0b", "\x0c",
                  "\u2028", "\u1680"]


@pytest.mark.parametrize("space", UNICODE_SPACES)
def test_unicode_whitespace_between_tokens_is_whitespace(space: str) -> None:
    text = (f"{space}INSERT{space}INTO m{space}SELECT{space}*{space}FROM t{space}WITHTAG({space}a{space},"
            f"{space}b=c){space}WITHTIMESTAMP{space}ts{space}")
    s = one(text)
    assert (s.measurement, s.topic, s.fields) == ("m", "t", (STAR,))
    assert s.tags == (PathTag(value("a")), ConstantTag("b", "c"))
    assert s.timestamp == value("ts")


def test_unicode_whitespace_inside_quotes_is_kept() -> None:
    s = one("INSERT INTO m SELECT `a\u00a0b` FROM t WITHTAG(c='eu\u00a0west')")
    assert s.fields == (SelectField(Path(Source.VALUE, ("a\u00a0b",), "`a\u00a0b`")),)
    assert s.tags == (ConstantTag("c", "eu\u00a0west"),)


def test_a_no_break_space_splits_a_name_like_a_space_and_errors_quote_the_text_as_written() -> None:
    text = "INSERT INTO m SELECT a\u00a0b FROM t"
    err = error(text)
    assert (err.reason, err.column) == ("expected ',' or FROM, found 'b'", 24)
    assert str(err).splitlines()[1:] == [f"  {text}", "  " + " " * 23 + "^"]


@pytest.mark.parametrize("char, name", [
    ("\u2060", "U+2060 WORD JOINER"),
    ("\u00ad", "U+00AD SOFT HYPHEN"),
    ("\u2018", "U+2018 LEFT SINGLE QUOTATION MARK"),
    ("\u201c", "U+201C LEFT DOUBLE QUOTATION MARK"),
    ("\x00", "U+0000"),
])
def test_a_character_that_cannot_be_read_is_named_at_its_column(char: str, name: str) -> None:
    text = f"INSERT INTO m SELECT a{char}b FROM t"
    err = error(text)
    assert err.column == 23 and name in err.reason and "the end" not in err.reason
    assert str(err).splitlines()[-1] == "  " + " " * 22 + "^"


def test_curly_quotes_around_a_tag_value_are_named() -> None:
    err = error("INSERT INTO m SELECT * FROM t WITHTAG(dc=\u2018eu\u2019)")
    assert err.column == 42
    assert err.reason == ("found '\u2018' (U+2018 LEFT SINGLE QUOTATION MARK) in a tag value: quote values with "
                          "' (U+0027)")


def test_other_space_list_is_every_unicode_space() -> None:
    from kcql.grammar import _OTHER_SPACE

    every = {chr(c) for c in range(0x110000) if chr(c).isspace()} - set(" \t\r\n")
    assert every | {"\u200b", "\ufeff"} == _OTHER_SPACE
