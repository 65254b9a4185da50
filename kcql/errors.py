"""KCQL errors that point at the spot: line, column, the statement and a caret under it."""

from __future__ import annotations

# At most this many lines of the statement are shown above the caret.
CONTEXT_LINES = 4


class KcqlError(ValueError):
    """Any problem with a KCQL setting."""


class KcqlSyntaxError(KcqlError):
    """Text that is not KCQL, located like a compiler would (sqlglot-style).

    ``str(err)`` shows the statement's lines up to the one with the mistake, and a caret under
    the spot::

        KCQL syntax error at line 1, column 42: expected '=' after WITHTARGET, found 'company'
          INSERT INTO m SELECT * FROM t WITHTARGET company
                                                   ^

    ``first_line`` is the line where the statement starts, so a multi-line statement is quoted
    from there (at most ``CONTEXT_LINES`` lines).
    """

    def __init__(self, reason: str, text: str, line: int, column: int, first_line: int | None = None) -> None:
        self.reason = reason
        self.text = text
        self.line = line
        self.column = column
        self.first_line = min(first_line or line, line)
        super().__init__(self._render())

    @property
    def source_line(self) -> str:
        """The line with the mistake."""
        lines = self.text.split("\n")
        return lines[self.line - 1].rstrip("\r") if 0 < self.line <= len(lines) else ""

    def _render(self) -> str:
        lines = self.text.split("\n")
        first = max(self.first_line, self.line - CONTEXT_LINES + 1, 1)
        shown = [lines[i - 1].rstrip("\r").expandtabs(1) for i in range(first, self.line + 1) if i <= len(lines)]
        caret = " " * (self.column - 1) + "^"
        body = "".join(f"\n  {src}" for src in shown or [""])
        return f"KCQL syntax error at line {self.line}, column {self.column}: {self.reason}{body}\n  {caret}"
