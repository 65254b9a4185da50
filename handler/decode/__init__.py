"""Decode stage: record bytes → Python values (dict / list / str / int / float / bool / None).

``Decoder.value(record)`` and ``Decoder.key(record)`` pick the payload kind by content (or by
the forced kind in settings). Plain JSON is handled here; Connect envelopes and Avro live in
their own modules and are imported only when a payload needs them (cold start).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from handler.errors import RecordError
from handler.records import KafkaRecord

if TYPE_CHECKING:
    from handler.settings import Settings

_json_loads = json.loads


class Decoder:
    """Stateless apart from caches that its payload kinds keep (schemas)."""

    def __init__(self, value_kind: str = "auto", key_kind: str = "auto") -> None:
        self.value_kind = value_kind
        self.key_kind = key_kind

    @classmethod
    def from_settings(cls, settings: Settings) -> Decoder:
        """The decoder the settings ask for (payload kinds, registries, unframed schemas)."""
        return cls(settings.value_format, settings.key_format)

    def value(self, record: KafkaRecord) -> Any:
        """The decoded value, or None for a tombstone."""
        data = record.value_bytes()
        if data is None:
            return None
        return self.decode(data, self.value_kind, "value")

    def key(self, record: KafkaRecord) -> Any:
        """The decoded key; a key that is not JSON is its UTF-8 text (a plain string key)."""
        data = record.key_bytes()
        if data is None:
            return None
        if self.key_kind == "auto" and data[:1] not in (b"\x00", b"\x03"):
            try:
                return self._json(data, "key")
            except RecordError:
                try:
                    return data.decode("utf-8")
                except UnicodeDecodeError:
                    raise RecordError("key is neither JSON nor UTF-8 text", "decode") from None
        return self.decode(data, self.key_kind, "key")

    def decode(self, data: bytes, kind: str, what: str) -> Any:
        if kind == "auto":
            first = data[:1]
            if first == b"\x00" or first == b"\x03":
                raise RecordError(f"{what} is framed Avro (magic byte {first[0]}) but Avro decoding "
                                  "is not configured", "decode")
            return self._json(data, what)
        if kind == "json":
            return self._json(data, what)
        if kind == "string":
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                raise RecordError(f"{what} is not UTF-8 text", "decode") from None
        raise RecordError(f"unknown payload kind {kind!r} for {what}", "config")

    @staticmethod
    def _json(data: bytes, what: str) -> Any:
        try:
            doc = _json_loads(data)
        except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise RecordError(f"{what} is not valid JSON: {err}", "decode") from None
        if type(doc) is dict and len(doc) == 2 and "schema" in doc and "payload" in doc:
            from handler.decode.connect import from_envelope

            return from_envelope(doc, what)
        return doc
