"""connect.influx.topics: configured topics that no KCQL statement reads are a cold-start error."""

from __future__ import annotations

import pytest

from handler.errors import ConfigError
from handler.settings import load
from handler.topics import parse_topics, unread_topics, unread_topics_message
from kcql import parse

BASE = {"CONNECT_INFLUX_URL": "http://127.0.0.1:8086", "CONNECT_INFLUX_DB": "db"}
KCQL = ("INSERT INTO cpu SELECT * FROM metrics.cpu; "
        "INSERT INTO mem SELECT * FROM metrics-mem WITHTIMESTAMP sys_time(); "
        "INSERT INTO mem2 SELECT used FROM metrics-mem")


def check_topics(topics: list[str], kcql: str = KCQL) -> None:
    """Load the settings with these configured topics (the cold-start path)."""
    settings = load({**BASE, "CONNECT_INFLUX_KCQL": kcql, "CONNECT_INFLUX_TOPICS": ",".join(topics)})
    assert settings.topics == (tuple(topics) if topics else None)


def test_parse_topics_splits_trims_and_drops_repeats() -> None:
    assert parse_topics("a, b,,a ,c") == ["a", "b", "c"]
    assert parse_topics("") == []
    assert parse_topics(" , ") == []


def test_every_topic_read() -> None:
    statements = parse(KCQL)
    assert unread_topics(["metrics.cpu", "metrics-mem"], statements) == []
    check_topics(["metrics.cpu", "metrics-mem"])


def test_no_configured_topics_checks_nothing() -> None:
    check_topics([])


def test_a_statement_without_a_delivered_topic_is_not_an_error() -> None:
    check_topics(["metrics.cpu"])


def test_unread_topics_in_configured_order_compared_exactly() -> None:
    statements = parse(KCQL)
    assert unread_topics(["disk", "metrics.cpu", "Metrics-Mem", "metrics_cpu"], statements) == [
        "disk", "Metrics-Mem", "metrics_cpu"]


def test_check_names_the_setting_each_topic_and_what_is_read() -> None:
    with pytest.raises(ConfigError) as err:
        check_topics(["metrics.cpu", "disk", "net"])
    assert str(err.value) == "invalid settings:\n- " + (
        "connect.influx.topics (CONNECT_INFLUX_TOPICS): the event source delivers topics 'disk', 'net' but no "
        "KCQL statement reads them (statements read: metrics-mem, metrics.cpu); add an INSERT INTO ... FROM "
        "<topic> statement for each, or remove them from the event source's topics")


def test_message_for_one_topic() -> None:
    message = unread_topics_message(["disk"], parse("INSERT INTO m SELECT * FROM t"))
    assert "delivers topic 'disk' but no KCQL statement reads it (statements read: t)" in message


def test_configured_topics_are_shown_in_the_settings_log() -> None:
    settings = load({**BASE, "CONNECT_INFLUX_KCQL": KCQL, "CONNECT_INFLUX_TOPICS": "metrics.cpu, metrics-mem"})
    assert "connect.influx.topics = metrics.cpu,metrics-mem (env)" in settings.describe()
