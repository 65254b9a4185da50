"""Protobuf payloads: Confluent framing and AWS Glue framing, decoded with the protobuf package's
C implementation (upb), imported only when a registry schema says PROTOBUF.

A schema becomes one ``DescriptorPool`` (the well-known types, the schema's references, the
schema's own file); each message type a record names gets its class
(``message_factory.GetMessageClass``) and a converter, built once per (schema, message index)
and kept with the schema. The converter is Python source generated from the descriptor and
compiled once: per record it only reads the fields it already knows by name, so a record costs
upb's parse plus one attribute read per field. It gives what the mapping stage reads, the same
shape Avro decoding gives (dicts, lists, scalars):

- proto3 fields without presence (plain ``int32 x = 1``) are always present, at their default
  value when the producer left them unset: a counter at 0 is a 0, not a missing field;
  fields with presence (``optional``, proto2 fields, oneof members, messages, wrappers) only
  when set;
- enums by name; an enum number the schema does not name fails the record;
- nested messages as dicts, repeated fields as lists, maps as dicts with text keys;
- ``google.protobuf.Timestamp`` as ``lineproto.Instant`` (an aware datetime that keeps the
  nanoseconds for ``WITHTIMESTAMP``); ``confluent.type.Decimal`` as an exact ``Decimal``;
  wrappers (``Int64Value``...) as their value;
  ``Struct``/``Value``/``ListValue`` as the JSON values they stand for;
- integers as ints (a uint64 above int64's range fails the record only if it is written, as any
  integer InfluxDB cannot store); bytes as bytes, refused only if written.

Wire formats (message indexes locate the record's message type in the schema's file):

- Confluent: after magic byte 0 and the 4-byte schema id, a count and that many indexes, each
  a zigzag varint (``[1, 0]``: the first nested type of the second top-level message); a single
  byte 0 stands for ``[0]``, the first top-level message;
- AWS Glue: after the 18-byte header (and inflated with the body when compressed), one unsigned
  varint: the message type's position among all the file's message types, nested ones
  included, sorted by full name (the Glue SerDe's ``MessageIndexFinder``).

Schemas come as a serialized ``FileDescriptorProto`` (base64, what the Confluent registry
answers for ``?format=serialized``) or as ``.proto`` text (AWS Glue; a registry that ignores the
format parameter). Text is parsed by proto-schema-parser (pure Python, imported on first use)
into a ``FileDescriptorProto``; names are left for the pool to resolve by protobuf's scoping rules.
"""

from __future__ import annotations

import base64
import binascii
import keyword
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any

from google.protobuf import (
    any_pb2,
    api_pb2,
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    empty_pb2,
    field_mask_pb2,
    message_factory,
    source_context_pb2,
    struct_pb2,
    timestamp_pb2,
    type_pb2,
    wrappers_pb2,
)
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor
from google.protobuf.message import DecodeError, Message

from handler.errors import FailureKind, RecordError
from handler.lineproto import instant
from handler.message_shape import FieldKind, MessageType, ShapeField

_WELL_KNOWN = (any_pb2, source_context_pb2, type_pb2, api_pb2, descriptor_pb2, duration_pb2, empty_pb2,
               field_mask_pb2, struct_pb2, timestamp_pb2, wrappers_pb2)
WELL_KNOWN_FILES = frozenset(m.DESCRIPTOR.name for m in _WELL_KNOWN)  # "google/protobuf/timestamp.proto", ...

_WRAPPERS = frozenset(f"google.protobuf.{n}Value" for n in
                      ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes"))
_TIMESTAMP = "google.protobuf.Timestamp"
_DECIMAL = "confluent.type.Decimal"
_STRUCT, _VALUE, _LIST_VALUE = "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"
_TS_MIN, _TS_MAX = -62_135_596_800, 253_402_300_799  # 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z


class SchemaProblem(ValueError):
    """A Protobuf schema that cannot be used (not a descriptor nor valid .proto text, a missing import)."""


class BadValue(ValueError):
    """Internal: a parsed message holds what the record shape cannot carry (the reason)."""


# ---------------------------------------------------------------- schema → descriptors


def _confluent_decimal() -> bytes:
    """``confluent/type/decimal.proto`` (Confluent's decimal type, which its serializers do not send
    either): ``message Decimal { bytes value = 1; uint32 precision = 2; int32 scale = 3; }``."""
    proto = descriptor_pb2.FileDescriptorProto(name=CONFLUENT_DECIMAL_FILE, package="confluent.type", syntax="proto3")
    msg = proto.message_type.add(name="Decimal")
    for number, (name, kind) in enumerate((("value", FieldDescriptor.TYPE_BYTES),
                                           ("precision", FieldDescriptor.TYPE_UINT32),
                                           ("scale", FieldDescriptor.TYPE_INT32)), 1):
        msg.field.add(name=name, number=number, type=kind, label=FieldDescriptor.LABEL_OPTIONAL)
    return proto.SerializeToString()


CONFLUENT_DECIMAL_FILE = "confluent/type/decimal.proto"


def new_pool() -> descriptor_pool.DescriptorPool:
    """A pool holding the well-known types and Confluent's decimal: producers' serializers never
    send them as references."""
    pool = descriptor_pool.DescriptorPool()
    for module in _WELL_KNOWN:
        pool.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(_confluent_decimal())
    return pool


def _serialized(text: Any) -> descriptor_pb2.FileDescriptorProto | None:
    """The FileDescriptorProto that ``text`` is base64 of, or None (``.proto`` text has spaces
    and semicolons, never valid base64)."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    proto = descriptor_pb2.FileDescriptorProto()
    try:
        proto.ParseFromString(raw)
    except DecodeError:
        return None
    return proto


def is_serialized(text: Any) -> bool:
    """True when a registry's schema text is a serialized FileDescriptorProto (base64)."""
    return _serialized(text) is not None


def file_proto(text: str, name: str, label: str) -> descriptor_pb2.FileDescriptorProto:
    """A registry's schema text as a FileDescriptorProto named ``name``: base64 of a serialized
    one (Confluent's ``format=serialized``), else ``.proto`` text."""
    proto = _serialized(text)
    if proto is None:
        proto = parse_proto(text, name, label)
    proto.name = name
    return proto


# Imports producers' serializers never send as references (confluent-kafka's ``_is_builtin``),
# besides the well-known types: they count on the reader having them.
_UNSENT_PREFIXES = ("confluent/", "google/type/")


def add_file(pool: descriptor_pool.DescriptorPool, proto: descriptor_pb2.FileDescriptorProto,
             label: str) -> FileDescriptor:
    """Add a file to the pool (its imports must be there); SchemaProblem with upb's reason otherwise.

    An import serializers never send (``confluent/meta.proto``, ``google/type/*.proto``) that the
    pool does not have is dropped: most schemas import ``confluent/meta.proto`` only for options,
    which are then kept as unknown fields of the options. A field of a type from such a file
    still fails the schema, naming the type it cannot resolve."""
    missing = [i for i, dep in enumerate(proto.dependency)
               if dep.startswith(_UNSENT_PREFIXES) and not has_file(pool, dep)]
    if missing:
        kept = [i for i in range(len(proto.dependency)) if i not in missing]
        public = [kept.index(i) for i in proto.public_dependency if i in kept]
        weak = [kept.index(i) for i in proto.weak_dependency if i in kept]
        deps = [proto.dependency[i] for i in kept]
        proto = descriptor_pb2.FileDescriptorProto.FromString(proto.SerializeToString())
        del proto.dependency[:], proto.public_dependency[:], proto.weak_dependency[:]
        proto.dependency.extend(deps)
        proto.public_dependency.extend(public)
        proto.weak_dependency.extend(weak)
    try:
        file: FileDescriptor = pool.AddSerializedFile(proto.SerializeToString())
        return file
    except (TypeError, ValueError, KeyError) as err:
        raise SchemaProblem(f"{label} cannot be used: {err}") from None


def has_file(pool: descriptor_pool.DescriptorPool, name: str) -> bool:
    """True when the pool holds a file of that name."""
    try:
        pool.FindFileByName(name)
    except KeyError:
        return False
    return True


# ---------------------------------------------------------------- .proto text


_SCALARS = {
    "double": FieldDescriptor.TYPE_DOUBLE, "float": FieldDescriptor.TYPE_FLOAT,
    "int64": FieldDescriptor.TYPE_INT64, "uint64": FieldDescriptor.TYPE_UINT64,
    "int32": FieldDescriptor.TYPE_INT32, "fixed64": FieldDescriptor.TYPE_FIXED64,
    "fixed32": FieldDescriptor.TYPE_FIXED32, "bool": FieldDescriptor.TYPE_BOOL,
    "string": FieldDescriptor.TYPE_STRING, "bytes": FieldDescriptor.TYPE_BYTES,
    "uint32": FieldDescriptor.TYPE_UINT32, "sfixed32": FieldDescriptor.TYPE_SFIXED32,
    "sfixed64": FieldDescriptor.TYPE_SFIXED64, "sint32": FieldDescriptor.TYPE_SINT32,
    "sint64": FieldDescriptor.TYPE_SINT64,
}


def parse_proto(text: str, name: str, label: str) -> descriptor_pb2.FileDescriptorProto:
    """``.proto`` text (proto2 or proto3) → FileDescriptorProto. Messages, nested types, enums,
    maps, oneofs, ``optional`` and imports are carried; services, extensions and options other
    than ``packed`` and ``allow_alias`` are not needed to read records and are left out. A type
    name is kept as written: the pool resolves it from the field's scope outwards, as protoc does."""
    from antlr4.error.ErrorListener import ErrorListener
    from proto_schema_parser import ast
    from proto_schema_parser.parser import Parser

    class Raise(ErrorListener):
        def syntaxError(self, recognizer: Any, offending: Any, line: int, column: int, msg: str, e: Any) -> None:
            raise SchemaProblem(f"{label} is not valid .proto text: line {line}, column {column + 1}: {msg}")

    def quiet(recognizer: Any) -> None:
        recognizer.removeErrorListeners()
        recognizer.addErrorListener(Raise())

    try:
        tree = Parser(setup_lexer=quiet, setup_parser=quiet).parse(text)
    except RecursionError:
        raise SchemaProblem(f"{label} is .proto text nested too deeply") from None
    if tree.edition:
        raise SchemaProblem(f"{label}: Protobuf editions (edition = {tree.edition!r}) are not supported")
    syntax = tree.syntax or "proto2"
    out = descriptor_pb2.FileDescriptorProto(name=name, syntax=syntax)
    proto3 = syntax == "proto3"

    def options(opts: Sequence[Any], wanted: str) -> bool | None:
        for opt in opts:
            if opt.name == wanted:
                return bool(opt.value)
        return None

    def field(target: Any, f: Any, oneof: int | None = None) -> descriptor_pb2.FieldDescriptorProto:
        fd = target.field.add(name=f.name, number=f.number)
        card = f.cardinality
        if card == ast.FieldCardinality.REPEATED:
            fd.label = FieldDescriptor.LABEL_REPEATED
        elif card == ast.FieldCardinality.REQUIRED:
            fd.label = FieldDescriptor.LABEL_REQUIRED
        else:
            fd.label = FieldDescriptor.LABEL_OPTIONAL
        scalar = _SCALARS.get(f.type)
        if scalar is not None:
            fd.type = scalar
        else:
            fd.type_name = f.type  # message or enum: the pool resolves and types it
        if oneof is not None:
            fd.oneof_index = oneof
        packed = options(f.options, "packed")
        if packed is not None:
            fd.options.packed = packed
        return fd

    def message(target: Any, m: Any) -> None:
        msg = target.add(name=m.name)
        optional3: list[descriptor_pb2.FieldDescriptorProto] = []
        for el in m.elements:
            if isinstance(el, ast.Field):
                fd = field(msg, el)
                if proto3 and el.cardinality == ast.FieldCardinality.OPTIONAL:
                    optional3.append(fd)
            elif isinstance(el, ast.MapField):
                entry = msg.nested_type.add(name=_map_entry_name(el.name))
                entry.options.map_entry = True
                for number, (key, kind) in enumerate((("key", el.key_type), ("value", el.value_type)), 1):
                    field(entry, ast.Field(name=key, number=number, type=kind))
                msg.field.add(name=el.name, number=el.number, label=FieldDescriptor.LABEL_REPEATED,
                              type_name=entry.name)
            elif isinstance(el, ast.OneOf):
                index = len(msg.oneof_decl)
                msg.oneof_decl.add(name=el.name)
                for member in el.elements:
                    if isinstance(member, ast.Field):
                        field(msg, member, index)
                    elif isinstance(member, ast.Group):
                        raise SchemaProblem(f"{label}: groups are not supported ({m.name}.{member.name})")
            elif isinstance(el, ast.Message):
                message(msg.nested_type, el)
            elif isinstance(el, ast.Enum):
                enum(msg.enum_type, el)
            elif isinstance(el, ast.Group):
                raise SchemaProblem(f"{label}: groups are not supported ({m.name}.{el.name})")
        for fd in optional3:  # proto3 `optional`: a synthetic oneof each, after the real ones
            fd.proto3_optional = True
            fd.oneof_index = len(msg.oneof_decl)
            msg.oneof_decl.add(name=_synthetic_name(fd.name, {o.name for o in msg.oneof_decl}))

    def enum(target: Any, e: Any) -> None:
        en = target.add(name=e.name)
        for el in e.elements:
            if isinstance(el, ast.EnumValue):
                en.value.add(name=el.name, number=el.number)
            elif isinstance(el, ast.Option) and el.name == "allow_alias":
                en.options.allow_alias = bool(el.value)

    for el in tree.file_elements:
        if isinstance(el, ast.Package):
            out.package = el.name
        elif isinstance(el, ast.Import):
            if el.public:
                out.public_dependency.append(len(out.dependency))
            out.dependency.append(el.name)
        elif isinstance(el, ast.Message):
            message(out.message_type, el)
        elif isinstance(el, ast.Enum):
            enum(out.enum_type, el)
    return out


def _map_entry_name(field_name: str) -> str:
    """protoc's name of a map field's entry type: ``my_map`` → ``MyMapEntry``."""
    return "".join(part[:1].upper() + part[1:] for part in field_name.split("_")) + "Entry"


def _synthetic_name(field_name: str, taken: set[str]) -> str:
    name = "_" + field_name
    while name in taken:
        name = "X" + name
    return name


# ---------------------------------------------------------------- schema objects


Reader = Callable[[bytes | memoryview, str], Any]  # (message bytes, "value"/"key") → the record shape
FramedReader = Callable[[bytes, str], Any]  # (the whole framed payload, "value"/"key") → the record shape


class ProtobufSchema:
    """A registry's Protobuf schema: its file in its own pool, and a reader per message type
    (built on first use). ``read`` takes the bytes after the registry's header: the message
    indexes of the framing (Confluent's or Glue's), then the message."""

    __slots__ = ("_confluent", "_converters", "_first", "_glue_order", "_readers", "file", "label")
    text_format = "PROTOBUF"

    def __init__(self, file: FileDescriptor, label: str, confluent: bool) -> None:
        self.file = file
        self.label = label
        self._confluent = confluent
        self._readers: dict[Any, Reader] = {}
        self._first: Reader | None = None
        self._glue_order: list[Descriptor] | None = None
        self._converters: dict[str, Callable[[Message], Any]] = {}  # full name → its compiled converter

    def read(self, body: bytes | memoryview, what: str) -> Any:
        """Decode one body; any mismatch is a RecordError for the record."""
        if self._confluent:
            if body and body[0] == 0:
                reader = self._first or self._reader_for((0,), what)
                self._first = reader
                start = 1
            else:
                indexes, start = _confluent_indexes(body, what, self.label)
                reader = self._readers.get(indexes) or self._reader_for(indexes, what)
        else:
            index, start = _varint(body, 0, what, self.label)
            reader = self._readers.get(index) or self._reader_for(index, what)
        return reader(body[start:], what)

    def framed_reader(self, start: int) -> FramedReader:
        """A reader of whole framed payloads whose message indexes begin at ``start`` (after the
        registry's header), built once per schema. In Confluent framing nearly every record names
        the first message type with the single index byte 0: that case is a length check, a byte
        test, upb's parse and the converter, nothing looked up; any other index list goes through
        ``read``. (The first type's class and converter are built here even if no record names it:
        a few milliseconds, once.)"""
        return self._framed(start, messages=False)[0]

    def message_reader(self, start: int) -> tuple[FramedReader, MessageType | None]:
        """``framed_reader``, but a record of the first message type in Confluent framing is
        read into its upb message, not its record shape: for the mapping stage to write its line
        straight from the fields (``MessageType``, the second item; None when no record is read
        that way)."""
        return self._framed(start, messages=True)

    def _framed(self, start: int, messages: bool) -> tuple[FramedReader, MessageType | None]:
        read = self.read
        tops = self.file.message_types_by_name
        if not (self._confluent and tops):
            def indexed(data: bytes, what: str) -> Any:
                return read(data[start:], what)

            return indexed, None
        desc = next(iter(tops.values()))
        cls = message_factory.GetMessageClass(desc)
        parse, convert = cls.FromString, self._converter(desc)
        failure = _failure_text(self.label, desc)
        at = start + 1
        if messages:
            def message(data: bytes, what: str) -> Any:
                if len(data) > start and data[start] == 0:
                    try:
                        return parse(data[at:])
                    except DecodeError as err:
                        raise _invalid(what, failure, err) from None
                return read(data[start:], what)

            return message, message_type(desc, cls, convert, failure)

        def confluent(data: bytes, what: str) -> Any:
            if len(data) > start and data[start] == 0:
                try:
                    return convert(parse(data[at:]))
                except (DecodeError, BadValue) as err:
                    raise _invalid(what, failure, err) from None
            return read(data[start:], what)

        return confluent, None

    def _converter(self, desc: Descriptor) -> Callable[[Message], Any]:
        """``desc``'s converter, generated and compiled once per schema (its framed reader, its
        message reader and its reader by index all use it)."""
        convert = self._converters.get(desc.full_name)
        if convert is None:
            convert = self._converters[desc.full_name] = converter(desc)
        return convert

    def _reader_for(self, key: Any, what: str) -> Reader:
        desc = self._descriptor(key, what)
        reader = make_reader(desc, _failure_text(self.label, desc), self._converter(desc))
        self._readers[key] = reader
        return reader

    def _descriptor(self, key: Any, what: str) -> Descriptor:
        tops = list(self.file.message_types_by_name.values())
        if not self._confluent:
            if self._glue_order is None:
                self._glue_order = sorted(_all_messages(tops), key=lambda d: d.full_name)
            if key >= len(self._glue_order):
                raise RecordError(f"{what}: message index {key} is outside {self.label}, which has "
                                  f"{len(self._glue_order)} message type(s)", FailureKind.DECODE)
            return self._glue_order[key]
        level: Sequence[Descriptor] = tops
        desc: Descriptor | None = None
        for depth, i in enumerate(key):
            if not 0 <= i < len(level):
                where = "top-level" if depth == 0 else f"nested in {desc.full_name}" if desc else "nested"
                raise RecordError(f"{what}: message index {list(key)} is outside {self.label}: it has "
                                  f"{len(level)} message type(s) {where}", FailureKind.DECODE)
            desc = level[i]
            level = desc.nested_types
        assert desc is not None  # key is never empty
        return desc


def _all_messages(level: Iterable[Descriptor]) -> Iterable[Descriptor]:
    for desc in level:
        yield desc
        yield from _all_messages(desc.nested_types)


def _varint(data: bytes | memoryview, pos: int, what: str, label: str) -> tuple[int, int]:
    """An unsigned varint at ``pos`` → (value, position after it)."""
    value = shift = 0
    n = len(data)
    while True:
        if pos >= n or shift > 63:
            raise RecordError(f"{what} is not valid Protobuf for {label}: its message index is "
                              f"{'truncated' if pos >= n else 'not a varint'}", FailureKind.DECODE)
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _confluent_indexes(data: bytes | memoryview, what: str, label: str) -> tuple[tuple[int, ...], int]:
    """Confluent's message-index list: a zigzag-varint count, then that many zigzag varints."""
    raw, pos = _varint(data, 0, what, label)
    count = (raw >> 1) ^ -(raw & 1)
    if not 0 < count <= 100:  # upb nests messages at most 100 deep
        raise RecordError(f"{what} is not valid Protobuf for {label}: its message-index list says {count} "
                          "index(es)", FailureKind.DECODE)
    out = []
    for _ in range(count):
        raw, pos = _varint(data, pos, what, label)
        out.append((raw >> 1) ^ -(raw & 1))
    return tuple(out), pos


# ---------------------------------------------------------------- message → record shape


def _failure_text(label: str, desc: Descriptor) -> str:
    return f"is not valid Protobuf for {label} ({desc.full_name})"


def _invalid(what: str, failure: str, err: DecodeError | BadValue) -> RecordError:
    """The record's error for upb's refusal (DecodeError) or a value the record shape cannot carry."""
    if isinstance(err, DecodeError):
        return RecordError(f"{what} {failure}: {err} (truncated or corrupt payload, or written with another "
                           "schema)", FailureKind.DECODE)
    return RecordError(f"{what} {failure}: {err}", FailureKind.DECODE)


def make_reader(desc: Descriptor, failure: str, convert: Callable[[Message], Any] | None = None) -> Reader:
    """(bytes, what) → the record shape of ``desc``'s messages; RecordError(``what failure: reason``)
    otherwise. ``convert``: ``desc``'s converter, when already compiled."""
    parse = message_factory.GetMessageClass(desc).FromString
    convert = convert or converter(desc)

    def read(body: bytes | memoryview, what: str) -> Any:
        try:
            return convert(parse(body))
        except (DecodeError, BadValue) as err:
            raise _invalid(what, failure, err) from None

    return read


_SHAPE_KINDS = {
    FieldDescriptor.TYPE_DOUBLE: FieldKind.FLOAT, FieldDescriptor.TYPE_FLOAT: FieldKind.FLOAT,
    FieldDescriptor.TYPE_BOOL: FieldKind.BOOL, FieldDescriptor.TYPE_STRING: FieldKind.STR,
    FieldDescriptor.TYPE_ENUM: FieldKind.ENUM,
    FieldDescriptor.TYPE_UINT64: FieldKind.UINT64, FieldDescriptor.TYPE_FIXED64: FieldKind.UINT64,
    **dict.fromkeys((FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32,
                     FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_INT64,
                     FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64), FieldKind.INT),
}


def message_type(desc: Descriptor, cls: type, convert: Callable[[Message], Any], failure: str) -> MessageType:
    """What the mapping stage knows of ``desc``'s messages: its fields' kinds when every field is
    a single scalar, string or enum (else None), and ``record``, its record shape as the
    converter gives it, the converter's refusal being the record's decode error."""
    fields: list[ShapeField] = []
    for f in desc.fields:
        kind = _SHAPE_KINDS.get(f.type)
        if kind is None or f.is_repeated:
            break
        names = {v.number: v.name for v in f.enum_type.values} if kind is FieldKind.ENUM else None
        fields.append(ShapeField(f.name, kind, f.has_presence, names, bool(f.default_value)))
    shape = tuple(fields) if len(fields) == len(desc.fields) else None

    def record(m: Message) -> Any:
        try:
            return convert(m)
        except BadValue as err:
            raise _invalid("value", failure, err) from None

    return MessageType(cls, desc.full_name, shape, record)


def _timestamp(m: Message) -> Any:
    seconds, nanos = m.seconds, m.nanos
    if not (_TS_MIN <= seconds <= _TS_MAX and 0 <= nanos <= 999_999_999):
        raise BadValue(f"a google.protobuf.Timestamp of {seconds} s and {nanos} ns is not a valid time")
    return instant(seconds, nanos)


def _decimal(m: Any) -> Decimal:
    """A ``confluent.type.Decimal``: the big-endian two's-complement unscaled value and its scale,
    exactly (no context rounding; the mapping stage writes it as a float, as Avro's decimals)."""
    sign, digits, _ = Decimal(int.from_bytes(m.value, "big", signed=True)).as_tuple()
    return Decimal((sign, digits, -m.scale))


def _value(v: Any) -> Any:
    kind = v.WhichOneof("kind")
    if kind == "number_value":
        return v.number_value
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "struct_value":
        return _struct(v.struct_value)
    if kind == "list_value":
        return [_value(i) for i in v.list_value.values]
    return None  # null_value, or no kind set


def _struct(s: Any) -> dict[str, Any]:
    return {k: _value(v) for k, v in s.fields.items()}


def _list_value(lv: Any) -> list[Any]:
    return [_value(i) for i in lv.values]


def _bad_enum(enum: str, field: str, number: int) -> Any:
    raise BadValue(f"field {field!r} holds {number}, which enum {enum} does not name")


def converter(root: Descriptor) -> Callable[[Message], Any]:
    """The compiled converter of ``root``'s messages (and of every message type they hold)."""
    env: dict[str, Any] = {"_ts": _timestamp, "_decimal": _decimal, "_struct": _struct, "_value": _value,
                           "_list_value": _list_value, "_bad_enum": _bad_enum}
    names: dict[str, str] = {}  # message full name → its converter's name in env
    sources: list[str] = []

    def enum_table(field: FieldDescriptor) -> str:
        key = f"_e{len(env)}"
        env[key] = {v.number: v.name for v in field.enum_type.values}
        return key

    def message_fn(desc: Descriptor) -> str:
        """The converter of one message type (written once; recursive types refer to it by name)."""
        found = names.get(desc.full_name)
        if found is not None:
            return found
        fn = f"_m{len(names)}"
        names[desc.full_name] = fn
        # The leading fields that are one expression each go into one dict display (one
        # BUILD_CONST_KEY_MAP instead of a store per field); the rest follow in order.
        fields = list(desc.fields)
        lead: list[str] = []
        while fields:
            lines = field_lines(fields[0])
            if len(lines) != 1 or not lines[0].startswith("d[") or fields[0].has_presence:
                break
            lead.append(lines[0][2:].replace("] = ", ": ", 1))
            fields.pop(0)
        lines = [f"def {fn}(m):", f"    d = {{{', '.join(lead)}}}"]
        for f in fields:
            lines.extend("    " + line for line in field_lines(f))
        lines.append("    return d")
        sources.append("\n".join(lines))
        return fn

    def single(f: FieldDescriptor, expr: str) -> tuple[list[str], str]:
        """(statements, expression) of one value of ``f`` (not repeated), read by ``expr``."""
        if f.type == FieldDescriptor.TYPE_ENUM:
            table = enum_table(f)
            return ([f"n = {expr}", f"x = {table}.get(n)",
                     f"if x is None: _bad_enum({f.enum_type.full_name!r}, {f.name!r}, n)"], "x")
        if f.type in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP):
            name = f.message_type.full_name
            if name == _TIMESTAMP:
                return [], f"_ts({expr})"
            if name == _DECIMAL:
                return [], f"_decimal({expr})"
            if name in _WRAPPERS:
                return [], f"{expr}.value"
            if name == _STRUCT:
                return [], f"_struct({expr})"
            if name == _VALUE:
                return [], f"_value({expr})"
            if name == _LIST_VALUE:
                return [], f"_list_value({expr})"
            return [], f"{message_fn(f.message_type)}({expr})"
        return [], expr

    def field_lines(f: FieldDescriptor) -> list[str]:
        plain = f.name.isidentifier() and not keyword.iskeyword(f.name)
        key, attr = repr(f.name), f"m.{f.name}" if plain else f"getattr(m, {f.name!r})"
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            k, v = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
            key_expr = {FieldDescriptor.TYPE_STRING: "k", FieldDescriptor.TYPE_BOOL: "('true' if k else 'false')"}
            kx = key_expr.get(k.type, "str(k)")
            stmts, vx = single(v, "v")
            if not stmts:
                return [f"d[{key}] = {{{kx}: {vx} for k, v in {attr}.items()}}"]
            body = ["mp = {}", f"for k, v in {attr}.items():"]
            body += ["    " + s for s in stmts] + [f"    mp[{kx}] = {vx}", f"d[{key}] = mp"]
            return body
        if f.is_repeated:
            stmts, vx = single(f, "i")
            if not stmts:
                return [f"d[{key}] = list({attr})" if vx == "i" else f"d[{key}] = [{vx} for i in {attr}]"]
            return (["ls = []", f"for i in {attr}:"] + ["    " + s for s in stmts]
                    + [f"    ls.append({vx})", f"d[{key}] = ls"])
        if f.has_presence and f.message_type is None and not f.default_value:
            # A scalar or enum whose unset value is falsy: a truthy value is set, and only a falsy
            # one asks upb (HasField, which finds the field by name, costs several attribute reads).
            stmts, vx = single(f, "p")
            return [f"p = {attr}", f"if p or m.HasField({f.name!r}):"] + [
                "    " + line for line in [*stmts, f"d[{key}] = {vx}"]]
        stmts, vx = single(f, attr)
        lines = [*stmts, f"d[{key}] = {vx}"]
        if f.has_presence:
            return [f"if m.HasField({f.name!r}):"] + ["    " + line for line in lines]
        return lines

    top = message_fn(root)
    exec(compile("\n\n".join(sources), f"<protobuf converter of {root.full_name}>", "exec"), env)
    convert: Callable[[Message], Any] = env[top]
    return convert
