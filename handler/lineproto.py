"""Encode stage: Point → one line of InfluxDB line protocol.

Hand-written rather than influxdb-client's ``Point``: it is about 8x faster on a 10,000-record
batch (bench/RESULTS.md), and it enforces what the library does not: no name or tag value from a
record may end a line early (line-protocol injection) or be silently changed by the server.

Rules (checked against InfluxDB 1.6.7, see README "Line protocol"):
- measurement: escape ``,`` and space; tag keys, tag values, field keys: also ``=``;
- string fields: escape ``"`` and ``\\``; newlines are fine inside quotes;
- control characters (newline, CR, NUL, ...) in names or tag values cannot be carried:
  the record is rejected; so is a name or tag value ending in a backslash (it would escape the
  separator) and a measurement starting with ``#`` (the line would be a comment).
"""

from __future__ import annotations

import re
from typing import Any

from handler.errors import RecordError
from handler.mapping import Point

_BAD_NAME = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]|\\$")
_MEAS_ESC = str.maketrans({",": "\\,", " ": "\\ "})
_KEY_ESC = str.maketrans({",": "\\,", " ": "\\ ", "=": "\\="})
_NEEDS_KEY_ESC = re.compile(r"[ ,=]")
_NEEDS_MEAS_ESC = re.compile(r"[ ,]")

_CACHE_LIMIT = 50_000
_key_cache: dict[str, str] = {}
_meas_cache: dict[str, str] = {}


def _check(text: str, what: str) -> None:
    if not text:
        raise RecordError(f"{what} is empty", "encode")
    bad = _BAD_NAME.search(text)
    if bad:
        if bad.group(0) == "\\":
            raise RecordError(f"{what} {text!r} ends with a backslash, which line protocol cannot carry",
                              "encode")
        raise RecordError(f"{what} {text!r} contains the control character {bad.group(0)!r}, which "
                          "line protocol cannot carry", "encode")


def escape_key(text: str, what: str = "name") -> str:
    """Escape a tag key, tag value or field key (cached: the same keys recur on every record)."""
    out = _key_cache.get(text)
    if out is None:
        _check(text, what)
        out = text.translate(_KEY_ESC) if _NEEDS_KEY_ESC.search(text) else text
        if len(_key_cache) >= _CACHE_LIMIT:
            _key_cache.clear()
        _key_cache[text] = out
    return out


def escape_measurement(text: str) -> str:
    out = _meas_cache.get(text)
    if out is None:
        _check(text, "measurement")
        if text.startswith("#"):
            raise RecordError(f"measurement {text!r} starts with '#': the line would be a comment", "encode")
        out = text.translate(_MEAS_ESC) if _NEEDS_MEAS_ESC.search(text) else text
        if len(_meas_cache) >= _CACHE_LIMIT:
            _meas_cache.clear()
        _meas_cache[text] = out
    return out


def field_value(value: Any) -> str:
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


def encode(point: Point) -> str:
    """One line, without the trailing newline. Raises RecordError for what cannot be carried."""
    measurement, tags, fields, time_ns = point
    ek = escape_key
    head = escape_measurement(measurement)
    if tags:
        head += "".join([f",{ek(k, 'tag key')}={ek(v, 'tag value')}" for k, v in tags])
    body = ",".join([f"{ek(k, 'field key')}={field_value(v)}" for k, v in fields.items()])
    return f"{head} {body} {time_ns}"
