"""Avro payloads: Confluent framing, AWS Glue framing, and unframed Avro with a schema from settings.

Bodies are read with fastavro's ``schemaless_reader``. Writer schemas are rewritten once, before
parsing, so that logical types whose raw Avro value already *is* what InfluxDB gets skip
fastavro's conversion (measured: a ``timestamp-millis`` field costs ~1.2 µs more per record
converted to ``datetime`` and back to epoch ms by the mapping stage, than read as the raw long):

- ``timestamp-millis``, ``local-timestamp-millis`` → the raw long: epoch milliseconds;
- ``time-millis`` → the raw int: milliseconds after midnight;
- ``uuid`` → the raw string;
- ``local-timestamp-micros`` → read as ``timestamp-micros`` (a zone-less time is taken as UTC).

The rest keep fastavro's conversion and the mapping stage turns them into what InfluxDB can
store: ``date`` → ``datetime.date``, ``time-micros`` → ``datetime.time``,
``timestamp-micros`` → aware ``datetime`` (as a field: epoch ms; as ``WITHTIMESTAMP``: the exact
microsecond instant), ``decimal`` → ``Decimal`` (a float). ``bytes``/``fixed`` stay bytes and
fail the record only if a statement writes them.
"""

from __future__ import annotations

import io
import json
from typing import Any

from fastavro import parse_schema, schemaless_reader
from fastavro.schema import SchemaParseException

from handler.errors import FailureKind, RecordError

# Everything fastavro raises on bytes that are not a record of the schema (measured with fuzzed
# payloads: EOFError for truncation, IndexError for bad union/enum indexes, UnicodeDecodeError
# (a ValueError) for bad strings; ValueError / OverflowError for unrepresentable dates).
# RecursionError: a recursive schema (a linked list of records) with a body nested past the limit.
_READ_ERRORS = (EOFError, IndexError, ValueError, ArithmeticError, KeyError, TypeError, RecursionError)

_RAW_LOGICAL = {("long", "timestamp-millis"), ("long", "local-timestamp-millis"),
                ("int", "time-millis"), ("string", "uuid")}
_RENAMED_LOGICAL: dict[tuple[Any, Any], str] = {("long", "local-timestamp-micros"): "timestamp-micros"}


class SchemaProblem(ValueError):
    """A schema text that cannot be used (not JSON, not valid Avro, unsupported format)."""


class Schema:
    """A writer schema ready to read bodies with; parsed once and kept for the process.

    A recursive schema (a record that can hold itself, e.g. a linked list or a tree) is read
    with fastavro's pure-Python reader: its compiled reader recurses in C with no limit, so a
    body nested a few thousand levels deep crashes the process (segmentation fault) instead of
    failing the record. The Python reader raises RecursionError, which fails only that record.
    """

    __slots__ = ("label", "parsed", "reader", "text_format")

    def __init__(self, parsed: Any, label: str, text_format: str = "AVRO") -> None:
        self.parsed = parsed
        self.label = label  # "schema id 7", "Glue schema version <uuid>", "connect.influx.value.avro.schema"
        self.text_format = text_format  # AVRO, or JSON for registry schemas of JSON payloads
        self.reader: Any = schemaless_reader
        if parsed is not None and is_recursive(parsed):
            from fastavro._read_py import schemaless_reader as python_reader

            self.reader = python_reader

    def read(self, body: bytes | memoryview, what: str) -> Any:
        """Decode one body; any mismatch is a RecordError for the record."""
        if self.text_format == "JSON":
            try:
                return json.loads(bytes(body))
            except ValueError as err:
                raise RecordError(f"{what} is not valid JSON for {self.label}: {err}", FailureKind.DECODE) from None
            except RecursionError:
                raise RecordError(f"{what} is JSON nested too deeply for {self.label}", FailureKind.DECODE) from None
        fo = io.BytesIO(body)
        try:
            value = self.reader(fo, self.parsed, None)
        except _READ_ERRORS as err:
            detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            if isinstance(err, EOFError):
                detail = f"truncated ({detail})"
            elif isinstance(err, RecursionError):
                detail = "nested too deeply"
            raise RecordError(f"{what} is not valid Avro for {self.label}: {detail}", FailureKind.DECODE) from None
        left = len(body) - fo.tell()
        if left:
            raise RecordError(f"{what} is not valid Avro for {self.label}: {left} byte(s) left over after "
                              "the record (corrupt payload, or written with another schema)", FailureKind.DECODE)
        return value


def is_recursive(parsed: Any) -> bool:
    """True when a named type of the parsed schema can contain itself (directly or through other
    named types). A reference is matched by its full name or its last part, so a namespace
    spelled differently can only make a schema look recursive, never hide that it is."""
    named: dict[str, Any] = parsed.get("__named_schemas", {}) if isinstance(parsed, dict) else {}
    short = {name.rsplit(".", 1)[-1]: name for name in named}
    finite: set[str] = set()  # named types already walked and found not to contain themselves

    def walk(node: Any, open_names: frozenset[str]) -> bool:
        if isinstance(node, str):
            full = node if node in named else short.get(node.rsplit(".", 1)[-1])
            if full is None or full in finite:
                return False
            if full in open_names:
                return True
            if walk(named[full], open_names):
                return True
            finite.add(full)
            return False
        if isinstance(node, list):
            return any(walk(item, open_names) for item in node)
        if not isinstance(node, dict):
            return False
        kind = node.get("type")
        name = node.get("name")
        if isinstance(name, str) and kind in ("record", "error", "enum", "fixed"):
            full = name if name in named else short.get(name.rsplit(".", 1)[-1], name)
            open_names = open_names | {full}
        if kind in ("record", "error"):
            return any(walk(f.get("type"), open_names) for f in node.get("fields") or () if isinstance(f, dict))
        if kind == "array":
            return walk(node.get("items"), open_names)
        if kind == "map":
            return walk(node.get("values"), open_names)
        if isinstance(kind, dict | list | str) and kind not in _PRIMITIVES:
            return walk(kind, open_names)
        return False

    try:
        return walk(parsed, frozenset())
    except RecursionError:  # a schema too deep to walk: read it with the reader that cannot crash
        return True


_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string",
                         "record", "error", "enum", "fixed", "array", "map"})


def prepare(schema: Any) -> Any:
    """The schema (as parsed JSON) with the logical-type rewrites described in the module doc."""
    if isinstance(schema, list):
        return [prepare(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    kind = out.get("type")
    if kind in ("record", "error"):
        if isinstance(out.get("fields"), list):
            out["fields"] = [{**f, "type": prepare(f["type"])} if isinstance(f, dict) and "type" in f else f
                             for f in out["fields"]]
    elif kind == "array":
        if "items" in out:
            out["items"] = prepare(out["items"])
    elif kind == "map":
        if "values" in out:
            out["values"] = prepare(out["values"])
    elif isinstance(kind, dict | list):
        out["type"] = prepare(kind)
    else:
        logical = out.get("logicalType")
        if (kind, logical) in _RAW_LOGICAL:
            del out["logicalType"]
        elif (kind, logical) in _RENAMED_LOGICAL:
            out["logicalType"] = _RENAMED_LOGICAL[(kind, logical)]
    return out


def parse(text: str | Any, label: str, named: dict[str, Any] | None = None) -> Schema:
    """An Avro schema (JSON text or already-parsed JSON) → Schema. ``named`` holds referenced types."""
    try:
        doc = json.loads(text) if isinstance(text, str) else text
    except ValueError as err:
        raise SchemaProblem(f"{label} is not JSON: {err}") from None
    except RecursionError:
        raise SchemaProblem(f"{label} is JSON nested too deeply") from None
    try:
        parsed = parse_schema(prepare(doc), named_schemas={} if named is None else named)
    except RecursionError:
        raise SchemaProblem(f"{label} is not a valid Avro schema: nested too deeply") from None
    except (SchemaParseException, ValueError, TypeError, KeyError, AttributeError) as err:
        raise SchemaProblem(f"{label} is not a valid Avro schema: {type(err).__name__}: {err}") from None
    return Schema(parsed, label)


def load_setting(text: str, key: str) -> Schema:
    """An unframed-Avro schema setting: inline JSON, or the path of a file holding it."""
    stripped = text.strip()
    label = key
    if stripped[:1] not in ("{", "[", '"'):
        try:
            with open(stripped, encoding="utf-8") as fh:
                stripped = fh.read()
        except OSError as err:
            raise SchemaProblem(f"{key}: {stripped!r} is neither inline JSON nor a readable file "
                                f"({err.strerror})") from None
        label = f"{key} ({text.strip()})"
    return parse(stripped, label)
