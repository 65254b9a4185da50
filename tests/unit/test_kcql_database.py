"""KCQL's DATABASE and RETENTION POLICY clauses: where a statement's points are written."""

from __future__ import annotations

import pytest

import kcql


def one(text: str) -> kcql.Statement:
    (statement,) = kcql.parse(text)
    return statement


def test_database_and_retention_policy_in_any_order_and_case() -> None:
    a = one("INSERT INTO cpu SELECT * FROM t1 DATABASE metrics RETENTION POLICY one_week")
    b = one("insert into cpu select * from t1 retention  policy one_week WITHTAG(h) database metrics")
    assert (a.database, a.retention_policy) == (b.database, b.retention_policy) == ("metrics", "one_week")


def test_without_the_clauses_the_settings_decide() -> None:
    s = one("INSERT INTO cpu SELECT * FROM t1")
    assert (s.database, s.retention_policy) == (None, None)


def test_names_with_dots_slashes_and_spaces() -> None:
    assert one("INSERT INTO a.b SELECT * FROM t DATABASE my.db").database == "my.db"
    assert one("INSERT INTO m SELECT * FROM t DATABASE db/rp").database == "db/rp"
    s = one("INSERT INTO m SELECT * FROM t DATABASE `my db` RETENTION POLICY `30 days`")
    assert (s.database, s.retention_policy) == ("my db", "30 days")


@pytest.mark.parametrize("text", [
    "INSERT INTO database SELECT database FROM database",
    "INSERT INTO m SELECT * FROM database WITHTAG(database, retention)",
    "INSERT INTO m SELECT * FROM t IGNORE database, retention",
    "INSERT INTO m SELECT * FROM t WITHTIMESTAMP database",
])
def test_the_words_stay_usable_as_names(text: str) -> None:
    """Existing statements that use the words as names parse as before."""
    assert one(text).database is None


def test_ignore_list_ends_at_database() -> None:
    s = one("INSERT INTO m SELECT * FROM t IGNORE a, b DATABASE d")
    assert [p.text for p in s.ignores] == ["a", "b"] and s.database == "d"


@pytest.mark.parametrize(("text", "column", "reason"), [
    ("INSERT INTO m SELECT * FROM t DATABASE", 39, "expected a database or bucket name, found the end"),
    ("INSERT INTO m SELECT * FROM t DATABASE WITHTAG(a)", 40,
     "expected a database or bucket name, found the keyword 'WITHTAG' (quote it with backticks, `WITHTAG`, "
     "to use it as a name)"),
    ("INSERT INTO m SELECT * FROM t DATABASE a DATABASE b", 42, "DATABASE appears twice in one statement"),
    ("INSERT INTO m SELECT * FROM t RETENTION POLICY", 47, "expected a retention policy name, found the end"),
])
def test_errors(text: str, column: int, reason: str) -> None:
    with pytest.raises(kcql.KcqlSyntaxError) as err:
        kcql.parse(text)
    assert (err.value.reason, err.value.column) == (reason, column)


def test_plan_routes_each_line_to_its_statements_database() -> None:
    from handler.mapping import Plan, describe_compiled

    statements = kcql.parse("INSERT INTO m SELECT * FROM a DATABASE x; INSERT INTO m SELECT * FROM a;"
                            "INSERT INTO n SELECT * FROM b DATABASE x;"
                            "INSERT INTO m SELECT * FROM c RETENTION POLICY r")
    plan = Plan(statements)
    assert plan.routes == [(None, None), ("x", None), (None, "r")] and plan.routed
    assert plan.line_routes("a", 2) == [1, 0]  # one line per statement, in statement order
    assert plan.line_routes("b", 1) == [1] and plan.line_routes("c", 3) == [2, 2, 2]
    assert plan.line_routes("a", 0) == []
    assert describe_compiled(statements[0])[-1] == "writes to: x"
    assert describe_compiled(statements[3])[-1] == "writes to: the settings database, retention policy r"
    assert not Plan(kcql.parse("INSERT INTO m SELECT * FROM a")).routed
