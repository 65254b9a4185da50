"""The topics the event source delivers, checked against the topics the KCQL reads.

The SAM template creates one event source mapping per topic of its ``Topics`` parameter and passes
the list to the function as ``connect.influx.topics`` (``CONNECT_INFLUX_TOPICS``). A topic there
that no statement reads is a configuration mistake: every record of it would fail mapping ("no KCQL
statement reads topic ...") and, under THROW, fail every batch it is in. Checking once at cold start
turns that into one problem of the settings' ``ConfigError``, naming the setting and each such
topic. The reverse, a statement whose topic is not delivered, is harmless (the statement never
matches) and is not checked here.

Kafka topic names are case-sensitive and KCQL compares them exactly, so the check does too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from handler.errors import env_name

if TYPE_CHECKING:  # only for annotations: importing kcql pulls in pyparsing
    from kcql import Statement

KEY = "connect.influx.topics"
ENV = env_name(KEY)


def parse_topics(value: str) -> list[str]:
    """``a,b , c`` → ``["a", "b", "c"]``: comma-separated, blanks and repeats dropped, order kept."""
    topics: list[str] = []
    for part in value.split(","):
        topic = part.strip()
        if topic and topic not in topics:
            topics.append(topic)
    return topics


def unread_topics(configured: Sequence[str], statements: Iterable[Statement]) -> list[str]:
    """The configured topics, in their order, that no statement reads (``FROM topic``)."""
    read = {statement.topic for statement in statements}
    return [topic for topic in configured if topic not in read]


def unread_topics_message(unread: Sequence[str], statements: Iterable[Statement]) -> str:
    """One message naming the setting, its environment variable, each unread topic and what is read."""
    read = sorted({statement.topic for statement in statements})
    names = ", ".join(repr(topic) for topic in unread)
    noun = "topic" if len(unread) == 1 else "topics"
    return (f"{KEY} ({ENV}): the event source delivers {noun} {names} but no KCQL statement reads "
            f"{'it' if len(unread) == 1 else 'them'} (statements read: {', '.join(read) or 'nothing'}); "
            f"add an INSERT INTO ... FROM <topic> statement for each, or remove them from the event "
            f"source's topics")
