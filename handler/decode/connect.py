"""Kafka Connect JsonConverter envelopes ``{"schema": ..., "payload": ...}``: the declared types win.

A field declared ``double`` and written as ``1`` becomes the float ``1.0`` (InfluxDB fixes a
field's type per shard, so ``1i`` then ``1.5`` would be rejected); ``int8``..``int64`` are
integers within their range; the logical types become what InfluxDB can store: ``Decimal`` →
float, ``Timestamp`` → epoch ms, ``Date`` (days) → epoch ms, ``Time`` → ms after midnight. A
top-level ``string`` schema whose payload is JSON text (a producer that serialised its JSON
document as a string) is parsed again. Nested ``string`` fields stay strings: their declared
type wins.
"""

from __future__ import annotations

import json
import re
import sys
from decimal import Decimal, InvalidOperation
from typing import Any

from handler.errors import FailureKind, RecordError
from handler.records import base64_bytes

_INTS = frozenset({"int8", "int16", "int32", "int64"})
_DECIMAL = "org.apache.kafka.connect.data.Decimal"
_DATE = "org.apache.kafka.connect.data.Date"
_TIME_MS = frozenset({"org.apache.kafka.connect.data.Timestamp", "org.apache.kafka.connect.data.Time"})
_DAY_MS = 86_400_000
_INT_RANGE = {"int8": 2**7, "int16": 2**15, "int32": 2**31, "int64": 2**63}  # -n .. n-1
_SCALE_LIMIT = 10_000  # a Decimal scale beyond this cannot give a float other than 0 or inf
_SCALE_RE = re.compile(r"[+-]?[0-9]{1,6}")


class _Mismatch(ValueError):
    """A payload value that does not fit its declared type."""


def from_envelope(doc: dict[str, Any], what: str) -> Any:
    """The payload converted by its schema; a ``null`` schema (schemaless record) → the payload.

    Any envelope, however malformed (a ``fields`` that is not a list, a type that is not a name,
    a number beyond what its type holds, nesting past the recursion limit), gives the payload or
    a RecordError, never another exception."""
    schema, payload = doc["schema"], doc["payload"]
    if schema is None:
        return payload
    if not isinstance(schema, dict):
        return doc  # not an envelope after all: an ordinary document with those two fields
    try:
        if schema.get("type") == "string" and isinstance(payload, str) and payload.lstrip()[:1] in ("{", "["):
            try:
                return json.loads(payload)
            except ValueError:
                return payload
        return _convert(schema, payload, "")
    except _Mismatch as err:
        raise RecordError(f"{what} does not match its Connect schema: {err}", FailureKind.DECODE) from None
    except RecursionError:
        raise RecordError(f"{what} is a Connect envelope nested too deeply (about {sys.getrecursionlimit()} "
                          "levels or more) to be decoded", FailureKind.DECODE) from None


def _at(path: str) -> str:
    return f" at '{path}'" if path else ""


def _shown(value: Any) -> str:
    """A payload value for a message: short, and never a repr of a deep or huge structure."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"{str(value)[:20]}... ({len(str(value))} digits)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _convert(schema: Any, value: Any, path: str) -> Any:
    if not isinstance(schema, dict):
        raise _Mismatch(f"the schema{_at(path)} is not an object: {schema!r}")
    if value is None:
        default = schema.get("default")
        return None if default is None else _convert({**schema, "default": None}, default, path)
    kind = schema.get("type")
    name = schema.get("name")
    if kind is not None and not isinstance(kind, str):
        raise _Mismatch(f"the schema{_at(path)} has a type that is not a name: {_shown(kind)}")
    if kind == "struct":
        if type(value) is not dict:
            raise _Mismatch(f"struct{_at(path)} is a {type(value).__name__}")
        fields = schema.get("fields")
        if fields is None:
            fields = []
        if type(fields) is not list:
            raise _Mismatch(f"the struct schema{_at(path)} has 'fields' that are not a list: {_shown(fields)}")
        out = {}
        for f in fields:
            fname = f.get("field") if isinstance(f, dict) else None
            if not isinstance(fname, str):
                raise _Mismatch(f"a field of the struct{_at(path)} has no name: {_shown(f)}")
            out[fname] = _convert(f, value.get(fname), f"{path}.{fname}" if path else fname)
        return out
    if kind in ("float", "double", "float32", "float64"):
        if type(value) is bool or not isinstance(value, int | float):
            raise _Mismatch(f"{_shown(value)}{_at(path)} is not a {kind}")
        try:
            return float(value)
        except OverflowError:  # an integer written in JSON beyond a double's range (about 1.8e308)
            raise _Mismatch(f"{_shown(value)}{_at(path)} is beyond the range of a {kind}") from None
    if kind in _INTS:
        if type(value) is bool or not isinstance(value, int | float) or (
                isinstance(value, float) and not value.is_integer()):
            raise _Mismatch(f"{_shown(value)}{_at(path)} is not an {kind}")
        number = int(value)
        bound = _INT_RANGE[kind]
        if not -bound <= number < bound:
            raise _Mismatch(f"{_shown(value)}{_at(path)} is beyond the range of an {kind}")
        if name == _DATE:
            return number * _DAY_MS
        return number  # plain integers, Timestamp (epoch ms) and Time (ms after midnight) alike
    if kind == "boolean":
        if type(value) is not bool:
            raise _Mismatch(f"{_shown(value)}{_at(path)} is not a boolean")
        return value
    if kind == "string":
        if type(value) is not str:
            raise _Mismatch(f"{_shown(value)}{_at(path)} is not a string")
        return value
    if kind == "bytes":
        if name == _DECIMAL:
            return _decimal(schema, value, path)
        if type(value) is not str:
            raise _Mismatch(f"bytes{_at(path)} are not base64 text")
        return _b64(value, path)  # kept as bytes: an error only if a statement writes them
    if kind == "array":
        if type(value) is not list:
            raise _Mismatch(f"array{_at(path)} is a {type(value).__name__}")
        item = schema.get("items") or {}
        return [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if kind == "map":
        vs = schema.get("values") or {}
        if type(value) is list:  # maps with non-string keys are written as [[k, v], ...]
            out = {}
            for pair in value:
                if type(pair) is not list or len(pair) != 2:
                    raise _Mismatch(f"map{_at(path)} is neither an object nor a list of [key, value] pairs")
                k = _map_key(pair[0], path)
                out[k] = _convert(vs, pair[1], f"{path}.{k}")
            return out
        if type(value) is not dict:
            raise _Mismatch(f"map{_at(path)} is a {type(value).__name__}")
        return {str(k): _convert(vs, v, f"{path}.{k}") for k, v in value.items()}
    return value  # unknown or missing type: the payload as written


def _map_key(key: Any, path: str) -> str:
    """A key of a map written as pairs, as the name it gives: text as it is, numbers and booleans
    as JSON writes them. Anything else would become a made-up name (a Python repr): an error."""
    if type(key) is str:
        return key
    if type(key) is bool:
        return "true" if key else "false"
    if type(key) is int or type(key) is float:
        return repr(key)
    raise _Mismatch(f"a key of the map{_at(path)} is {_shown(key)}; only text, numbers and booleans can name "
                    "a field")


def _b64(text: str, path: str) -> bytes:
    try:
        return base64_bytes(text, "bytes")
    except RecordError:
        raise _Mismatch(f"bytes{_at(path)} are not valid base64") from None


def _decimal(schema: dict[str, Any], value: Any, path: str) -> float:
    """Decimal as base64 unscaled big-endian bytes (``decimal.format=BASE64``) or a number (NUMERIC)."""
    if type(value) is not bool and isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:
            raise _Mismatch(f"Decimal {_shown(value)}{_at(path)} is beyond the range of a float") from None
    if type(value) is not str:
        raise _Mismatch(f"Decimal{_at(path)} is neither base64 text nor a number")
    params = schema.get("parameters")
    raw_scale = params.get("scale", 0) if isinstance(params, dict) else (0 if params is None else None)
    if type(raw_scale) is str and _SCALE_RE.fullmatch(raw_scale):  # Connect writes parameters as text
        raw_scale = int(raw_scale)
    if type(raw_scale) is not int or not -_SCALE_LIMIT <= raw_scale <= _SCALE_LIMIT:
        raise _Mismatch(f"Decimal{_at(path)} has a scale that is not a whole number from -{_SCALE_LIMIT} to "
                        f"{_SCALE_LIMIT}")
    raw = _b64(value, path)
    try:
        return float(Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-raw_scale))
    except (InvalidOperation, OverflowError, ValueError):
        raise _Mismatch(f"Decimal{_at(path)} cannot be represented") from None
