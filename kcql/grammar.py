"""The KCQL grammar (pyparsing), laid out like pyparsing's SQL examples: tokens, clauses, statement.

Everything after ``FROM topic`` is a set of clauses in any order, each at most once. The ``-``
operator (pyparsing's error stop) is used after every keyword and every list comma, so a mistake
is reported where it is, not where backtracking gave up. Checks that need the whole statement
(duplicates, TIMESTAMPUNIT without a path) raise at the spot too. ``parse`` converts pyparsing's
exceptions into ``KcqlSyntaxError`` with line, column, the statement and a caret.
"""

from __future__ import annotations

import re
import unicodedata
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
_SEGMENT = r"(?:`[^`]*`|[\w\-+/:@{}]+)"
_SEGMENT_RE = re.compile(r"`([^`]*)`|([^.`]+)")

KEYWORDS = ("INSERT", "INTO", "SELECT", "FROM", "AS")
CLAUSES = ("IGNORE", "WITHTARGET", "WITHTIMESTAMP", "TIMESTAMPUNIT", "WITHTAG")
# Where a statement writes. Not reserved as names (a topic or field may still be called
# `database`): they are only recognised where a clause may start, so no existing statement changes.
WHERE_CLAUSES = ("DATABASE", "RETENTION POLICY")
# A bare name may not be a keyword that could come next at its spot: otherwise a missing name
# would silently take the keyword's place (`INSERT INTO SELECT ...`, `FROM WITHTAG(...)`).
# Backticks make any word a name; inside WITHTAG( ) every word is a name (`WITHTAG(from, to)`).
_NONE: frozenset[str] = frozenset()
_CLAUSE_WORDS = frozenset(CLAUSES)
_BEFORE_SELECT = frozenset({"SELECT"})
_IN_SELECT = frozenset({"FROM", "AS"})
# Clauses of other Stream Reactor sinks: named in the error instead of a generic "expected".
UNSUPPORTED = (
    "PK", "AUTOCREATE", "AUTOEVOLVE", "STOREAS", "PROPERTIES", "PARTITIONBY", "DISTRIBUTEBY",
    "CLUSTERBY", "BATCH", "LIMIT", "WHERE", "TTL", "WITHFORMAT", "WITHCONVERTER", "WITHKEY",
    "WITHTYPE", "WITHDOCTYPE", "WITHINDEXSUFFIX", "INCREMENTALMODE", "WITHSTRUCTURE",
    "WITHPARTITIONER", "WITHSUBSCRIPTION", "WITHPIPELINE", "WITHJMSSELECTOR", "WITHUNWRAP",
    "WITHCOMPRESSION", "WITHDELIMITER", "WITHREGEX", "WITHSCHEMA", "WITHID", "WITHFLUSHSIZE",
    "WITHFLUSHINTERVAL", "WITHFLUSHCOUNT", "WITHPARTITIONBY", "WITH_FLUSH_SIZE",
    "WITH_FLUSH_INTERVAL", "WITH_FLUSH_COUNT", "WITHTABLE", "WITHCOLUMNS", "WITHKEYDELIMITER",
    "WITHSESSION", "WITHACK", "WITHENCODEBASE64", "WITHLOCK", "WITHCOMPACTION", "WITHPROCESSTIME",
    "WITHTAGS", "WITHBATCHSIZE", "WITHERRORPOLICY", "SAMPLE", "EVERY", "WITHTTL",
)
_METADATA = {
    "_topic": Source.TOPIC,
    "_partition": Source.PARTITION,
    "_offset": Source.OFFSET,
    "_timestamp": Source.TIMESTAMP,
}


def _fail(s: str, loc: int, msg: str) -> pp.ParseFatalException:
    return pp.ParseFatalException(s, loc, msg)


def _found(text: str, loc: int) -> str:
    """The token at ``loc``, quoted, for "found ..." in messages; a lone character that is not
    printable ASCII is also named by its code point (a curly quote or an invisible character
    pasted from a web page looks like nothing, or like an ordinary quote, in the message)."""
    if loc >= len(text):
        return "the end"
    m = re.match(r"`[^`]*`|'[^']*'|[\w\-.+/:@{}]+|\S", text[loc:])
    if not m:
        return "the end" if text[loc:].isspace() else _char(text[loc])
    token = m.group(0)
    return _char(token) if len(token) == 1 and not (token.isascii() and token.isprintable()) else repr(token)


def _char(ch: str) -> str:
    """``'‘' (U+2018 LEFT SINGLE QUOTATION MARK)``: a character named so that it can be found."""
    name = unicodedata.name(ch, "")
    return f"{ch!r} (U+{ord(ch):04X}{' ' + name if name else ''})"


# Whitespace pyparsing does not skip by itself: every other Unicode space (no-break space U+00A0,
# the U+2000..U+200A spaces, ideographic space, line/paragraph separators, ...), and the invisible
# zero-width space and byte-order mark that come with text pasted from web pages and editors.
# (Spelled out: computing it from str.isspace over every code point costs ~80 ms of cold start;
# tests/test_kcql.py checks the list against str.isspace.)
_OTHER_SPACE = frozenset("\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
                         "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\u200b\ufeff")

_OTHER_SPACE_RE = re.compile("[" + re.escape("".join(sorted(_OTHER_SPACE))) + "]")


def _plain_spaces(text: str) -> str:
    """``text`` with every whitespace character outside a quoted name (backticks) or value (single
    quotes) replaced by a plain space: one character for one, so lines and columns stay those of
    the text as written. Inside quotes every character is kept: it is part of a name or a value."""
    if not _OTHER_SPACE_RE.search(text):
        return text
    out = list(text)
    quote = ""
    for i, ch in enumerate(out):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "`'":
            quote = ch
        elif ch in _OTHER_SPACE:
            out[i] = " "
    return "".join(out)


def _kw(word: str) -> pp.ParserElement:
    """A keyword in any case, not followed by a name character (so ``FROM fromage`` works)."""
    return pp.Regex(rf"(?i){word}(?![{_NAME_CHARS}])").set_name(word)


INSERT, INTO, SELECT, FROM, AS = (_kw(w) for w in KEYWORDS)
IGNORE, WITHTARGET, WITHTIMESTAMP, TIMESTAMPUNIT, WITHTAG = (_kw(w) for w in CLAUSES)
DATABASE = _kw("DATABASE")
RETENTION_POLICY = pp.Regex(rf"(?i)RETENTION\s+POLICY(?![{_NAME_CHARS}])").set_name("RETENTION POLICY")


def _not_keyword(word: str, s: str, loc: int, what: str, reserved: frozenset[str]) -> None:
    upper = word.upper()
    if upper in reserved:
        if upper == "FROM" and what.endswith("or *"):  # `SELECT FROM t`: the fields are missing
            raise _fail(s, loc, f"expected {what}, found {word!r}")
        raise _fail(s, loc, f"expected {what}, found the keyword {word!r} (quote it with backticks, "
                            f"`{word}`, to use it as a name)")


def _unclosed(what: str) -> pp.ParserElement:
    """A lone opening quote: say so, instead of "expected a name"."""
    quote = "`" if what == "backtick" else "'"

    def action(s: str, loc: int, toks: pp.ParseResults) -> None:
        raise _fail(s, loc, f"this {quote} opens a quoted {'name' if quote == '`' else 'value'} that is never "
                            "closed")

    return pp.Regex(re.escape(quote)).set_parse_action(action)


# ---------------------------------------------------------------- names and paths


def _name(what: str, reserved: frozenset[str] = _NONE) -> pp.ParserElement:
    """A bare or backticked name; the ``reserved`` keywords must be backticked to be names."""

    def action(s: str, loc: int, toks: pp.ParseResults) -> str:
        text: str = toks[0]
        if text.startswith("`"):
            return text[1:-1]
        _not_keyword(text, s, loc, what, reserved)
        return text

    # Actions sit on the Regex itself: a MatchFirst's action would get the location before spaces.
    quoted = pp.Regex(r"`[^`]*`").set_parse_action(action)
    bare = pp.Regex(rf"[{_NAME_CHARS}]+").set_parse_action(action)
    return (quoted | bare | _unclosed("backtick")).set_name(what)


def _split_path(text: str, loc: int, source_text: str, allow_wildcard: bool,
                reserved: frozenset[str]) -> tuple[Path, bool]:
    """Turn ``a.`b.c`.d``, ``_key.x``, ``_header.h`` or ``a.*`` into a Path (and a wildcard flag)."""
    wildcard = text == "*" or text.endswith(".*")
    body = "" if text == "*" else (text[:-2] if wildcard else text)
    if wildcard and not allow_wildcard:
        raise _fail(source_text, loc, f"'{text}' selects many fields; only SELECT takes a wildcard")
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
                raise _fail(source_text, loc, "_header needs one header name: _header.<name>")
            name = ".".join(p for p, _ in parts[1:])
            return Path(Source.HEADER, (name,), text), False
        elif head in _METADATA:
            if len(parts) > 1 or wildcard:
                raise _fail(source_text, loc, f"{head} is Kafka metadata and has no fields")
            return Path(_METADATA[head], (), text), False
        elif len(parts) == 1 and not wildcard:
            _not_keyword(head, source_text, loc, "a field path or *" if allow_wildcard else "a field path",
                         reserved)
    return Path(source, tuple(p for p, _ in parts), text), wildcard


def _path(allow_wildcard: bool = False, located: bool = False, reserved: frozenset[str] = _CLAUSE_WORDS
          ) -> pp.ParserElement:
    """A path; ``located`` yields ``(location, path)`` for checks that point at the path."""
    # `a.*` is matched everywhere, so that IGNORE a.* says why it is wrong.
    pattern = rf"{_SEGMENT}(?:\.{_SEGMENT})*(?:\.\*)?"
    name = "a field path or *" if allow_wildcard else "a field path"

    def action(s: str, loc: int, toks: pp.ParseResults) -> Any:
        path, wildcard = _split_path(toks[0], loc, s, allow_wildcard, reserved)
        if located:
            return [(loc, path)]
        return (path, wildcard) if allow_wildcard else path

    return (pp.Regex(pattern).set_parse_action(action) | _unclosed("backtick")).set_name(name)


def _listed(item: pp.ParserElement) -> pp.ParserElement:
    """``item [, item]...`` where a comma must be followed by an item (the error says so)."""
    return item + pp.ZeroOrMore(pp.Suppress(",") - item)


# `INSERT INTO *`: every line of a line-protocol value keeps its own measurement (a 1-tuple tells
# it from a measurement named `*` in backticks).
KEEP_MEASUREMENT = pp.Literal("*").set_parse_action(lambda: [("*",)])
MEASUREMENT = (KEEP_MEASUREMENT | _name("a measurement name", _BEFORE_SELECT)).set_name("a measurement name")
TOPIC = _name("a topic name", _CLAUSE_WORDS)
ALIAS = _name("an alias", _IN_SELECT)
TAG_ALIAS = _name("an alias")

# SELECT list
STAR = pp.Literal("*").set_parse_action(lambda: (Path(Source.VALUE, (), "*"), True))
SELECT_PATH = (STAR | _path(allow_wildcard=True, reserved=_IN_SELECT)).set_name("a field path or *")
SELECT_ITEM = SELECT_PATH + pp.Optional(AS.suppress() - ALIAS)


def _select_item(s: str, loc: int, toks: pp.ParseResults) -> Any:
    path, wildcard = toks[0]
    alias = toks[1] if len(toks) > 1 else None
    if wildcard and alias is not None:
        raise _fail(s, loc, f"'{path.text}' selects many fields and cannot take an alias")
    return [(loc, SelectField(path=path, alias=alias, wildcard=wildcard))]


SELECT_ITEM.set_parse_action(_select_item)
SELECT_LIST = pp.Group(_listed(SELECT_ITEM))
# `SELECT a AS x, b AS y and c AS z` (seen in connector docs) is not KCQL: say why.
AND_MISTAKE = _kw("AND").set_parse_action(
    lambda s, loc, t: _raise(s, loc, "'and' does not join fields in KCQL: separate them with ','"))

# Clauses: each parse action yields (clause name, location, value) for the duplicate check.
UNIT = pp.Regex(r"(?i)(?:" + "|".join(u.name for u in TimeUnit) + r")(?![\w])").set_name(
    "a unit (" + ", ".join(u.name for u in TimeUnit) + ")")
UNIT.set_parse_action(lambda t: TimeUnit[t[0].upper()])
SYS_TIME = pp.Regex(r"(?i)sys_time\s*\(\s*\)").set_parse_action(lambda: "sys_time")

# Typographic quotes (a word processor's or web page's 'x'): never meant as part of a bare value.
_CURLY_QUOTES = "\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f\u2032\u2033\u00b4"


def _bare_value(s: str, loc: int, toks: pp.ParseResults) -> str:
    text: str = toks[0]
    for i, ch in enumerate(text):
        if ch in _CURLY_QUOTES:
            raise _fail(s, loc + i, f"found {_char(ch)} in a tag value: quote values with ' (U+0027)")
    return text


CONSTANT_VALUE = (pp.Regex(r"'(?:[^']|'')*'").set_parse_action(lambda t: t[0][1:-1].replace("''", "'"))
                  | _unclosed("quote")
                  | pp.Regex(r"""[^\s,();'"]+""").set_parse_action(_bare_value)).set_name("a tag value")
CONSTANT_TAG = (_name("a tag name") + pp.Suppress("=") - CONSTANT_VALUE).set_parse_action(
    lambda s, loc, t: [(loc, ConstantTag(key=t[0], value=t[1]))])
PATH_TAG = (_path(reserved=_NONE) + pp.Optional(AS.suppress() - TAG_ALIAS)).set_parse_action(
    lambda s, loc, t: [(loc, PathTag(path=t[0], alias=t[1] if len(t) > 1 else None))])
TAG = (CONSTANT_TAG | PATH_TAG).set_name("a tag (path, path AS name, or name=value)")


def _punct(char: str, where: str) -> pp.ParserElement:
    return pp.Suppress(pp.Literal(char).set_name(f"'{char}' {where}"))


def _clause(name: str, body: pp.ParserElement) -> pp.ParserElement:
    def action(s: str, loc: int, toks: pp.ParseResults) -> Any:
        return [(name, loc, toks[0] if name not in ("IGNORE", "WITHTAG") else tuple(toks))]

    return body.set_parse_action(action)


IGNORE_CLAUSE = _clause("IGNORE", IGNORE.suppress() - _listed(_path(located=True)))
TARGET_CLAUSE = _clause("WITHTARGET", WITHTARGET.suppress() - _punct("=", "after WITHTARGET") - _path())
TIMESTAMP_CLAUSE = _clause("WITHTIMESTAMP", WITHTIMESTAMP.suppress()
                           - (SYS_TIME | _path()).set_name("sys_time() or a field path"))
UNIT_CLAUSE = _clause("TIMESTAMPUNIT", TIMESTAMPUNIT.suppress() - _punct("=", "after TIMESTAMPUNIT") - UNIT)
# After DATABASE / RETENTION POLICY a clause word is a missing name, not the name.
_AFTER_WHERE = _CLAUSE_WORDS | {"DATABASE", "RETENTION"}
DATABASE_CLAUSE = _clause("DATABASE", DATABASE.suppress() - _name("a database or bucket name", _AFTER_WHERE))
RP_CLAUSE = _clause("RETENTION POLICY", RETENTION_POLICY.suppress()
                    - _name("a retention policy name", _AFTER_WHERE))
TAG_CLAUSE = _clause("WITHTAG", WITHTAG.suppress() - _punct("(", "after WITHTAG") - _listed(TAG)
                     - pp.Suppress(pp.Literal(")").set_name("',' or ')'")))


def _unsupported(s: str, loc: int, toks: pp.ParseResults) -> None:
    word = toks[0].upper()
    raise _fail(s, loc, f"{word} belongs to other Stream Reactor sinks; the InfluxDB sink does not support it")


def _raise(s: str, loc: int, msg: str) -> None:
    raise _fail(s, loc, msg)


UNSUPPORTED_CLAUSE = pp.Regex(r"(?i)(?:" + "|".join(UNSUPPORTED) + r")(?![\w])").set_parse_action(_unsupported)
CLAUSE = (IGNORE_CLAUSE | TARGET_CLAUSE | TIMESTAMP_CLAUSE | UNIT_CLAUSE | TAG_CLAUSE | DATABASE_CLAUSE | RP_CLAUSE
          | UNSUPPORTED_CLAUSE)
END_OF_STATEMENT = pp.FollowedBy((pp.Literal(";") | pp.StringEnd()).set_name(
    "a clause (" + ", ".join(CLAUSES + WHERE_CLAUSES) + "), ';' or the end"))

UPSERT = pp.Regex(rf"(?i)UPSERT(?![{_NAME_CHARS}])").set_parse_action(
    lambda s, loc, t: _raise(s, loc, "UPSERT belongs to other Stream Reactor sinks; the InfluxDB sink only "
                                     "INSERTs"))

STATEMENT_BODY = (INSERT.suppress() - INTO.suppress() - MEASUREMENT - SELECT.suppress() - SELECT_LIST
                  - pp.Optional(AND_MISTAKE) - FROM.copy().set_name("',' or FROM").suppress() - TOPIC
                  - pp.Group(pp.ZeroOrMore(CLAUSE)) - END_OF_STATEMENT)
STATEMENT = UPSERT | pp.Located(STATEMENT_BODY)


def _check_names(s: str, fields: list[tuple[int, SelectField]], tags: tuple[tuple[int, Tag], ...]) -> None:
    """Two explicit fields (or two tags) written under one name would silently overwrite each other."""
    seen: dict[str, str] = {}
    for at, f in fields:
        if f.wildcard:
            continue
        if f.name in seen:
            raise _fail(s, at, f"two selected fields would both be written as {f.name!r} "
                               f"({seen[f.name]} and {f.path.text}); give one an alias with AS")
        seen[f.name] = f.path.text
    tag_names: set[str] = set()
    for at, tag in tags:
        if tag.name in tag_names:
            raise _fail(s, at, f"two tags are named {tag.name!r}; give one an alias with AS")
        tag_names.add(tag.name)


def _statement(s: str, loc: int, toks: pp.ParseResults) -> Statement:
    start, body, end = toks[0], toks[1], toks[2]
    measurement, located_fields, topic, clauses = body[0], list(body[1]), body[2], list(body[3])
    keep_measurement = isinstance(measurement, tuple)
    if keep_measurement:
        measurement = measurement[0]
    seen: dict[str, Any] = {}
    where: dict[str, int] = {}
    for name, at, value in clauses:
        if name in seen:
            raise _fail(s, at, f"{name} appears twice in one statement")
        seen[name], where[name] = value, at
    ts = seen.get("WITHTIMESTAMP")
    unit: TimeUnit | None = seen.get("TIMESTAMPUNIT")
    if unit is not None and not isinstance(ts, Path):
        raise _fail(s, where["TIMESTAMPUNIT"], "TIMESTAMPUNIT needs WITHTIMESTAMP <path> (sys_time() is "
                                               "already in nanoseconds)")
    if isinstance(ts, Path) and ts.source is Source.TIMESTAMP and unit not in (None, TimeUnit.MILLISECONDS):
        raise _fail(s, where["TIMESTAMPUNIT"], "_timestamp is always epoch milliseconds; TIMESTAMPUNIT "
                                               "does not apply to it")
    ignores: list[Path] = []
    for at, p in seen.get("IGNORE", ()):
        if p.source not in (Source.VALUE, Source.KEY) or not p.segments:
            raise _fail(s, at, f"IGNORE takes fields of the value or the key; '{p.text}' is never selected "
                               "by a wildcard")
        ignores.append(p)
    located_tags: tuple[tuple[int, Tag], ...] = seen.get("WITHTAG", ())
    _check_names(s, located_fields, located_tags)
    return Statement(
        measurement=measurement,
        topic=topic,
        fields=tuple(f for _, f in located_fields),
        ignores=tuple(ignores),
        target=seen.get("WITHTARGET"),
        timestamp=ts if isinstance(ts, Path) else None,
        timestamp_unit=unit,
        tags=tuple(t for _, t in located_tags),
        database=seen.get("DATABASE"),
        retention_policy=seen.get("RETENTION POLICY"),
        text=s[start:end].strip(),
        line=pp.lineno(start, s),
        column=pp.col(start, s),
        sys_time=ts == "sys_time",
        keep_measurement=keep_measurement,
    )


STATEMENT.set_parse_action(_statement)


def _not_a_statement(s: str, loc: int, toks: pp.ParseResults) -> None:
    raise _fail(s, loc, f"expected INSERT INTO (a statement) or ';', found {_found(s, loc)}")


NOT_A_STATEMENT = pp.Regex(r"\S").set_parse_action(_not_a_statement)
KCQL = (pp.ZeroOrMore(pp.Suppress(";") | STATEMENT | NOT_A_STATEMENT) + pp.StringEnd()).parse_with_tabs()


def _statement_start(text: str, loc: int) -> int:
    """Where the statement containing ``loc`` starts: after the last ``;`` outside quotes."""
    start, quote = 0, ""
    for i, ch in enumerate(text[:loc]):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "`'":
            quote = ch
        elif ch == ";":
            start = i + 1
    while start < loc and text[start].isspace():
        start += 1
    return start


def parse(text: str) -> tuple[Statement, ...]:
    """Parse a whole ``connect.influx.kcql`` value; every character must be understood.

    Any Unicode whitespace counts as whitespace outside quotes (see ``_plain_spaces``); errors
    quote the text as written."""
    try:
        result = KCQL.parse_string(_plain_spaces(text), parse_all=True)
    except pp.ParseBaseException as err:
        loc = min(err.loc, len(text))
        msg = err.msg
        if msg.startswith("Expected "):
            msg = f"expected {msg[len('Expected '):]}, found {_found(text, loc)}"
        first = pp.lineno(_statement_start(text, loc), text)
        raise KcqlSyntaxError(msg, text, pp.lineno(loc, text), pp.col(loc, text), first) from None
    statements = tuple(t for t in result if isinstance(t, Statement))
    if not statements:
        raise KcqlSyntaxError("expected at least one INSERT INTO ... statement", text, 1, 1)
    return statements
