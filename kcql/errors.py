"""KCQL errors that point at the spot: line, column, the statement and a caret under it."""

from __future__ import annotations


class KcqlError(ValueError):
    """Any problem with a KCQL setting."""


class KcqlSyntaxError(KcqlError):
    """Text that is not KCQL, located like a compiler would (sqlglot-style).

    ``str(err)`` reads::

        KCQL syntax error at line 1, column 31: expected '=' after WITHTARGET, found 'company'
          INSERT INTO m SELECT * FROM t WITHTARGET company
                                        ^
    """

    def __init__(self, reason: str, text: str, line: int, column: int) -> None:
        self.reason = reason
        self.text = text
        self.line = line
        self.column = column
        super().__init__(self._render())

    @property
    def source_line(self) -> str:
        lines = self.text.splitlines() or [""]
        return lines[self.line - 1] if 0 < self.line <= len(lines) else ""

    def _render(self) -> str:
        src = self.source_line.expandtabs(1)
        caret = " " * (self.column - 1) + "^"
        return (f"KCQL syntax error at line {self.line}, column {self.column}: {self.reason}\n"
                f"  {src}\n  {caret}")
