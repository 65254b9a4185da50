"""The KCQL grammar (pyparsing), laid out like pyparsing's SQL examples: tokens, clauses, statement.

Everything after ``FROM topic`` is a set of clauses in any order, each at most once. The ``-``
operator (pyparsing's error stop) is used after every keyword, so a mistake is reported where it
is, not where backtracking gave up. ``parse`` converts pyparsing's exceptions into
``KcqlSyntaxError`` with line, column and a caret.
"""

from __future__ import annotations

import re
from typing import Any

import pyparsing as pp

from kcql.ast import (
    ConstantTag,
    Path,
    PathTag,
    SelectField,
    Source,
    Statement,
    Tag,
    TimeUnit,
)
from kcql.errors import KcqlSyntaxError

# Characters of a bare name: letters, digits and _ - . + / : @ { } (topics like influx-topic, a.b.c).
_NAME_CHARS = r"\w\-.+/:@{}"
_IDENT_CHARS = "".join(chr(c) for c in range(128) if re.match(rf"[{_NAME_CHARS}]", chr(c)))
_SEGMENT = r"(?:`[^`]*`|[\w\-+/:@{}]+)"
_SEGMENT_RE = re.compile(r"`([^`]*)`|([^.`]+)")

CLAUSES = ("IGNORE", "WITHTARGET", "WITHTIMESTAMP", "TIMESTAMPUNIT", "WITHTAG")
# Clauses of other Stream Reactor sinks: named in the error instead of a generic "expected".
UNSUPPORTED = (
    "PK", "AUTOCREATE", "AUTOEVOLVE", "STOREAS", "PROPERTIES", "PARTITIONBY", "DISTRIBUTEBY",
    "CLUSTERBY", "BATCH", "LIMIT", "WHERE", "TTL", "WITHFORMAT", "WITHCONVERTER", "WITHKEY",
    "WITHTYPE", "WITHDOCTYPE", "WITHINDEXSUFFIX", "INCREMENTALMODE", "WITHSTRUCTURE",
    "WITHPARTITIONER", "WITHSUBSCRIPTION", "WITHPIPELINE", "WITHJMSSELECTOR", "WITHUNWRAP",
    "WITHCOMPRESSION", "WITHDELIMITER", "WITHREGEX", "WITHSCHEMA", "WITHID", "WITHFLUSHSIZE",
    "WITHFLUSHINTERVAL", "WITHFLUSHCOUNT", "WITHPARTITIONBY", "WITH_FLUSH_SIZE",
    "WITH_FLUSH_INTERVAL", "WITH_FLUSH_COUNT", "WITHTABLE", "WITHCOLUMNS", "WITHKEYDELIMITER",
)
_METADATA = {
    "_topic": Source.TOPIC,
    "_partition": Source.PARTITION,
    "_offset": Source.OFFSET,
    "_timestamp": Source.TIMESTAMP,
}


def _kw(word: str) -> pp.CaselessKeyword:
    kw = pp.CaselessKeyword(word, ident_chars=_IDENT_CHARS)
    kw.set_name(word)
    return kw


INSERT, INTO, SELECT, FROM, AS = (_kw(w) for w in ("INSERT", "INTO", "SELECT", "FROM", "AS"))
IGNORE, WITHTARGET, WITHTIMESTAMP, TIMESTAMPUNIT, WITHTAG = (_kw(w) for w in CLAUSES)
_RESERVED = pp.MatchFirst([INSERT, INTO, SELECT, FROM, AS, *(_kw(w) for w in CLAUSES)])


def _split_path(text: str, loc: int, source_text: str, allow_wildcard: bool) -> tuple[Path, bool]:
    """Turn ``a.`b.c`.d``, ``_key.x``, ``_header.h`` or ``a.*`` into a Path (and a wildcard flag)."""
    wildcard = text == "*" or text.endswith(".*")
    body = "" if text == "*" else (text[:-2] if wildcard else text)
    if wildcard and not allow_wildcard:
        raise pp.ParseFatalException(source_text, loc, f"'{text}' selects many fields; only SELECT takes a wildcard")
    parts: list[tuple[str, bool]] = []  # (segment, was backticked)
    for m in _SEGMENT_RE.finditer(body):
        parts.append((m.group(1), True) if m.group(1) is not None else (m.group(2), False))
    source = Source.VALUE
    if parts and not parts[0][1]:
        head = parts[0][0]
        if head == "_value":
            parts = parts[1:]
        elif head == "_key":
            source, parts = Source.KEY, parts[1:]
        elif head == "_header":
            if not parts[1:] or wildcard:
                raise pp.ParseFatalException(source_text, loc, "_header needs one header name: _header.<name>")
            name = ".".join(p for p, _ in parts[1:])
            return Path(Source.HEADER, (name,), text), False
        elif head in _METADATA:
            if len(parts) > 1 or wildcard:
                raise pp.ParseFatalException(source_text, loc, f"{head} is Kafka metadata and has no fields")
            return Path(_METADATA[head], (), text), False
    return Path(source, tuple(p for p, _ in parts), text), wildcard


def _path(allow_wildcard: bool = False) -> pp.ParserElement:
    pattern = rf"{_SEGMENT}(?:\.{_SEGMENT})*" + (r"(?:\.\*)?" if allow_wildcard else "")
    expr = pp.Regex(pattern).set_name("a field path")

    def action(s: str, loc: int, toks: pp.ParseResults) -> Any:
        path, wildcard = _split_path(toks[0], loc, s, allow_wildcard)
        return (path, wildcard) if allow_wildcard else path

    return expr.set_parse_action(action)


def _unquote_name(toks: pp.ParseResults) -> str:
    text: str = toks[0]
    return text[1:-1] if text.startswith("`") else text


NAME = (pp.Regex(r"`[^`]*`") | pp.Regex(rf"[{_NAME_CHARS}]+")).set_name("a name")
NAME.set_parse_action(_unquote_name)
ALIAS = (~_RESERVED + NAME).set_name("an alias")
TOPIC = (~_RESERVED + NAME).set_name("a topic name")
MEASUREMENT = (~_RESERVED + NAME).set_name("a measurement name")

# SELECT list
STAR = pp.Literal("*").set_parse_action(lambda s, loc, t: (Path(Source.VALUE, (), "*"), True))
SELECT_ITEM = (((STAR | (~_RESERVED + _path(allow_wildcard=True))).set_name("a field path or *"))
               + pp.Optional(AS.suppress() - ALIAS))


def _select_item(s: str, loc: int, toks: pp.ParseResults) -> SelectField:
    path, wildcard = toks[0]
    alias = toks[1] if len(toks) > 1 else None
    if wildcard and alias is not None:
        raise pp.ParseFatalException(s, loc, f"'{path.text}' selects many fields and cannot take an alias")
    return SelectField(path=path, alias=alias, wildcard=wildcard)


SELECT_ITEM.set_parse_action(_select_item)
SELECT_LIST = pp.Group(pp.DelimitedList(SELECT_ITEM))

# Clauses: each parse action yields (clause name, location, value) for the duplicate check.
UNIT = pp.Regex(r"(?i)(?:" + "|".join(u.name for u in TimeUnit) + r")(?![\w])").set_name(
    "a unit (" + ", ".join(u.name for u in TimeUnit) + ")")
UNIT.set_parse_action(lambda t: TimeUnit[t[0].upper()])
SYS_TIME = (pp.CaselessKeyword("sys_time") + pp.Literal("(") + pp.Literal(")")).set_name("sys_time()")
SYS_TIME.set_parse_action(lambda t: "sys_time")

CONSTANT_VALUE = (pp.Regex(r"'(?:[^']|'')*'").set_parse_action(lambda t: t[0][1:-1].replace("''", "'"))
                  | pp.Regex(r"""[^\s,();'"]+""")).set_name("a tag value")
CONSTANT_TAG = (NAME + pp.Suppress("=") - CONSTANT_VALUE).set_parse_action(
    lambda t: ConstantTag(key=t[0], value=t[1]))
PATH_TAG = (_path() + pp.Optional(AS.suppress() - ALIAS)).set_parse_action(
    lambda t: PathTag(path=t[0], alias=t[1] if len(t) > 1 else None))
TAG = (CONSTANT_TAG | PATH_TAG).set_name("a tag (path, path AS name, or key=value)")


def _clause(name: str, body: pp.ParserElement) -> pp.ParserElement:
    def action(s: str, loc: int, toks: pp.ParseResults) -> Any:
        return [(name, loc, toks[0] if name not in ("IGNORE", "WITHTAG") else tuple(toks))]

    return body.set_parse_action(action)


IGNORE_CLAUSE = _clause("IGNORE", IGNORE.suppress() - pp.DelimitedList(_path()))
TARGET_CLAUSE = _clause("WITHTARGET", WITHTARGET.suppress() - pp.Suppress("=") - _path())
TIMESTAMP_CLAUSE = _clause("WITHTIMESTAMP", WITHTIMESTAMP.suppress() - (SYS_TIME | _path()))
UNIT_CLAUSE = _clause("TIMESTAMPUNIT", TIMESTAMPUNIT.suppress() - pp.Suppress("=") - UNIT)
TAG_CLAUSE = _clause("WITHTAG", WITHTAG.suppress() - pp.Suppress("(") - pp.DelimitedList(TAG)
                     - pp.Suppress(")"))


def _unsupported(s: str, loc: int, toks: pp.ParseResults) -> None:
    word = toks[0].upper()
    raise pp.ParseFatalException(
        s, loc, f"{word} belongs to other Stream Reactor sinks; the InfluxDB sink does not support it")


UNSUPPORTED_CLAUSE = pp.Regex(r"(?i)(?:" + "|".join(UNSUPPORTED) + r")(?![\w])").set_parse_action(_unsupported)
CLAUSE = IGNORE_CLAUSE | TARGET_CLAUSE | TIMESTAMP_CLAUSE | UNIT_CLAUSE | TAG_CLAUSE | UNSUPPORTED_CLAUSE
END_OF_STATEMENT = pp.FollowedBy((pp.Literal(";") | pp.StringEnd()).set_name(
    "a clause (" + ", ".join(CLAUSES) + "), ';' or the end"))

UPSERT = pp.CaselessKeyword("UPSERT", ident_chars=_IDENT_CHARS).set_parse_action(
    lambda s, loc, t: _raise(s, loc, "UPSERT belongs to other Stream Reactor sinks; "
                             "the InfluxDB sink only INSERTs"))


def _raise(s: str, loc: int, msg: str) -> None:
    raise pp.ParseFatalException(s, loc, msg)


STATEMENT_BODY = (INSERT.suppress() - INTO.suppress() - MEASUREMENT - SELECT.suppress() - SELECT_LIST
                  - FROM.copy().set_name("',' or FROM").suppress() - TOPIC
                  - pp.Group(pp.ZeroOrMore(CLAUSE)) - END_OF_STATEMENT)
STATEMENT = UPSERT | pp.Located(STATEMENT_BODY)


def _statement(s: str, loc: int, toks: pp.ParseResults) -> Statement:
    start, body, end = toks[0], toks[1], toks[2]
    measurement, fields, topic, clauses = body[0], tuple(body[1]), body[2], list(body[3])
    seen: dict[str, Any] = {}
    for name, at, value in clauses:
        if name in seen:
            raise pp.ParseFatalException(s, at, f"{name} appears twice in one statement")
        seen[name] = value
    if "TIMESTAMPUNIT" in seen and not isinstance(seen.get("WITHTIMESTAMP"), Path):
        raise pp.ParseFatalException(s, start, "TIMESTAMPUNIT needs WITHTIMESTAMP <path>")
    tags: tuple[Tag, ...] = seen.get("WITHTAG", ())
    ts = seen.get("WITHTIMESTAMP")
    return Statement(
        measurement=measurement,
        topic=topic,
        fields=fields,
        ignores=seen.get("IGNORE", ()),
        target=seen.get("WITHTARGET"),
        timestamp=ts if isinstance(ts, Path) else None,
        timestamp_unit=seen.get("TIMESTAMPUNIT"),
        tags=tags,
        text=s[start:end].strip(),
        line=pp.lineno(start, s),
        column=pp.col(start, s),
    )


STATEMENT.set_parse_action(_statement)
KCQL = (pp.Optional(STATEMENT) + pp.ZeroOrMore(pp.Suppress(";") + pp.Optional(STATEMENT))
        + pp.StringEnd().set_name("';' or the end"))


def _found(text: str, loc: int) -> str:
    if loc >= len(text):
        return "the end"
    m = re.match(r"`[^`]*`|'[^']*'|[\w\-.+/:@{}]+|\S", text[loc:])
    return repr(m.group(0)) if m else "the end"


def parse(text: str) -> tuple[Statement, ...]:
    """Parse a whole ``connect.influx.kcql`` value; every character must be understood."""
    try:
        result = KCQL.parse_string(text, parse_all=True)
    except pp.ParseBaseException as err:
        loc = min(err.loc, len(text))
        msg = err.msg
        if msg.startswith("Expected "):
            msg = f"expected {msg[len('Expected '):]}, found {_found(text, loc)}"
        raise KcqlSyntaxError(msg, text, pp.lineno(loc, text), pp.col(loc, text)) from None
    statements = tuple(t for t in result if isinstance(t, Statement))
    if not statements:
        raise KcqlSyntaxError("expected at least one INSERT INTO ... statement", text, 1, 1)
    return statements
