"""The write layer's old module name, for code not yet moved to ``handler.write``."""

# transition shim: removed when the redesign lands

from __future__ import annotations

from collections.abc import Sequence

from handler.write.protocol import request_body
from handler.write.schedule import Writer, WriteReport, WriteSession
from handler.write.transport import CONNECT_SETTING, READ_SETTING, Answer, HttpTarget

__all__ = ["CONNECT_SETTING", "READ_SETTING", "HttpTarget", "LineWriter", "WriteReport", "WriteSession",
           "request_body"]


class LineWriter(Writer):
    """A writer whose subclass sends each request's lines itself, by overriding ``_send``."""

    def __init__(self, target: HttpTarget, *, chunk_lines: int = 5000) -> None:
        super().__init__(_ByOverride(self), chunk_lines=chunk_lines)
        self.target = target

    def _send(self, lines: Sequence[str], at: float | None) -> tuple[int, str, float | None]:
        raise NotImplementedError


class _ByOverride:
    def __init__(self, writer: LineWriter) -> None:
        self.writer = writer

    def send(self, lines: Sequence[str], body: bytes | None, at: float | None) -> Answer:
        status, text, retry_after = self.writer._send(lines, at)
        return Answer(status, text, retry_after)

    def set_credentials(self, username: str | None, password: str | None, token: str | None) -> None:
        pass

    def close(self) -> None:
        self.writer.target.close()
