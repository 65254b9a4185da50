"""Build Avro payloads as producers frame them, for sample events and local tests.

    python -m handler.decode.frame confluent --id 1 --schema events/schemas/user.avsc '{"company": "x", ...}'
    python -m handler.decode.frame glue --version-id <uuid> [--zlib] --schema ... '<json>'
    python -m handler.decode.frame avro --schema ... '<json>'          # unframed

prints the payload as base64, ready for the ``value`` (or ``key``) of a Kafka event record. The
record is JSON; decimal fields may be given as numbers or strings, dates as ``YYYY-MM-DD``.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from decimal import Decimal
from typing import Any

from handler.decode.avro import confluent_frame, glue_frame, write_body


def coerce(schema: Any, value: Any, named: dict[str, Any] | None = None) -> Any:
    """JSON values → what fastavro's writer takes (Decimal for decimal logical types)."""
    named = {} if named is None else named
    if isinstance(schema, str):
        return coerce(named[schema], value, named) if schema in named else value
    if isinstance(schema, list):
        for branch in schema:
            if _is_decimal(branch, named) and isinstance(value, int | float | str) and not isinstance(value, bool):
                return coerce(branch, value, named)
        if isinstance(value, dict):
            for branch in schema:
                if isinstance(branch, dict) and branch.get("type") in ("record", "map"):
                    return coerce(branch, value, named)
                if isinstance(branch, str) and branch in named:
                    return coerce(branch, value, named)
        return value
    if not isinstance(schema, dict):
        return value
    kind = schema.get("type")
    if "name" in schema and kind in ("record", "enum", "fixed"):
        named[schema["name"]] = schema
    if kind == "record" and isinstance(value, dict):
        return {f["name"]: coerce(f["type"], value[f["name"]], named) if f["name"] in value else f.get("default")
                for f in schema.get("fields", [])}
    if kind == "array" and isinstance(value, list):
        return [coerce(schema["items"], v, named) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: coerce(schema["values"], v, named) for k, v in value.items()}
    if isinstance(kind, dict | list):
        return coerce(kind, value, named)
    if schema.get("logicalType") == "decimal" and not isinstance(value, Decimal | bool):
        return Decimal(str(value))
    return value


def _is_decimal(schema: Any, named: dict[str, Any]) -> bool:
    if isinstance(schema, str):
        schema = named.get(schema)
    return isinstance(schema, dict) and schema.get("logicalType") == "decimal"


def encode(schema: Any, record: Any) -> bytes:
    """The Avro body of a JSON record."""
    return write_body(schema, coerce(schema, record))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m handler.decode.frame", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("framing", choices=("confluent", "glue", "avro"))
    parser.add_argument("record", help="the record as JSON")
    parser.add_argument("--schema", required=True, help="Avro schema file (.avsc)")
    parser.add_argument("--id", type=int, help="Confluent schema id")
    parser.add_argument("--version-id", help="AWS Glue schema version id (a UUID)")
    parser.add_argument("--zlib", action="store_true", help="AWS Glue: compress the body (compression byte 5)")
    args = parser.parse_args(argv)
    with open(args.schema, encoding="utf-8") as fh:
        schema = json.load(fh)
    body = encode(schema, json.loads(args.record))
    if args.framing == "confluent":
        if args.id is None:
            parser.error("confluent framing needs --id")
        payload = confluent_frame(args.id, body)
    elif args.framing == "glue":
        if not args.version_id:
            parser.error("glue framing needs --version-id")
        payload = glue_frame(args.version_id, body, compress=args.zlib)
    else:
        payload = body
    sys.stdout.write(base64.b64encode(payload).decode("ascii") + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
