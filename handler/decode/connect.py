"""Kafka Connect JsonConverter envelopes ``{"schema": ..., "payload": ...}``: declared types win."""

from __future__ import annotations

from typing import Any

from handler.errors import RecordError

_INTS = {"int8", "int16", "int32", "int64"}


def from_envelope(doc: dict[str, Any], what: str) -> Any:
    schema, payload = doc["schema"], doc["payload"]
    if not isinstance(schema, dict):
        return doc  # not an envelope after all: an ordinary document with those two fields
    try:
        return _convert(schema, payload)
    except (TypeError, ValueError, KeyError) as err:
        raise RecordError(f"{what} does not match its Connect schema: {err}", "decode") from None


def _convert(schema: dict[str, Any], value: Any) -> Any:
    if value is None:
        return None
    kind = schema.get("type")
    name = schema.get("name")
    if kind == "struct":
        fields = schema.get("fields") or []
        return {f["field"]: _convert(f, value.get(f["field"])) for f in fields}
    if kind in ("float", "double"):
        return float(value)
    if kind in _INTS:
        if name in ("org.apache.kafka.connect.data.Timestamp", "org.apache.kafka.connect.data.Time"):
            return int(value)
        if name == "org.apache.kafka.connect.data.Date":
            return int(value) * 86_400_000
        if type(value) is bool or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{value!r} is not an {kind}")
        return int(value)
    if kind == "boolean":
        if type(value) is not bool:
            raise ValueError(f"{value!r} is not a boolean")
        return value
    if kind == "string":
        if isinstance(value, str) and value[:1] in ("{", "["):
            import json

            try:
                return json.loads(value)  # the seed's "Schema.String and payload json String"
            except ValueError:
                return value
        return value
    if kind == "bytes":
        if name == "org.apache.kafka.connect.data.Decimal":
            import base64
            from decimal import Decimal

            scale = int((schema.get("parameters") or {}).get("scale", 0))
            raw = base64.b64decode(value) if isinstance(value, str) else bytes(value)
            return float(Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-scale))
        raise RecordError("bytes fields cannot be written to InfluxDB", "mapping")
    if kind == "array":
        item = schema.get("items") or {}
        return [_convert(item, v) for v in value]
    if kind == "map":
        vs = schema.get("values") or {}
        if isinstance(value, list):  # maps with non-string keys are written as [[k, v], ...]
            return {str(k): _convert(vs, v) for k, v in value}
        return {str(k): _convert(vs, v) for k, v in value.items()}
    return value
