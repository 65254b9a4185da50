"""Docs examples are tested: KCQL shown in README/docs parses, and quoted errors are the real text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import kcql

ROOT = Path(__file__).resolve().parent.parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)


def blocks(kind: str) -> list[tuple[str, str]]:
    out = []
    for doc in DOCS:
        for lang, body in BLOCK.findall(doc.read_text(encoding="utf-8")):
            if lang == kind:
                out.append((doc.name, body))
    return out


ERRORS = [(name, body) for name, body in blocks("") if body.startswith("KCQL syntax error")]


@pytest.mark.parametrize(("doc", "shown"), ERRORS, ids=[f"{d}:{i}" for i, (d, _) in enumerate(ERRORS)])
def test_quoted_kcql_errors_are_what_the_parser_says(doc, shown):
    lines = shown.rstrip("\n").split("\n")
    source = lines[1][2:]  # the quoted statement line, indented by two spaces
    with pytest.raises(kcql.KcqlSyntaxError) as err:
        kcql.parse(source)
    assert str(err.value) == "\n".join(lines), doc


SQL = [(name, body) for name, body in blocks("sql") if "INSERT INTO" in body and "<" not in body]


@pytest.mark.parametrize(("doc", "text"), SQL, ids=[f"{d}:{i}" for i, (d, _) in enumerate(SQL)])
def test_kcql_examples_in_the_docs_parse(doc, text):
    """A block is one KCQL setting when it uses ';', else one statement per INSERT (comments are the docs')."""
    lines = [re.sub(r"\s+--\s.*$", "", line) for line in text.splitlines()
             if not line.lstrip().startswith(("#", "--"))]
    if ";" in text:
        assert kcql.parse("\n".join(lines))
        return
    statements: list[str] = []
    for line in lines:
        if line.lstrip().upper().startswith("INSERT") or not statements:
            statements.append(line)
        else:
            statements[-1] += "\n" + line
    for statement in statements:
        if statement.strip():
            assert kcql.parse(statement), statement


def test_there_are_examples():
    assert ERRORS and SQL
