"""The syntax tree of KCQL: small frozen dataclasses, no behaviour beyond naming."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Source(enum.Enum):
    """Where a path's value comes from."""

    VALUE = "_value"
    KEY = "_key"
    HEADER = "_header"
    TOPIC = "_topic"
    PARTITION = "_partition"
    OFFSET = "_offset"
    TIMESTAMP = "_timestamp"


class TimeUnit(enum.Enum):
    """TIMESTAMPUNIT values, with the number of nanoseconds in one unit."""

    NANOSECONDS = 1
    MICROSECONDS = 1_000
    MILLISECONDS = 1_000_000
    SECONDS = 1_000_000_000
    MINUTES = 60 * 1_000_000_000
    HOURS = 3_600 * 1_000_000_000
    DAYS = 86_400 * 1_000_000_000

    @property
    def nanos(self) -> int:
        return int(self.value)


@dataclass(frozen=True)
class Path:
    """A place in a record: ``source`` plus the segments below it.

    ``a.b`` is (VALUE, ("a", "b")); ``_key`` is (KEY, ()); ``_header.trace`` is
    (HEADER, ("trace",)); ``_offset`` is (OFFSET, ()). ``text`` is the path as written.
    """

    source: Source
    segments: tuple[str, ...]
    text: str

    @property
    def name(self) -> str:
        """The default name of what this path writes: its last segment, else the source name."""
        return self.segments[-1] if self.segments else self.source.value


@dataclass(frozen=True)
class SelectField:
    """One item of the SELECT list. ``wildcard`` marks ``*``, ``a.*`` and ``_key.*``."""

    path: Path
    alias: str | None = None
    wildcard: bool = False

    @property
    def name(self) -> str:
        return self.alias if self.alias is not None else self.path.name


@dataclass(frozen=True)
class PathTag:
    """``WITHTAG(path [AS alias])``: a tag whose value comes from the record."""

    path: Path
    alias: str | None = None

    @property
    def name(self) -> str:
        return self.alias if self.alias is not None else self.path.name


@dataclass(frozen=True)
class ConstantTag:
    """``WITHTAG(key=value)``: the same tag on every point."""

    key: str
    value: str

    @property
    def name(self) -> str:
        return self.key


Tag = PathTag | ConstantTag


@dataclass(frozen=True)
class Statement:
    """``INSERT INTO measurement SELECT fields FROM topic [clauses]``.

    ``timestamp`` None means the time of processing (no WITHTIMESTAMP, or ``sys_time()``);
    ``sys_time`` says that ``WITHTIMESTAMP sys_time()`` was written (a line-protocol topic's
    lines otherwise keep their own times). ``keep_measurement`` is ``INSERT INTO *``: each
    line of a line-protocol value keeps its measurement (``measurement`` is then ``"*"``).
    ``database`` and ``retention_policy`` (``DATABASE name``, ``RETENTION POLICY name``) say where
    the statement's points go; None leaves it to the settings.
    ``line`` and ``column`` locate the statement in the setting, for messages.
    """

    measurement: str
    topic: str
    fields: tuple[SelectField, ...]
    ignores: tuple[Path, ...] = ()
    target: Path | None = None
    timestamp: Path | None = None
    timestamp_unit: TimeUnit | None = None
    tags: tuple[Tag, ...] = ()
    database: str | None = None
    retention_policy: str | None = None
    text: str = ""
    line: int = 1
    column: int = 1
    sys_time: bool = False
    keep_measurement: bool = False
