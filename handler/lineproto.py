"""Line protocol: the one place where names are escaped and values, tags and times are written.

The mapping stage (``handler.mapping``) decides *which* values a record's line holds; this
module decides how each one is written and what InfluxDB can store: field values (``field_writer``),
tag values (``tag_text``, ``tag_pair``), names (``escape_*``) and times (``timestamp_reader``).
It also reads line protocol (``parse_lines``, for line-protocol topics) into values, which are
then written again through the same functions: see "reading line protocol" below.

Hand-written rather than influxdb-client's ``Point``: it is several times faster on a large
batch, and it enforces what the library does not: no name or value from a record may end a
line early (line-protocol injection), and nothing may be silently changed by the server.

How InfluxDB 1.x (measured on 1.6.7) reads a line, and why each rule below exists:

- Lines end at ``\\n`` only; inside a double-quoted string field a newline is kept. A line is
  first cut by a scanner that treats every backslash as "skip the next byte" and that tracks
  quotes in the field section by counting unescaped ``=`` and ``,``. The parsers that run after
  it look only at the byte *before* a separator. Where the two disagree (an odd run of
  backslashes right before an escaped separator), the line cutter can miss a string's opening
  quote and cut the line at a newline inside the string: the rest becomes a point of its own.
- Names and tag values: ``\\,`` ``\\ `` ``\\=`` are unescaped (measurements and field keys
  also unescape ``\\"``); every other backslash is kept as it is. So the encoder escapes the
  separators and leaves backslashes alone, which round-trips everything except the cases it
  rejects.
- String field values unescape ``\\\\`` and ``\\"`` and keep newlines and control characters.

Rejected (``RecordError(..., FailureKind.ENCODE)``), because they cannot be carried:

- any name or tag value (measurement, tag key, tag value, field key) that is empty, holds a
  control character (Unicode category Cc: U+0000-U+001F, U+007F-U+009F), ends in a backslash
  (it would escape the separator after it), or holds a lone surrogate (from a JSON ``\\ud800``
  escape); lone surrogates in string field values are caught when the batch is encoded to UTF-8.
  One rule for every control character, rather than one per character and position: InfluxDB
  1.x ends a line at a newline and strips a leading tab or NUL from measurements and field keys
  (it keeps the others), so only a rule that covers all of them is easy to predict;
- a measurement that starts with ``#`` (comment line), or that has a backslash right before
  ``,``, a space, ``=`` or ``"`` (the server stores a broken series that no query returns);
- a tag key or value with an odd run of backslashes right before a space (the line cutter then
  sees the fields start early and can cut a later string field at its newline);
- a field key with an odd run of backslashes right before ``,``, ``=`` or a space (rejected by
  the server, or cut wrongly as above).

String field values carry every character, control characters included.

Each name is checked and escaped once and cached: the same names recur on every record.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from handler.errors import FailureKind, RecordError
from handler.records import MISSING


class Unsigned(int):
    """An unsigned 64-bit field value: written with line protocol's ``u`` suffix, so a line
    read from a line-protocol value keeps its type (``int`` fields are written ``i``)."""

    __slots__ = ()


class Point(NamedTuple):
    """One InfluxDB point as values (``tags`` sorted by key; field values bool/int/float/str),
    for code that builds points itself; ``encode`` writes its line."""

    measurement: str
    tags: list[tuple[str, str]]
    fields: dict[str, Any]
    time_ns: int

_MEAS_ESC = str.maketrans({",": "\\,", " ": "\\ "})
_TAG_ESC = str.maketrans({",": "\\,", " ": "\\ ", "=": "\\="})
_FIELD_KEY_ESC = str.maketrans({",": "\\,", " ": "\\ ", "=": "\\=", '"': '\\"'})
_NEEDS_MEAS_ESC = re.compile(r"[ ,]")
_NEEDS_TAG_ESC = re.compile(r"[ ,=]")
_NEEDS_FIELD_KEY_ESC = re.compile(r'[ ,="]')

# Problems, per kind of name; each pattern's match is described by _describe().
_CONTROL = r"[\x00-\x1f\x7f-\x9f]"  # Unicode category Cc
_MEAS_BAD = re.compile(_CONTROL + r'|[\ud800-\udfff]|\\\Z|\\[, ="]|^#')
_TAG_BAD = re.compile(_CONTROL + r"|[\ud800-\udfff]|\\\Z|(?<!\\)(?:\\\\)*\\ ")
_FIELD_KEY_BAD = re.compile(_CONTROL + r"|[\ud800-\udfff]|\\\Z|(?<!\\)(?:\\\\)*\\[, =]")

_CACHE_LIMIT = 50_000
_meas_cache: dict[str, str] = {}
_tag_cache: dict[str, str] = {}
_field_key_cache: dict[str, str] = {}
FIELD_KEY_EQ: dict[str, str] = {}  # field key → its escaped text followed by "="


def _describe(match: re.Match[str]) -> str:
    found = match.group(0)
    if found == "\n":
        return "contains a newline, which would end the line"
    if len(found) == 1 and (found < " " or "\x7f" <= found <= "\x9f"):
        return f"contains the control character {found!r} (U+{ord(found):04X}); names and tag values carry none"
    if "\ud800" <= found <= "\udfff":
        return f"contains the lone surrogate {found!r}, which is not Unicode text"
    if found == "\\" and match.end() == len(match.string):
        return "ends with a backslash, which would escape the separator after it"
    if match.start() == 0 and found == "#":
        return "starts with '#', which makes the line a comment"
    return f"has a backslash right before {found[-1]!r}, which line protocol cannot carry there"


def _reject(text: str, what: str, reason: str) -> RecordError:
    shown = text if len(text) <= 80 else text[:77] + "..."
    return RecordError(f"{what} {shown!r} cannot be written: it {reason}", FailureKind.ENCODE)


def _escape(text: str, what: str, bad: re.Pattern[str], needs: re.Pattern[str], table: dict[int, str],
            cache: dict[str, str]) -> str:
    if not text:
        raise RecordError(f"{what} is empty", FailureKind.ENCODE)
    problem = bad.search(text)
    if problem is not None:
        raise _reject(text, what, _describe(problem))
    out = text.translate(table) if needs.search(text) else text
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[text] = out
    return out


def escape_measurement(text: str) -> str:
    """A measurement name, escaped; RecordError when it cannot be carried."""
    out = _meas_cache.get(text)
    if out is None:
        out = _escape(text, "measurement", _MEAS_BAD, _NEEDS_MEAS_ESC, _MEAS_ESC, _meas_cache)
    return out


def escape_key(text: str, what: str = "tag") -> str:
    """A tag key or tag value, escaped (cached: the same tags recur on every record)."""
    out = _tag_cache.get(text)
    if out is None:
        out = _escape(text, what, _TAG_BAD, _NEEDS_TAG_ESC, _TAG_ESC, _tag_cache)
    return out


def escape_field_key(text: str) -> str:
    """A field key, escaped (field keys also unescape ``\\"``, and follow stricter rules)."""
    out = _field_key_cache.get(text)
    if out is None:
        out = _escape(text, "field key", _FIELD_KEY_BAD, _NEEDS_FIELD_KEY_ESC, _FIELD_KEY_ESC,
                      _field_key_cache)
    return out



# ---------------------------------------------------------------- values

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1
# InfluxDB stores times from 1677-09-21T00:12:43.145224194Z to 2262-04-11T23:47:16.854775806Z.
TIME_MIN_NS, TIME_MAX_NS = -9223372036854775806, 9223372036854775806
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_ONE_US = _dt.timedelta(microseconds=1)
_ISO_RE = re.compile(
    r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)(?:[.,](\d{1,9}))?(Z|z|[+-]\d{2}(?::?\d{2})?)$")
_DIGITS_RE = re.compile(r"[+-]?\d+$")
# More significant digits than this cannot be a time InfluxDB stores, in any unit (int64 ns has 19).
_MAX_TIME_DIGITS = 19


def shown(value: Any) -> str:
    """A value for a message: a huge integer or text is cut, never printed whole."""
    if type(value) is int and value.bit_length() > 128:  # more than ~38 digits
        digits = len(str(abs(value))) if value.bit_length() < 14_000 else None
        return f"{str(value)[:20]}... ({digits} digits)" if digits else "an integer of thousands of digits"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


if TYPE_CHECKING:  # a Protocol class costs its creation on every cold start; only mypy needs it

    class Counts(Protocol):
        """Where a ``field_writer`` counts the values it leaves out on purpose."""

        non_finite: int


# What a ``field_writer`` does with a value that is not one of the four field types: the caller's
# rule (flatten an object, convert a date, refuse bytes) puts what it becomes into ``out``.
Other = Callable[[list[str], str, Any], None]


# Appends fields, (name, value) pairs, to a line's list of ``key=value`` texts.
PutFields = Callable[[list[str], Iterable[tuple[str, Any]]], None]


def field_writer(known: dict[str, str], learn: Callable[[str], str], other: Other, counts: Counts) -> PutFields:
    """The function that appends fields to ``out`` as ``key=value`` texts: the one place field
    values are written as line protocol and checked against what InfluxDB stores.

    ``known`` maps a name to its escaped ``key=`` text, or to "" for a name left out; ``learn``
    is asked for a name not in it. A null is no field; a float that is not finite is left out and
    counted; an integer outside int64 fails the record; an aware datetime is its epoch
    milliseconds. This loop runs for every field of every
    record, so the four types are told apart by ``type(v) is`` and the rest go to ``other``.
    Names may repeat in ``out`` (an object flattened next to a field of the same name):
    ``unique_fields`` keeps the last value of each at its first place.
    """
    get, datetime = known.get, _dt.datetime

    def put(out: list[str], items: Iterable[tuple[str, Any]]) -> None:
        for k, v in items:
            ke = get(k)
            if ke is None:
                ke = learn(k)
            if not ke:
                continue
            t = type(v)
            if t is float:
                if v - v == 0.0:  # finite: inf - inf and nan - nan are nan
                    out.append(ke + repr(v))
                else:
                    counts.non_finite += 1
            elif t is str:
                if "\\" in v or '"' in v:
                    v = v.replace("\\", "\\\\").replace('"', '\\"')
                out.append(f'{ke}"{v}"')
            elif t is int:
                if not INT64_MIN <= v <= INT64_MAX:
                    raise RecordError(f"field {k!r}: integer {shown(v)} is outside int64")
                out.append(f"{ke}{v}i")
            elif t is bool:
                out.append(ke + ("true" if v else "false"))
            elif t is datetime:  # Avro's timestamp-millis and -micros, on every record that has one
                out.append(f"{ke}{datetime_ms(v)}i")
            elif t is Unsigned:  # only from a line-protocol value's ``u`` fields, range-checked when read
                out.append(f"{ke}{int(v)}u")
            elif v is not None:
                other(out, k, v)

    return put


def _key_end(text: str) -> int:
    """Where the escaped key of a ``key=value`` text ends: its first ``=`` after an even run of
    backslashes (an escaped ``=`` in a key follows an odd run)."""
    i = text.find("=")
    while i > 0:
        run = 0
        while run < i and text[i - 1 - run] == "\\":
            run += 1
        if run % 2 == 0:
            return i
        i = text.find("=", i + 1)
    return i


def unique_fields(out: list[str]) -> list[str]:
    """``out`` with one text per field key: a later value of a key replaces the earlier one at
    its place, as in a dict, so a line never holds a key twice."""
    by_key: dict[str, str] = {}
    for text in out:
        by_key[text[:_key_end(text)]] = text
    return list(by_key.values())


class _NoCounts:
    non_finite = 0


def _refuse(out: list[str], name: str, value: Any) -> None:
    raise RecordError(f"cannot encode a {type(value).__name__} field", FailureKind.ENCODE)




def field_value(value: Any) -> str:
    """A field value: ``1.5``, ``12i``, ``true`` or a quoted string (``\\`` and ``"`` escaped)."""
    out: list[str] = []
    _put_value(out, (("", value),))
    if not out:  # a null, or a float that is not finite
        _refuse(out, "", value)
    return out[0][1:]


# Characters a text field value is escaped for (``field_writer``'s ``str`` branch).
TEXT_ESCAPED = ("\\", '"')


def plain_value_code(kind: type, var: str) -> str:
    """The f-string fragment that writes ``var``, a value of ``kind`` (float, int, str or bool)
    that needs none of ``field_writer``'s checks — a finite float, an int within int64, text
    with none of ``TEXT_ESCAPED`` — exactly as ``field_writer`` writes it after the key: for
    code that writes fields of a known type straight (``handler.message_lines``). A bool's text
    comes from ``BOOL_TEXT``, which that code must bind; the unit tests hold the two writers
    to the same text."""
    if kind is float:
        return f"{{{var}!r}}"
    if kind is int:
        return f"{{{var}}}i"
    if kind is str:
        return f'"{{{var}}}"'
    if kind is bool:
        return f"{{BOOL_TEXT[{var}]}}"
    raise TypeError(f"no plain field text for {kind.__name__}")


BOOL_TEXT = ("false", "true")  # indexed by the bool


def field_key_eq(key: str) -> str:
    """``escaped_key=``, cached: what precedes a field's value on the line."""
    out = FIELD_KEY_EQ.get(key)
    if out is None:
        out = (_field_key_cache.get(key) or escape_field_key(key)) + "="
        if len(FIELD_KEY_EQ) >= _CACHE_LIMIT:
            FIELD_KEY_EQ.clear()
        FIELD_KEY_EQ[key] = out
    return out


# The field writers of points built in code: names are escaped as met, nothing is counted.
_put_value = field_writer({"": "="}, field_key_eq, _refuse, _NoCounts())
_put_fields = field_writer(FIELD_KEY_EQ, field_key_eq, _refuse, _NoCounts())


def tag_text(value: Any) -> str | None:
    """A tag value as text: None (tag left out) for missing, null or empty values. Anything but
    text, a bool, a number or a date is refused: a tag is one name, not a structure."""
    t = type(value)
    if t is str:
        return value or None
    if value is None or value is MISSING:
        return None
    if t is bool:
        return "true" if value else "false"
    if t is int or t is float or isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    raise RecordError(f"a {type(value).__name__} cannot be a tag value")


def tag_pair(key: str, value: str) -> str:
    """``,escaped_key=escaped_value``; RecordError naming the part that cannot be carried."""
    k = _tag_cache.get(key)
    if k is None:
        k = escape_key(key, "tag key")
    v = _tag_cache.get(value)
    if v is None:
        v = escape_key(value, f"tag {key!r} value")
    return f",{k}={v}"


def fields_text(fields: dict[str, Any]) -> str:
    """The field set of bool/int/float/str values: ``k=v`` pairs joined by commas, in order."""
    out: list[str] = []
    _put_fields(out, fields.items())
    return ",".join(out)


def encode(point: Point) -> str:
    """One line, without the trailing newline. Raises RecordError for what cannot be carried."""
    measurement, tags, fields, time_ns = point
    head = _meas_cache.get(measurement)
    if head is None:
        head = escape_measurement(measurement)
    if tags:
        head += "".join([tag_pair(k, v) for k, v in tags])
    return f"{head} {fields_text(fields)} {time_ns}"


# ---------------------------------------------------------------- timestamps


def datetime_ns(value: _dt.datetime) -> int:
    """An aware datetime → epoch nanoseconds, exactly (a timedelta // a timedelta is an int)."""
    if value.tzinfo is None:
        raise RecordError("timestamp has no time zone")
    return (value - _EPOCH) // _ONE_US * 1000


class Instant(_dt.datetime):
    """An aware UTC datetime that also holds its instant in epoch nanoseconds (``ns``): a
    Protobuf ``google.protobuf.Timestamp``. As a field it is epoch milliseconds like any datetime
    (floored: the same as flooring ``ns``); as ``WITHTIMESTAMP`` it is ``ns``, exactly."""

    __slots__ = ("ns",)
    ns: int


def instant(seconds: int, nanos: int) -> Instant:
    """The Instant of ``seconds`` + ``nanos`` after the epoch (years 1 to 9999)."""
    value = Instant.fromtimestamp(seconds, _dt.UTC).replace(microsecond=nanos // 1000)
    value.ns = seconds * 1_000_000_000 + nanos
    return value


def datetime_ms(value: _dt.datetime) -> int:
    """An aware datetime as a field stores it: epoch milliseconds, floored."""
    return datetime_ns(value) // 1_000_000


def parse_iso(text: str) -> int:
    """An ISO-8601 instant with a zone → epoch nanoseconds, keeping all nine fraction digits."""
    m = _ISO_RE.match(text.strip())
    if not m:
        raise RecordError(f"timestamp {shown(text)} is not an ISO-8601 instant with a zone (Z or +hh:mm)")
    date, clock, frac, zone = m.groups()
    if len(clock) == 5:
        clock += ":00"
    zone = "+00:00" if zone in ("Z", "z") else zone
    if len(zone) == 3:
        zone += ":00"
    elif ":" not in zone:
        zone = zone[:3] + ":" + zone[3:]
    try:
        whole = _dt.datetime.fromisoformat(f"{date}T{clock}{zone}")
    except ValueError as err:
        raise RecordError(f"timestamp {text!r}: {err}") from None
    return datetime_ns(whole) + (int((frac or "0").ljust(9, "0")) if frac else 0)


def timestamp_reader(what: str, factor: int, float_factor: int) -> Callable[[Any], int]:
    """How a statement reads its time: a record's time value → epoch nanoseconds InfluxDB can
    store, RecordError otherwise; the one reading of times.

    ``what`` is the path as written (for messages). Integers and digit strings count ``factor``
    nanoseconds (the TIMESTAMPUNIT, milliseconds by default); floats count ``float_factor``
    (epoch seconds by default), computed exactly from their shortest repr; text that is not
    digits is an ISO-8601 instant with a zone; datetimes need a zone; a date is its midnight UTC.
    """
    datetime = _dt.datetime

    def read(value: Any) -> int:
        t = type(value)
        if t is int:
            ns = value * factor
        elif t is datetime:
            ns = datetime_ns(value)
        elif t is float:
            if not math.isfinite(value):
                raise RecordError(f"timestamp '{what}' is {value}")
            # Exact decimal arithmetic on the shortest repr: 1.56937031387e9 s is 1569370313870 ms,
            # where float arithmetic would give 1569370313869999872 ns.
            ns = round(Decimal(repr(value)) * float_factor)
        elif t is str:
            if _DIGITS_RE.match(value):
                digits = value.lstrip("+-").lstrip("0")
                if len(digits) > _MAX_TIME_DIGITS:  # also: int() refuses more than 4300 digits
                    raise _time_outside(what, value)
                ns = int(digits or "0") * factor * (-1 if value[0] == "-" else 1)
            else:
                ns = parse_iso(value)
        elif value is MISSING or value is None:
            raise RecordError(f"timestamp '{what}' is {'missing' if value is MISSING else 'null'}")
        elif t is Instant:
            ns = value.ns
        elif isinstance(value, _dt.datetime):
            ns = datetime_ns(value)
        elif isinstance(value, _dt.date):
            ns = (value - _dt.date(1970, 1, 1)).days * 86_400 * 1_000_000_000
        elif isinstance(value, Decimal):
            if not value.is_finite() or value.adjusted() > _MAX_TIME_DIGITS:
                raise _time_outside(what, value)
            ns = round(value * factor)
        else:
            raise RecordError(f"timestamp '{what}' is a {type(value).__name__}, not a time")
        if not TIME_MIN_NS <= ns <= TIME_MAX_NS:
            raise _time_outside(what, value)
        return ns

    return read


def _time_outside(what: str, value: Any) -> RecordError:
    return RecordError(f"timestamp '{what}' = {shown(value)} is outside what InfluxDB can store "
                       "(1677-09-21 .. 2262-04-11)")


# ---------------------------------------------------------------- reading line protocol
#
# A value of a line-protocol topic is read line by line into ``ParsedLine`` values, which the
# mapping stage writes again through the functions above: nothing of the input text reaches
# the output unescaped, so a line can never carry more, or other, points than it reads as.
#
# What is read, as InfluxDB reads it (models/points.go of 1.x, the rules of its write API):
#
# - Lines end at a newline outside a string field value (a string may hold newlines); a
#   ``\r`` right before the newline, and spaces or tabs at the end, are part of the ending.
#   Blank lines and lines whose first character after leading spaces or tabs is ``#`` are
#   skipped.
# - The measurement runs to the first unescaped ``,`` or space; tag keys and values to an
#   unescaped ``=``, ``,`` or space: one preceded by a backslash is escaped. In the field section
#   a backslash escapes the character after it (``\\,`` is a backslash pair, then a separator).
#   Names then unescape ``\,`` ``\ `` ``\=`` (measurements and field keys also ``\"``); every
#   other backslash stays, as InfluxDB keeps it. An unescaped ``=`` in a tag value, an empty
#   name and a tag key given twice are errors, as for InfluxDB.
# - One space ends the tags; then (after any more spaces or tabs) the fields: ``key=value``
#   pairs separated by ``,``. A value is a string (``"..."``; ``\\`` and ``\"`` unescaped, any
#   other backslash kept), an integer (``-12i``, int64), an unsigned integer (``12u``, uint64),
#   a float (``-1.5``, ``1``, ``.5``, ``1e-3``, ``1.5E+10``; finite), or a boolean (``t T true
#   True TRUE f F false False FALSE``). Anything else (``NaN``, ``+1``, ``1.5i``) is an error.
#   A field key given twice keeps its last value, as InfluxDB stores it.
# - After the fields, optionally, a space (then any more spaces or tabs) and the time: an
#   integer count of nanoseconds (the precision Telegraf and InfluxDB's own clients write by
#   default), within what InfluxDB stores. A line without a time gets one from the mapping stage.
# - Accepted where InfluxDB 1.x refuses, as the meaning is plain: CRLF line endings and
#   trailing tabs. A comment ends at its newline, and leading whitespace is only skipped (1.x's
#   line cutter may run a comment, or a line led by a space, holding ``="`` on into the next line).

_LP_SKIP = re.compile(r"[ \t\x00]*")  # what InfluxDB skips before a line and between sections
# Before the fields a separator is escaped when the character before it is a backslash; in the
# field section a backslash escapes the character after it (so ``\\`` is a pair there).
_LP_MEASUREMENT = re.compile(r"(?:[^, \n]|(?<=\\)[, ])+")
_LP_TAG_NAME = re.compile(r"(?:[^,= \n]|(?<=\\)[,= ])+")  # tag key, tag value
_LP_FIELD_KEY = re.compile(r"(?:[^\\,= \n]|\\[^\n])+")
_LP_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)
_LP_TOKEN = re.compile(r"[^, \t\r\n]*")
_LP_INT = re.compile(r"-?\d+i")
_LP_UINT = re.compile(r"\d+u")
_LP_FLOAT = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_LP_TIME = re.compile(r"-?\d+")
_LP_END = re.compile(r"[ \t\x00]*\r?(?:\n|\Z)")
_LP_BOOLS = {"t": True, "T": True, "true": True, "True": True, "TRUE": True,
             "f": False, "F": False, "false": False, "False": False, "FALSE": False}
_LP_UNESCAPE_TAG = re.compile(r"\\([,= ])")
_LP_UNESCAPE_NAME = re.compile(r'\\([,= "])')
_LP_UNESCAPE_STRING = re.compile(r'\\([\\"])')
_LP_SHOWN = 60  # characters of a line quoted in an error


class ParsedLine(NamedTuple):
    """One point of a line-protocol value, as values: names unescaped, ``tags`` in the order
    written, ``fields`` of bool/int/float/str/``Unsigned`` values, ``time_ns`` None when the line
    has no time. ``number`` is the line's number in the value (from 1), for messages."""

    number: int
    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: dict[str, Any]
    time_ns: int | None


class _LineSyntax(ValueError):
    """Where and why a line does not parse; ``parse_lines`` turns it into the record's error."""

    def __init__(self, what: str, at: int) -> None:
        self.what = what
        self.at = at


def _unescape(pattern: re.Pattern[str], text: str) -> str:
    return pattern.sub(r"\1", text) if "\\" in text else text


def _lp_value(text: str, pos: int) -> tuple[Any, int]:
    """The field value at ``pos`` and where it ends."""
    if text.startswith('"', pos):
        m = _LP_STRING.match(text, pos)
        if m is None:
            raise _LineSyntax("a string field value has no closing '\"'", pos)
        return _unescape(_LP_UNESCAPE_STRING, m.group(1)), m.end()
    end = _LP_TOKEN.match(text, pos).end()  # type: ignore[union-attr]  # matches the empty text too
    token = text[pos:end]
    if not token:
        raise _LineSyntax("expected a field value", pos)
    first = token[0]
    if first.isdigit() or first in "-.":
        last = token[-1]
        if last == "i" and _LP_INT.fullmatch(token):
            n = int(token[:-1])
            if not INT64_MIN <= n <= INT64_MAX:
                raise _LineSyntax(f"integer {shown(token)} is outside int64", pos)
            return n, end
        if last == "u" and _LP_UINT.fullmatch(token):
            n = int(token[:-1])
            if n > UINT64_MAX:
                raise _LineSyntax(f"unsigned integer {shown(token)} is outside uint64", pos)
            return Unsigned(n), end
        if _LP_FLOAT.fullmatch(token):
            f = float(token)
            if f - f != 0.0:
                raise _LineSyntax(f"float {shown(token)} is outside float64", pos)
            return f, end
        raise _LineSyntax(f"{shown(token)} is not a number (integers end in 'i', unsigned ones in 'u')", pos)
    found = _LP_BOOLS.get(token)
    if found is None:
        raise _LineSyntax(f"{shown(token)} is not a field value (a number, a boolean or a \"string\")", pos)
    return found, end


def _lp_line(text: str, pos: int, number: int) -> tuple[ParsedLine, int]:
    """The line starting at ``pos`` (at its measurement) and the position after its ending."""
    m = _LP_MEASUREMENT.match(text, pos)
    if m is None:
        raise _LineSyntax("expected a measurement", pos)
    measurement = _unescape(_LP_UNESCAPE_NAME, m.group(0))
    pos = m.end()
    tags: list[tuple[str, str]] = []
    while text.startswith(",", pos):
        k = _LP_TAG_NAME.match(text, pos + 1)
        if k is None:
            raise _LineSyntax("expected a tag key after ','", pos + 1)
        if not text.startswith("=", k.end()):
            raise _LineSyntax(f"expected '=' after the tag key {shown(k.group(0))}", k.end())
        v = _LP_TAG_NAME.match(text, k.end() + 1)
        if v is None:
            raise _LineSyntax(f"expected a value for the tag {shown(k.group(0))}", k.end() + 1)
        pos = v.end()
        if text.startswith("=", pos):
            raise _LineSyntax(f"tag {shown(k.group(0))}: an unescaped '=' in its value", pos)
        key = _unescape(_LP_UNESCAPE_TAG, k.group(0))
        if any(key == seen for seen, _ in tags):
            raise _LineSyntax(f"tag key {shown(key)} appears twice", k.start())
        tags.append((key, _unescape(_LP_UNESCAPE_TAG, v.group(0))))
    if not text.startswith(" ", pos):
        raise _LineSyntax("expected a space and the fields", pos)
    pos = _LP_SKIP.match(text, pos + 1).end()  # type: ignore[union-attr]
    fields: dict[str, Any] = {}
    while True:
        k = _LP_FIELD_KEY.match(text, pos)
        if k is None:
            raise _LineSyntax("expected a field key", pos)
        if not text.startswith("=", k.end()):
            raise _LineSyntax(f"expected '=' after the field key {shown(k.group(0))}", k.end())
        value, pos = _lp_value(text, k.end() + 1)
        fields[_unescape(_LP_UNESCAPE_NAME, k.group(0))] = value
        if not text.startswith(",", pos):
            break
        pos += 1
    time_ns: int | None = None
    end = _LP_END.match(text, pos)
    if end is None:
        if not text.startswith(" ", pos):  # a tab here would be part of the value for InfluxDB
            raise _LineSyntax("expected ',', a space and the time, or the end of the line", pos)
        at = _LP_SKIP.match(text, pos).end()  # type: ignore[union-attr]
        t = _LP_TIME.match(text, at)
        end = _LP_END.match(text, t.end()) if t is not None else None
        if t is None or end is None:
            raise _LineSyntax("the time is not an integer (nanoseconds)", at)
        time_ns = int(t.group(0))
        if not TIME_MIN_NS <= time_ns <= TIME_MAX_NS:
            raise _LineSyntax(f"time {shown(t.group(0))} is outside what InfluxDB stores "
                              "(1677-09-21 .. 2262-04-11, in nanoseconds)", at)
    return ParsedLine(number, measurement, tuple(tags), fields, time_ns), end.end()


_LP_NOT_SIMPLE = re.compile(r'[\\"\t\r\x00]')


def _lp_simple(line: str, number: int) -> ParsedLine | None:
    """A line without backslashes, quotes, tabs, NULs or carriage returns (most lines Telegraf
    writes), read by splitting it at its separators: the ``ParsedLine`` that ``_lp_line`` reads,
    several times faster; None for anything else and for any problem, which ``_lp_line`` then
    reads and names."""
    parts = line.split(" ")
    n = len(parts)
    if n == 2:
        head, body = parts
        time_text = None
    elif n == 3:
        head, body, time_text = parts
    else:
        return None
    names = head.split(",")
    measurement = names[0]
    if not measurement:
        return None
    tags: list[tuple[str, str]] = []
    for pair in names[1:]:
        kv = pair.split("=")
        if len(kv) != 2 or not kv[0] or not kv[1]:
            return None
        tags.append((kv[0], kv[1]))
    if len(tags) > 1 and len({k for k, _ in tags}) != len(tags):
        return None
    fields: dict[str, Any] = {}
    for pair in body.split(","):
        kv = pair.split("=")
        if len(kv) != 2 or not kv[0] or not kv[1]:
            return None
        key, token = kv
        found = _LP_BOOLS.get(token)
        if found is not None:
            fields[key] = found
            continue
        last = token[-1]
        if last == "i":
            if not _LP_INT.fullmatch(token) or not INT64_MIN <= (v := int(token[:-1])) <= INT64_MAX:
                return None
            fields[key] = v
        elif last == "u":
            if not _LP_UINT.fullmatch(token) or (v := int(token[:-1])) > UINT64_MAX:
                return None
            fields[key] = Unsigned(v)
        elif _LP_FLOAT.fullmatch(token):
            f = float(token)
            if f - f != 0.0:
                return None
            fields[key] = f
        else:
            return None
    time_ns: int | None = None
    if time_text is not None:
        if not _LP_TIME.fullmatch(time_text):
            return None
        time_ns = int(time_text)
        if not TIME_MIN_NS <= time_ns <= TIME_MAX_NS:
            return None
    return ParsedLine(number, measurement, tuple(tags), fields, time_ns)


def _lp_error(text: str, start: int, number: int, problem: _LineSyntax) -> RecordError:
    stop = text.find("\n", start)
    line = text[start:stop if stop >= 0 else len(text)].rstrip("\r")
    column = problem.at - start + 1
    quoted = line if len(line) <= _LP_SHOWN else line[:_LP_SHOWN - 3] + "..."
    return RecordError(f"line {number} is not valid line protocol: {problem.what} (column {column}): {quoted!r}",
                       FailureKind.DECODE)


def parse_lines(text: str) -> list[ParsedLine]:
    """Every point of a line-protocol text, in order (blank and comment lines skipped);
    RecordError (decode) naming the first line that does not parse, by number and text."""
    out: list[ParsedLine] = []
    pos, number, n = 0, 1, len(text)
    skip, blank, find, not_simple = _LP_SKIP.match, _LP_END.match, text.find, _LP_NOT_SIMPLE.search
    while pos < n:
        start = pos
        pos = skip(text, pos).end()  # type: ignore[union-attr]
        if text.startswith("#", pos) or blank(text, pos):
            stop = find("\n", pos)
            pos = n if stop < 0 else stop + 1
            number += 1
            continue
        stop = find("\n", pos)
        if stop < 0:
            stop = n
        if not_simple(text, pos, stop) is None:
            simple = _lp_simple(text[pos:stop], number)
            if simple is not None:
                out.append(simple)
                pos = stop + 1
                number += 1
                continue
        try:
            line, pos = _lp_line(text, pos, number)
        except _LineSyntax as problem:
            raise _lp_error(text, start, number, problem) from None
        out.append(line)
        number += text.count("\n", start, pos)
    return out


_SERIES_END = re.compile(r"(?:[^\\ ]|\\.)*")


def series_and_time(line: str) -> tuple[str, str]:
    """What identifies the point of a line this module wrote: its measurement and tags as
    written (tags come sorted), and its time. Two lines with equal pairs are one point in InfluxDB."""
    return line[:_SERIES_END.match(line).end()], line[line.rindex(" ") + 1:]  # type: ignore[union-attr]
