"""Kafka Connect JsonConverter envelopes ``{"schema": ..., "payload": ...}``: the declared types win.

A field declared ``double`` and written as ``1`` becomes the float ``1.0`` (InfluxDB fixes a
field's type per shard, so ``1i`` then ``1.5`` would be rejected); ``int8``..``int64`` are
integers; the logical types become what section 4 of the contract says: ``Decimal`` → float,
``Timestamp`` → epoch ms, ``Date`` (days) → epoch ms, ``Time`` → ms after midnight. A top-level
``string`` schema whose payload is JSON text is parsed again: the seed's "Schema.String and
payload json String". Nested ``string`` fields stay strings: their declared type wins.
"""

from __future__ import annotations

import base64
import binascii
import json
from decimal import Decimal, InvalidOperation
from typing import Any

from handler.errors import RecordError

_INTS = frozenset({"int8", "int16", "int32", "int64"})
_DECIMAL = "org.apache.kafka.connect.data.Decimal"
_DATE = "org.apache.kafka.connect.data.Date"
_TIME_MS = frozenset({"org.apache.kafka.connect.data.Timestamp", "org.apache.kafka.connect.data.Time"})
_DAY_MS = 86_400_000


class _Mismatch(ValueError):
    """A payload value that does not fit its declared type."""


def is_envelope(doc: Any) -> bool:
    """What JsonConverter with ``schemas.enable=true`` writes: exactly ``schema`` and ``payload``."""
    return type(doc) is dict and len(doc) == 2 and "schema" in doc and "payload" in doc


def from_envelope(doc: dict[str, Any], what: str) -> Any:
    """The payload converted by its schema; a ``null`` schema (schemaless record) → the payload."""
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
        raise RecordError(f"{what} does not match its Connect schema: {err}", "decode") from None


def _at(path: str) -> str:
    return f" at '{path}'" if path else ""


def _convert(schema: Any, value: Any, path: str) -> Any:
    if not isinstance(schema, dict):
        raise _Mismatch(f"the schema{_at(path)} is not an object: {schema!r}")
    if value is None:
        default = schema.get("default")
        return None if default is None else _convert({**schema, "default": None}, default, path)
    kind = schema.get("type")
    name = schema.get("name")
    if kind == "struct":
        if type(value) is not dict:
            raise _Mismatch(f"struct{_at(path)} is a {type(value).__name__}")
        out = {}
        for f in schema.get("fields") or ():
            fname = f.get("field") if isinstance(f, dict) else None
            if not isinstance(fname, str):
                raise _Mismatch(f"a field of the struct{_at(path)} has no name: {f!r}")
            out[fname] = _convert(f, value.get(fname), f"{path}.{fname}" if path else fname)
        return out
    if kind in ("float", "double", "float32", "float64"):
        if type(value) is bool or not isinstance(value, int | float):
            raise _Mismatch(f"{value!r}{_at(path)} is not a {kind}")
        return float(value)
    if kind in _INTS:
        if type(value) is bool or not isinstance(value, int | float) or (
                isinstance(value, float) and not value.is_integer()):
            raise _Mismatch(f"{value!r}{_at(path)} is not an {kind}")
        if name == _DATE:
            return int(value) * _DAY_MS
        return int(value)  # plain integers, Timestamp (epoch ms) and Time (ms after midnight) alike
    if kind == "boolean":
        if type(value) is not bool:
            raise _Mismatch(f"{value!r}{_at(path)} is not a boolean")
        return value
    if kind == "string":
        if type(value) is not str:
            raise _Mismatch(f"{value!r}{_at(path)} is not a string")
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
            try:
                return {str(k): _convert(vs, v, f"{path}.{k}") for k, v in value}
            except (TypeError, ValueError):
                raise _Mismatch(f"map{_at(path)} is neither an object nor a list of [key, value] pairs") from None
        if type(value) is not dict:
            raise _Mismatch(f"map{_at(path)} is a {type(value).__name__}")
        return {str(k): _convert(vs, v, f"{path}.{k}") for k, v in value.items()}
    return value  # unknown or missing type: the payload as written


def _b64(text: str, path: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _Mismatch(f"bytes{_at(path)} are not valid base64") from None


def _decimal(schema: dict[str, Any], value: Any, path: str) -> float:
    """Decimal as base64 unscaled big-endian bytes (``decimal.format=BASE64``) or a number (NUMERIC)."""
    if type(value) is not bool and isinstance(value, int | float):
        return float(value)
    if type(value) is not str:
        raise _Mismatch(f"Decimal{_at(path)} is neither base64 text nor a number")
    try:
        scale = int((schema.get("parameters") or {}).get("scale", 0))
    except (TypeError, ValueError):
        raise _Mismatch(f"Decimal{_at(path)} has a scale that is not a number") from None
    raw = _b64(value, path)
    try:
        return float(Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-scale))
    except InvalidOperation:
        raise _Mismatch(f"Decimal{_at(path)} cannot be represented") from None
