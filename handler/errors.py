"""Error types of the sink. Record errors fail one record; write errors fail a request."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

Phase = Literal["connect", "read"]


class ErrorPolicy(StrEnum):
    """What a batch with failed records does: fail whole (THROW), report the failed records'
    partitions for redelivery (RETRY), or skip them (NOOP)."""

    THROW = "THROW"
    RETRY = "RETRY"
    NOOP = "NOOP"


class FailureKind(StrEnum):
    """The stage a record failed in: what logs and metrics count failures by."""

    DECODE = "decode"  # bytes → value
    MAPPING = "mapping"  # value → point (KCQL)
    ENCODE = "encode"  # point → line protocol
    REJECTED = "rejected"  # InfluxDB refused the point itself
    WRITE = "write"  # the write request failed as a whole
    CONFIG = "config"  # the settings cannot decode this record


class SinkError(Exception):
    """Base of every error the sink raises on purpose."""


class ConfigError(SinkError):
    """Settings that cannot work; raised at cold start, naming every bad setting."""

    @classmethod
    def invalid(cls, problems: Iterable[str]) -> ConfigError:
        """The one error for every problem found in the settings, each on a line of its own."""
        return cls("invalid settings:\n- " + "\n- ".join(problems))


def env_name(key: str) -> str:
    """The environment variable of a setting key: ``connect.influx.db`` → ``CONNECT_INFLUX_DB``.

    Kept beside ConfigError rather than in settings so that a stage that words a setting's
    problem (an Avro schema setting the decoder parses) need not import the settings."""
    return key.upper().replace(".", "_")


class WaitTimedOut(SinkError):
    """A network wait reached its limit: a connect (DNS look-up, TCP, TLS handshake) or a read.

    ``limit`` says what set the limit: a timeout setting, or the invocation's deadline when that
    was nearer (then the wait was cut short so that the answer still reaches the event source).
    """

    def __init__(self, phase: Phase, peer: str, seconds: float, limit: str, step: str | None = None) -> None:
        self.phase = phase
        self.peer = peer
        self.seconds = seconds
        self.limit = limit
        why = f"{step}; {limit}" if step else limit
        if phase == "connect":
            text = f"connect to {peer} timed out after {seconds_text(seconds)}s ({why})"
        else:
            text = f"{peer} did not answer within {seconds_text(seconds)}s (read; {why})"
        super().__init__(text)


class NoTimeLeft(SinkError):
    """The invocation's deadline has (all but) passed: the wait is not even started."""


def seconds_text(seconds: float) -> str:
    """``2.7``, ``0.35``: enough digits to tell a cut-short wait from a full one."""
    return f"{seconds:.1f}" if seconds >= 1 else f"{seconds:.2f}"


class RecordError(SinkError):
    """This record cannot become points (decode, mapping or line-protocol rules).

    The reason never includes the record's coordinates: whoever catches it knows the record
    and attaches topic, partition and offset (see ``Failure``).
    """

    def __init__(self, reason: str, kind: FailureKind = FailureKind.MAPPING) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class WriteError(SinkError):
    """A write request failed as a whole (unreachable, timeout, 5xx, 429, auth, 404)."""

    def __init__(self, reason: str, *, status: int | None = None, retryable: bool = True,
                 retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Failure:
    """A record that was not written, and why: what is logged, counted and reported."""

    topic: str
    partition: int
    offset: int
    reason: str
    kind: FailureKind

    def __str__(self) -> str:
        return f"topic={self.topic} partition={self.partition} offset={self.offset}: {self.reason}"


class BatchFailed(SinkError):
    """Raised under the THROW policy so the event source retries the whole batch."""

    def __init__(self, failures: list[Failure], written: int) -> None:
        self.failures = failures
        self.written = written
        first = "; ".join(str(f) for f in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        super().__init__(f"{len(failures)} record(s) failed, batch not acknowledged: {first}{more}")
