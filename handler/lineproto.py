"""Line protocol: the one place where names are escaped and values, tags and times are written.

The mapping stage (``handler.mapping``) decides *which* values a record's line holds; this
module decides how each one is written and what InfluxDB can store: field values (``field_writer``),
tag values (``tag_text``, ``tag_pair``), names (``escape_*``) and times (``timestamp_reader``).

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
