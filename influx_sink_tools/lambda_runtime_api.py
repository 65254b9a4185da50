"""A Lambda Runtime API on loopback, for running the built function under AWS's runtime interface client.

A stand-in: AWS's own emulator (aws-lambda-rie) is a downloaded binary that cannot be installed
here, so this implements the part of the published Runtime API (version 2018-06-01) a function
process uses:

- ``GET  /2018-06-01/runtime/invocation/next`` blocks until an event is queued, then answers it
  with the headers ``Lambda-Runtime-Aws-Request-Id``, ``Lambda-Runtime-Deadline-Ms`` (epoch ms),
  ``Lambda-Runtime-Invoked-Function-Arn`` and ``Lambda-Runtime-Trace-Id``;
- ``POST /2018-06-01/runtime/invocation/{id}/response`` and ``.../{id}/error`` (the latter with
  ``Lambda-Runtime-Function-Error-Type``) end that invocation, once;
- ``POST /2018-06-01/runtime/init/error`` reports a failed initialisation.

What the process sends is collected as :class:`Outcome` with the wall-clock time it arrived, so a
test can compare it with the deadline it handed out. Anything that breaks the protocol (an unknown
request id, a second answer) is answered as the real API would (400/403) and kept in ``problems``.
"""

from __future__ import annotations

import enum
import json
import queue
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:influx-sink"


class OutcomeKind(enum.Enum):
    RESPONSE = "response"
    ERROR = "error"
    INIT_ERROR = "init/error"


@dataclass(frozen=True)
class Invocation:
    """One event handed to the function: what ``/next`` answers with."""

    request_id: str
    body: bytes
    deadline_ms: int
    trace_id: str
    function_arn: str = FUNCTION_ARN


@dataclass(frozen=True)
class Outcome:
    """What the function posted back: a response, an invocation error or an init error."""

    kind: OutcomeKind
    request_id: str | None
    body: bytes
    error_type: str | None
    received_at: float  # time.time() when the POST arrived

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def received_ms(self) -> int:
        return int(self.received_at * 1000)


@dataclass
class _State:
    pending: queue.Queue[Invocation] = field(default_factory=queue.Queue)
    issued: dict[str, Invocation] = field(default_factory=dict)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    init_errors: list[Outcome] = field(default_factory=list)
    next_calls: list[float] = field(default_factory=list)  # time.time() of each GET /next
    problems: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    stopping: threading.Event = field(default_factory=threading.Event)


class RuntimeAPIError(AssertionError):
    """The function did not answer as expected (the message carries what it did say)."""


class RuntimeAPI:
    """The Runtime API on a free 127.0.0.1 port; ``address`` goes into ``AWS_LAMBDA_RUNTIME_API``."""

    def __init__(self) -> None:
        self._state = _State()
        state = self._state

        class Handler(_Handler):
            shared = state

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="lambda-runtime-api", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        port = self._server.server_address[1]
        return f"127.0.0.1:{port}"

    def invoke(self, event: Any, *, timeout_s: float = 30.0, request_id: str | None = None) -> Invocation:
        """Queue an event (a JSON-able value, or bytes as they are) with a deadline ``timeout_s`` ahead."""
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        inv = Invocation(request_id=request_id or str(uuid.uuid4()), body=body,
                         deadline_ms=int((time.time() + timeout_s) * 1000),
                         trace_id=f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};"
                                  "Sampled=0")
        self._state.pending.put(inv)
        return inv

    def wait(self, inv: Invocation, timeout: float = 60.0, process: Any = None) -> Outcome:
        """The outcome of ``inv``; fails early if the process (a Popen) exits or reports an init error."""
        end = time.monotonic() + timeout
        with self._state.changed:
            while inv.request_id not in self._state.outcomes:
                if self._state.init_errors:
                    raise RuntimeAPIError(f"init error instead of an answer: {self._state.init_errors[0].body!r}")
                if process is not None and process.poll() is not None:
                    raise RuntimeAPIError(f"the function process exited ({process.returncode}) without answering")
                left = end - time.monotonic()
                if left <= 0:
                    raise RuntimeAPIError(f"no answer to {inv.request_id} within {timeout} s")
                self._state.changed.wait(min(left, 0.2))
            return self._state.outcomes[inv.request_id]

    def wait_init_error(self, timeout: float = 60.0) -> Outcome:
        end = time.monotonic() + timeout
        with self._state.changed:
            while not self._state.init_errors:
                left = end - time.monotonic()
                if left <= 0:
                    raise RuntimeAPIError(f"no init error within {timeout} s")
                self._state.changed.wait(left)
            return self._state.init_errors[0]

    @property
    def next_calls(self) -> list[float]:
        return list(self._state.next_calls)

    @property
    def problems(self) -> list[str]:
        return list(self._state.problems)

    def stop(self) -> None:
        self._state.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> RuntimeAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    """Quiet about a function process that goes away mid-request (it is stopped while waiting for /next)."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, as the runtime client (libcurl) expects."""

    protocol_version = "HTTP/1.1"
    shared: _State

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path != f"{PREFIX}/invocation/next":
            self._reply(HTTPStatus.NOT_FOUND, {"errorType": "NotFound", "errorMessage": self.path})
            return
        state = self.shared
        with state.changed:
            state.next_calls.append(time.time())
            state.changed.notify_all()
        while True:
            try:
                inv = state.pending.get(timeout=0.2)
                break
            except queue.Empty:
                if state.stopping.is_set():
                    self.close_connection = True
                    return
        state.issued[inv.request_id] = inv
        self._reply(HTTPStatus.OK, inv.body, {
            "Lambda-Runtime-Aws-Request-Id": inv.request_id,
            "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": inv.function_arn,
            "Lambda-Runtime-Trace-Id": inv.trace_id,
            "Content-Type": "application/json",
        })

    def do_POST(self) -> None:
        body = self._body()
        received = time.time()
        state = self.shared
        error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
        if self.path == f"{PREFIX}/init/error":
            outcome = Outcome(OutcomeKind.INIT_ERROR, None, body, error_type, received)
            with state.changed:
                state.init_errors.append(outcome)
                state.changed.notify_all()
            self._reply(HTTPStatus.ACCEPTED, {"status": "OK"})
            return
        parts = self.path.removeprefix(f"{PREFIX}/invocation/").split("/")
        known = self.path.startswith(f"{PREFIX}/invocation/") and len(parts) == 2
        if not known or parts[1] not in ("response", "error"):
            self._reply(HTTPStatus.NOT_FOUND, {"errorType": "NotFound", "errorMessage": self.path})
            return
        request_id, what = parts
        with state.changed:
            if request_id not in state.issued:
                state.problems.append(f"answer for unknown request id {request_id}")
                self._reply(HTTPStatus.BAD_REQUEST, {"errorType": "InvalidRequestID", "errorMessage": request_id})
                return
            if request_id in state.outcomes:
                state.problems.append(f"second answer for {request_id}")
                self._reply(HTTPStatus.FORBIDDEN, {"errorType": "InvalidStateTransition", "errorMessage": request_id})
                return
            kind = OutcomeKind.RESPONSE if what == "response" else OutcomeKind.ERROR
            state.outcomes[request_id] = Outcome(kind, request_id, body, error_type, received)
            state.changed.notify_all()
        self._reply(HTTPStatus.ACCEPTED, {"status": "OK"})

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: HTTPStatus, body: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for k, v in (headers or {"Content-Type": "application/json"}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
