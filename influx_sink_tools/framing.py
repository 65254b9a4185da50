"""Framed payloads as producers make them: the one place the tools, tests and benchmark build them.

``confluent_frame``, ``glue_frame`` and ``write_body`` make the bytes a Confluent or AWS Glue
serializer (or a plain Avro writer) would produce, so the decoder is always fed what a real
producer sends (``confluent_protobuf_body`` and ``glue_protobuf_body``: the message indexes
each registry's serializer puts before a Protobuf message); ``encode`` first turns JSON values
into what the Avro writer takes. As a command:

    influx-sink frame confluent --id 1 --schema events/schemas/user.avsc '{"company": "x", ...}'
    python -m influx_sink_tools.framing confluent --id 1 --schema events/schemas/user.avsc '{"company": "x", ...}'
    python -m influx_sink_tools.framing glue --version-id <uuid> [--zlib] --schema ... '<json>'
    python -m influx_sink_tools.framing avro --schema ... '<json>'          # unframed

prints the payload as base64, ready for the ``value`` (or ``key``) of a Kafka event record. The
record is JSON; decimal fields may be given as numbers or strings, dates as ``YYYY-MM-DD``.
A bad record, schema or option is one message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
import uuid
import zlib
from decimal import Decimal, InvalidOperation
from typing import Any

PROG = "python -m influx_sink_tools.framing"


def confluent_frame(schema_id: int, body: bytes) -> bytes:
    """``body`` behind Confluent's wire header: magic byte, then the schema id as 4 big-endian bytes."""
    from handler.decode import CONFLUENT_MAGIC

    return bytes([CONFLUENT_MAGIC]) + schema_id.to_bytes(4, "big") + body


def glue_frame(version_id: str, body: bytes, compress: bool = False) -> bytes:
    """``body`` behind AWS Glue's header: magic byte, compression byte, the schema version's 16 UUID bytes."""
    from handler.decode import GLUE_COMPRESSION_NONE, GLUE_COMPRESSION_ZLIB, GLUE_MAGIC

    comp = GLUE_COMPRESSION_ZLIB if compress else GLUE_COMPRESSION_NONE
    return bytes([GLUE_MAGIC, comp]) + uuid.UUID(version_id).bytes + (zlib.compress(body) if compress else body)


def varint(value: int) -> bytes:
    """An unsigned base-128 varint, as Protobuf writes lengths and Glue its message index."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def confluent_protobuf_body(indexes: list[int], message: bytes) -> bytes:
    """A Protobuf message behind Confluent's message indexes (what follows the 5-byte header):
    a zigzag-varint count and the indexes as zigzag varints, or the single byte 0 for ``[0]``."""
    if indexes == [0]:
        return b"\x00" + message
    zigzag = lambda n: varint((n << 1) ^ (n >> 63))
    return zigzag(len(indexes)) + b"".join(zigzag(i) for i in indexes) + message


def glue_protobuf_body(index: int, message: bytes) -> bytes:
    """A Protobuf message behind AWS Glue's message index (what follows the 18-byte header, and is
    compressed with it): one unsigned varint, the type's place among the schema's message types
    sorted by full name."""
    return varint(index) + message


def write_body(schema: Any, record: Any) -> bytes:
    """The Avro binary body of ``record``, written by fastavro as a producer's serializer writes it."""
    from fastavro import parse_schema, schemaless_writer

    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(schema), record)
    return buf.getvalue()


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


def validation_text(err: Exception) -> str:
    """fastavro's ValidationError (a JSON list of problems) as one line."""
    problems = getattr(err, "errors", None)
    return "; ".join(str(p) for p in problems) if problems else str(err)


class FrameError(Exception):
    """A record, schema or option that cannot make a payload: printed as one message, exit 2."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``frame`` as a subcommand (``influx-sink frame``)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "frame", help="a JSON record -> an Avro payload (base64) as a producer frames it",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("framing", choices=("confluent", "glue", "avro"),
                        help="confluent: magic byte 0 + schema id; glue: magic byte 3 + schema version id; "
                             "avro: the body alone (unframed)")
    parser.add_argument("record", help="the record as JSON")
    parser.add_argument("--schema", required=True, help="Avro schema file (.avsc)")
    parser.add_argument("--id", type=int, help="Confluent schema id (confluent framing)")
    parser.add_argument("--version-id", help="AWS Glue schema version id, a UUID (glue framing)")
    parser.add_argument("--zlib", action="store_true", help="AWS Glue: compress the body (compression byte 5)")


def payload(args: argparse.Namespace) -> bytes:
    """The framed payload the options ask for; FrameError naming what is wrong."""
    if args.framing == "confluent" and args.id is None:
        raise FrameError("confluent framing needs --id")
    if args.framing == "confluent" and not 0 <= args.id < 2**32:
        raise FrameError(f"--id {args.id}: a Confluent schema id is between 0 and 4294967295")
    if args.framing == "glue":
        if not args.version_id:
            raise FrameError("glue framing needs --version-id")
        try:
            uuid.UUID(args.version_id)
        except ValueError:
            raise FrameError(f"--version-id {args.version_id!r} is not a UUID") from None
    try:
        with open(args.schema, encoding="utf-8") as fh:
            schema = json.load(fh)
    except OSError as err:
        raise FrameError(f"--schema {args.schema}: {err.strerror or err}") from None
    except ValueError as err:
        raise FrameError(f"--schema {args.schema} is not JSON: {err}") from None
    try:
        record = json.loads(args.record)
    except ValueError as err:
        raise FrameError(f"the record is not JSON: {err}") from None
    from fastavro import parse_schema
    from fastavro.validation import ValidationError, validate

    try:
        parsed = parse_schema(schema)
    except Exception as err:  # fastavro's SchemaParseException, or whatever a malformed schema trips
        raise FrameError(f"--schema {args.schema} is not a valid Avro schema: {type(err).__name__}: {err}") from None
    try:
        value = coerce(schema, record)
        validate(value, parsed, raise_errors=True)
        body = encode(schema, record)
    except ValidationError as err:
        raise FrameError(f"the record does not match the schema in {args.schema}: {validation_text(err)}") from None
    except (ValueError, TypeError, KeyError, AttributeError, InvalidOperation, OverflowError) as err:
        raise FrameError(f"the record does not match the schema in {args.schema}: {err}") from None
    if args.framing == "confluent":
        return confluent_frame(args.id, body)
    if args.framing == "glue":
        return glue_frame(args.version_id, body, compress=args.zlib)
    return body


def run(args: argparse.Namespace) -> int:
    """Print the payload as base64; a FrameError is one line on stderr and exit code 2."""
    try:
        data = payload(args)
    except FrameError as err:
        print(f"{getattr(args, 'prog', None) or 'influx-sink frame'}: {err}", file=sys.stderr)
        return 2
    sys.stdout.write(base64.b64encode(data).decode("ascii") + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(parser)
    args = parser.parse_args(argv)
    args.prog = PROG
    try:
        return run(args)
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
