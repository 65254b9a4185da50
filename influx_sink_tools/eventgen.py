"""Build Kafka events shaped exactly like the Lambda event source's (for the CLI, runner, tests).

SAM has no Kafka event generator; ``influx-sink event`` and the local runner use this module.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MSK_ARN = "arn:aws:kafka:us-east-1:123456789012:cluster/demo/abcd1234-abcd-cafe-abab-9876543210ab-4"


@dataclass
class Rec:
    """A record to put in an event: raw bytes (None for a null key or a tombstone)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp: int = 0
    timestamp_type: str = "CREATE_TIME"


def _signed(data: bytes) -> list[int]:
    """Header bytes as the event source sends them: Java signed bytes."""
    return [b - 256 if b > 127 else b for b in data]


def record_json(r: Rec) -> dict[str, Any]:
    return {
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "timestampType": r.timestamp_type,
        "key": None if r.key is None else base64.b64encode(r.key).decode("ascii"),
        "value": None if r.value is None else base64.b64encode(r.value).decode("ascii"),
        "headers": [{name: _signed(data)} for name, data in r.headers],
    }


def build_event(records: Iterable[Rec], *, self_managed: bool = False,
                bootstrap_servers: str = "b-1.demo.kafka.us-east-1.amazonaws.com:9092") -> dict[str, Any]:
    """Group records by ``topic-partition`` (in the order first seen), like the event source."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(f"{r.topic}-{r.partition}", []).append(record_json(r))
    event: dict[str, Any] = {"eventSource": "SelfManagedKafka" if self_managed else "aws:kafka"}
    if not self_managed:
        event["eventSourceArn"] = MSK_ARN
    event["bootstrapServers"] = bootstrap_servers
    event["records"] = groups
    return event
