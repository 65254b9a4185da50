"""A stand-in for InfluxDB 3 Core's ``POST /api/v3/write_lp``, for tests only.

InfluxDB 3 cannot be installed on the test machines, so this small server answers as InfluxDB 3
Core's published API reference and its HTTP server's sources describe the write endpoint:

- query ``db`` (required), ``precision`` (``auto``, ``nanosecond``, ``microsecond``,
  ``millisecond``, ``second``), ``accept_partial`` (default true), ``no_sync`` (default false);
- ``Authorization: Bearer <token>`` when the server has a token: 401 without the right one;
- each line is validated on its own; a field whose type differs from the type its table's column
  got on the first write is refused, as is a line that does not have the shape
  ``measurement[,tags] fields [time]``;
- with ``accept_partial=true`` the valid lines are stored and the answer is 400
  ``{"error": "partial write of line protocol occurred", "data": [{"original_line",
  "line_number" (1-based), "error_message"}, ...]}``; with ``accept_partial=false`` nothing is
  stored and the answer is 400 ``{"error": "parsing failed for write_lp endpoint", "data":
  {...the first refused line...}}``; all valid: 204.

Its line parser is the few rules the tests' lines need (escaped separators, quoted strings with
spaces and commas), not the whole of line protocol. ``fail_next`` queues whole-request answers
(a 503, a 401) to test what the sink does with them.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

PRECISIONS = ("auto", "nanosecond", "microsecond", "millisecond", "second")


@dataclass
class Request:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Influx3:
    """The stand-in's state: requests seen, lines stored per database, column types per table."""

    url: str = ""
    token: str | None = None
    requests: list[Request] = field(default_factory=list)
    stored: dict[str, list[str]] = field(default_factory=dict)
    columns: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (db, table, column) → type
    fail_next: list[tuple[int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def lines(self, db: str) -> list[str]:
        with self.lock:
            return list(self.stored.get(db, []))


def _split(text: str, sep: str) -> list[str]:
    """``text`` cut at each ``sep`` that is neither escaped nor inside a double-quoted string."""
    out, cur, quoted, i = [], [], False, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def _field_type(value: str) -> str:
    if value.startswith('"') and value.endswith('"') and len(value) >= 2:
        return "string"
    if value in ("t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"):
        return "bool"
    if value.endswith("i") and value[:-1].lstrip("-").isdigit():
        return "int"
    if value.endswith("u") and value[:-1].isdigit():
        return "uint"
    float(value)  # ValueError: not a field value
    return "float"


def _validate(server: Influx3, db: str, line: str, pending: dict[tuple[str, str, str], str]) -> str | None:
    """Why the line is refused (None: valid); the types of new columns go to ``pending``."""
    parts = _split(line, " ")
    if len(parts) not in (2, 3) or not parts[1]:
        return "No fields were provided" if len(parts) < 2 or not parts[1] else "Could not parse entire line"
    table = _split(parts[0], ",")[0]
    if len(parts) == 3 and not parts[2].lstrip("-").isdigit():
        return f"Could not parse entire line. Found trailing content: `{parts[2]}`"
    mine: dict[tuple[str, str, str], str] = {}
    for pair in _split(parts[1], ","):
        name, eq, value = pair.partition("=")
        if not eq or not name:
            return f"Could not parse entire line. Found trailing content: `{pair}`"
        try:
            kind = _field_type(value)
        except ValueError:
            return f"invalid field value in line protocol for field '{name}'"
        key = (db, table, name)
        known = server.columns.get(key) or pending.get(key)
        if known is not None and known != kind:
            return (f"invalid column type for column '{name}', expected iox::column_type::field::{known}, "
                    f"got iox::column_type::field::{kind}")
        mine.setdefault(key, kind)
    pending.update(mine)
    return None


def _handler(server: Influx3) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, status: int, doc: Any = None) -> None:
            data = b"" if doc is None else json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            if data:
                self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            split = urllib.parse.urlsplit(self.path)
            query = {k: v[-1] for k, v in urllib.parse.parse_qs(split.query).items()}
            with server.lock:
                server.requests.append(Request(split.path, query, dict(self.headers), body))
                if split.path != "/api/v3/write_lp":
                    return self._answer(404, {"error": "not found"})
                if server.token is not None and self.headers.get("Authorization") != f"Bearer {server.token}":
                    return self._answer(401, {"error": "the request was not authenticated"})
                if server.fail_next:
                    status, message = server.fail_next.pop(0)
                    return self._answer(status, {"error": message})
                db = query.get("db")
                if not db:
                    return self._answer(400, {"error": "missing database name"})
                if query.get("precision", "auto") not in PRECISIONS:
                    return self._answer(400, {"error": f"invalid precision {query['precision']!r}"})
                accept_partial = query.get("accept_partial", "true") != "false"
                pending: dict[tuple[str, str, str], str] = {}
                good: list[str] = []
                errors: list[dict[str, Any]] = []
                for number, line in enumerate((ln for ln in body.decode().split("\n") if ln), start=1):
                    reason = _validate(server, db, line, pending)
                    if reason is None:
                        good.append(line)
                        continue
                    error = {"original_line": line[:100], "line_number": number, "error_message": reason}
                    if not accept_partial:
                        return self._answer(400, {"error": "parsing failed for write_lp endpoint", "data": error})
                    errors.append(error)
                server.columns.update(pending)
                server.stored.setdefault(db, []).extend(good)
                if errors:
                    return self._answer(400, {"error": "partial write of line protocol occurred", "data": errors})
                return self._answer(204)

    return Handler


@contextlib.contextmanager
def influx3(token: str | None = None) -> Iterator[Influx3]:
    """The stand-in on a free loopback port for the block."""
    state = Influx3(token=token)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
