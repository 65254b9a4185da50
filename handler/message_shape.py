"""What the decode stage tells the mapping stage of a schema'd message type before any record of
it is mapped: its fields in order, each of a type a line can hold as it is.

A Protobuf message read on the decoder's fast path reaches the mapping stage as the message
itself, with its ``MessageType``; the mapping stage then writes the line straight from the
message's fields (``handler.message_lines``) instead of from its record shape, a dict built
only to be read once. ``record`` gives that dict, for the records the straight path leaves to
the general one. No protobuf import here: the mapping stage needs only these descriptions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any


class FieldKind(Enum):
    """The type of a message field, as its line writes it."""

    FLOAT = "float"  # double, float
    INT = "int"  # the integer kinds whose values all fit int64
    UINT64 = "uint64"  # uint64 and fixed64: a value above int64's range fails the record if written
    BOOL = "bool"
    STR = "str"
    ENUM = "enum"  # written by name; a number the enum does not name fails the record


@dataclass(frozen=True, slots=True)
class ShapeField:
    """One field: read as ``getattr(message, name)``; with ``presence`` only there when set
    (``HasField``), else always, at its default when unset. ``truthy_default``: unset, it reads
    as a value that is not falsy (a proto2 ``[default = ...]``), so only ``HasField`` tells."""

    name: str
    kind: FieldKind
    presence: bool
    names: Mapping[int, str] | None = None  # ENUM: number → name
    truthy_default: bool = False


@dataclass(frozen=True, slots=True)
class MessageType:
    """A message type of a registry schema. ``fields`` is None when one of its fields is of
    another type (a message, a list, a map, bytes): its records take the general path, through
    ``record``, which gives the record shape or the record's error, as the decoder would."""

    cls: type  # the class of its messages
    name: str
    fields: tuple[ShapeField, ...] | None
    record: Callable[[Any], Any]
