"""Encode stage: Point → one line of InfluxDB line protocol.

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

Rejected (``RecordError(..., "encode")``), because they cannot be carried:

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

import re
from typing import Any, NamedTuple

from handler.errors import RecordError


class Point(NamedTuple):
    """One InfluxDB point. ``tags`` is sorted by key; field values are bool/int/float/str.

    Also importable from ``handler.mapping`` (``Plan.points`` builds them); defined here so
    that the mapping stage can use this module's escaping without an import cycle.
    """

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
FIELD_KEY_EQ: dict[str, str] = {}  # field key → its escaped text followed by "=" (the fused path's look-up)


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
    return RecordError(f"{what} {shown!r} cannot be written: it {reason}", "encode")


def _escape(text: str, what: str, bad: re.Pattern[str], needs: re.Pattern[str], table: dict[int, str],
            cache: dict[str, str]) -> str:
    if not text:
        raise RecordError(f"{what} is empty", "encode")
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


def field_value(value: Any) -> str:
    """A field value: ``1.5``, ``12i``, ``true`` or a quoted string (``\\`` and ``"`` escaped)."""
    t = type(value)
    if t is float:
        return repr(value)
    if t is int:
        return f"{value}i"
    if t is str:
        if "\\" in value or '"' in value:
            value = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{value}"'
    if t is bool:
        return "true" if value else "false"
    raise RecordError(f"cannot encode a {t.__name__} field", "encode")  # mapping never yields one


def field_key_eq(key: str) -> str:
    """``escaped_key=``, cached: what precedes a field's value on the line."""
    out = FIELD_KEY_EQ.get(key)
    if out is None:
        out = (_field_key_cache.get(key) or escape_field_key(key)) + "="
        if len(FIELD_KEY_EQ) >= _CACHE_LIMIT:
            FIELD_KEY_EQ.clear()
        FIELD_KEY_EQ[key] = out
    return out


def tag_pair(key: str, value: str) -> str:
    """``,escaped_key=escaped_value``; RecordError naming the part that cannot be carried."""
    k = _tag_cache.get(key)
    if k is None:
        k = escape_key(key, "tag key")
    v = _tag_cache.get(value)
    if v is None:
        v = escape_key(value, f"tag {key!r} value")
    return f",{k}={v}"


_tag_pair = tag_pair


def fields_text(fields: dict[str, Any]) -> str:
    """The field set: ``k=v`` pairs joined by commas, in the dict's order."""
    keq = FIELD_KEY_EQ
    return ",".join([f"{keq.get(k) or field_key_eq(k)}{field_value(v)}" for k, v in fields.items()])


def encode(point: Point) -> str:
    """One line, without the trailing newline. Raises RecordError for what cannot be carried.

    The reference encoder: ``Plan.lines`` (the delivery stage's fused path) must give the same
    text, and falls back to this one to name the exact problem of a record that fails.
    """
    measurement, tags, fields, time_ns = point
    head = _meas_cache.get(measurement)
    if head is None:
        head = escape_measurement(measurement)
    if tags:
        head += "".join([_tag_pair(k, v) for k, v in tags])
    return f"{head} {fields_text(fields)} {time_ns}"
