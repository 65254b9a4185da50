"""Write stage: bulk line-protocol writes to InfluxDB, with record-level and batch-level errors.

``V1Writer`` speaks InfluxDB 1.x ``POST /write`` over one kept-alive ``http.client`` connection
(reused across warm invocations; http.client is imported in the cold path anyway, urllib3 and
requests would add import time for nothing). Lines go in chunks of ``chunk_lines``, in order;
a ``WriteSession`` holds one batch's progress so the delivery stage can hand it one chunk at a
time, and ``Pipeline`` runs a session on a thread of its own so that InfluxDB stores chunk N
while the next chunk is being mapped.

What a write outcome means:
- 204: every line stored.
- 400 (``partial write``, ``unable to parse``, ``field type conflict``): some lines were refused.
  The chunk is split in halves and resent until each refused line stands alone; identical points
  overwrite themselves, so resending the good ones is harmless. Refused lines are record errors.
- 413: body too large: split and resend; a single line that is still too large is a record error.
- anything else (unreachable, timeout, 401/403, 404, 429, 5xx): ``WriteError``, a batch error.
"""

from __future__ import annotations

import base64
import http.client
import logging
import queue
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from handler.deadline import MIN_WAIT_S, Limit, limit, open_socket
from handler.errors import NoTimeLeft, WaitTimedOut, WriteError

log = logging.getLogger(__name__)

CONNECT_SETTING = "connect.influx.connect.timeout.ms"
READ_SETTING = "connect.influx.read.timeout.ms"


@dataclass
class WriteReport:
    """What happened to a list of lines (indexes into that list)."""

    rejected: dict[int, str] = field(default_factory=dict)  # line index → server's message
    unwritten_from: int | None = None  # first line not written because of ``error`` (None: all tried)
    skipped: set[int] = field(default_factory=set)  # lines not sent: an earlier line of their group was refused
    error: WriteError | None = None
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0  # time spent writing (requests and the waits between retries)


class LineGroups(Protocol):
    """A label per line index (its partition, under RETRY); a list will do."""

    def __getitem__(self, line: int, /) -> object: ...


class HttpTarget:
    """One kept-alive HTTP(S) connection with separate connect and read timeouts.

    Both are cut short by the invocation's deadline when it is nearer: the socket is opened by
    ``deadline.open_socket`` (DNS look-up, TCP connect and TLS handshake within the connect
    limit), never by http.client, whose own connect would wait the full connect timeout.
    """

    def __init__(self, url: str, *, connect_timeout: float = 5.0, read_timeout: float = 30.0,
                 verify: bool = True, ca_bundle: str | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # The URL itself is not shown: it may carry credentials.
            raise ValueError(f"not an http(s) URL with a host (scheme {parts.scheme!r})")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.peer = f"InfluxDB at {self.host}:{self.port}"
        self.base_path = parts.path.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._ssl: ssl.SSLContext | None = None
        if self.scheme == "https":
            self._ssl = ssl.create_default_context(cafile=ca_bundle)
            if not verify:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        self._conn: http.client.HTTPConnection | None = None

    def _connect(self, at: float | None) -> http.client.HTTPConnection:
        if self._conn is None:
            budget = limit(self.connect_timeout, CONNECT_SETTING, "connecting to InfluxDB", at)
            sock = open_socket(self.host, self.port, self.peer, budget, self._ssl)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            cls = http.client.HTTPSConnection if self._ssl is not None else http.client.HTTPConnection
            conn = cls(self.host, self.port)
            conn.sock = sock
            conn.auto_open = 0  # a dropped socket is reopened here, within the limits, never by http.client
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _read_limit(self, conn: http.client.HTTPConnection, at: float | None) -> Limit:
        budget = limit(self.read_timeout, READ_SETTING, "the write", at)
        if conn.sock is not None:
            conn.sock.settimeout(budget.seconds)
        return budget

    def post(self, path: str, body: bytes, headers: dict[str, str],
             at: float | None = None) -> tuple[int, bytes, http.client.HTTPResponse]:
        """POST and read the whole answer, every wait ending before ``at`` (``time.monotonic()``
        seconds) when given. A stale kept-alive connection is retried once."""
        for attempt in (0, 1):
            fresh = self._conn is None
            try:
                conn = self._connect(at)
            except NoTimeLeft as err:
                raise WriteError(str(err), retryable=False) from None
            except WaitTimedOut as err:
                raise WriteError(str(err)) from None
            except OSError as err:
                raise WriteError(f"cannot reach {self.peer}: {err}") from None
            budget: Limit | None = None
            try:
                budget = self._read_limit(conn, at)
                conn.request("POST", self.base_path + path, body=body, headers=headers)
                budget = self._read_limit(conn, at)
                resp = conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self.close()
                return resp.status, data, resp
            except NoTimeLeft as err:
                self.close()
                raise WriteError(str(err), retryable=False) from None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    http.client.CannotSendRequest, http.client.ResponseNotReady,
                    http.client.NotConnected) as err:
                self.close()
                if fresh or attempt:
                    raise WriteError(f"connection to {self.host}:{self.port} lost: {err}") from None
            except TimeoutError:
                self.close()
                assert budget is not None
                timed_out = WaitTimedOut("read", self.peer, budget.seconds, budget.reason)
                raise WriteError(str(timed_out)) from None
            except OSError as err:
                self.close()
                raise WriteError(f"cannot reach {self.peer}: {err}") from None
        raise AssertionError("unreachable")  # pragma: no cover


def _retry_after(resp: http.client.HTTPResponse) -> float | None:
    value = resp.getheader("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


# Messages of 400 answers that are about some of the points, not about the request as a whole.
_POINT_ERRORS = ("partial write", "unable to parse", "failed to parse", "conflict", "invalid field",
                 "beyond retention", "max-values-per-tag", "dropped", "invalid number", "invalid boolean",
                 "bad timestamp", "missing field", "missing tag", "line protocol")


def _about_points(text: str) -> bool:
    low = text.lower()
    return any(marker in low for marker in _POINT_ERRORS)


class LineWriter:
    """Chunked writes with splitting on refusals; subclasses build the request."""

    def __init__(self, target: HttpTarget, *, chunk_lines: int = 5000, gzip: bool = False) -> None:
        self.target = target
        self.chunk_lines = max(1, chunk_lines)
        self.gzip = gzip
        self.headers = {}
        # Called once per write on 401/403; True when it installed new credentials (Parameter Store).
        self.refresh_credentials: Callable[[], bool] | None = None
        self._refreshed = False

    def set_credentials(self, username: str | None, password: str | None, token: str | None) -> None:
        """Install new credentials (a rotated password or token)."""
        self.headers.pop("Authorization", None)
        if username:
            basic = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self.headers["Authorization"] = f"Basic {basic}"

    def close(self) -> None:
        self.target.close()

    # Subclasses set these in __init__.
    path: str = "/write"
    headers: dict[str, str]

    def _send(self, lines: Sequence[str], at: float | None) -> tuple[int, str, float | None]:
        return self._send_body(("\n".join(lines) + "\n").encode("utf-8"), at)

    def _send_body(self, body: bytes, at: float | None) -> tuple[int, str, float | None]:
        """POST a ready body (lines ended by newlines, UTF-8), every wait ending before ``at``."""
        headers = dict(self.headers)
        if self.gzip:
            import gzip

            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        status, data, resp = self.target.post(self.path, body, headers, at)
        return status, data.decode("utf-8", "replace"), _retry_after(resp)

    @property
    def _takes_bodies(self) -> bool:
        """Whether a chunk's ready-made body can be sent as it is (a subclass that overrides
        ``_send``, like the 2.x writer that hands lines to influxdb-client, gets lines)."""
        return type(self)._send is LineWriter._send

    def session(self, lines: Sequence[str], *, deadline: float | None = None, retry_interval: float = 1.0,
                retries: bool = False, groups: LineGroups | None = None,
                sleep: Callable[[float], None] = time.sleep) -> WriteSession:
        """A batch's writes, to be given chunk by chunk (see ``write`` for the rules)."""
        return WriteSession(self, lines, deadline=deadline, retry_interval=retry_interval, retries=retries,
                            groups=groups, sleep=sleep)

    def write(self, lines: Sequence[str], *, deadline: float | None = None, retry_interval: float = 1.0,
              retries: bool = False, groups: LineGroups | None = None,
              sleep: Callable[[float], None] = time.sleep) -> WriteReport:
        """Write every line. Batch errors stop at the first chunk that cannot be written.

        With ``retries`` a chunk that hit a retryable batch error is retried with backoff
        (``retry_interval`` doubled each time, ``Retry-After`` honoured) while ``deadline``
        (``time.monotonic()`` seconds) allows; without it, the first batch error ends the write.
        With ``groups`` (one label per line, e.g. its partition), once a line of a group is refused
        the group's later lines are not sent (``report.skipped``): RETRY redelivers them anyway.
        """
        session = self.session(lines, deadline=deadline, retry_interval=retry_interval, retries=retries,
                               groups=groups, sleep=sleep)
        for start in range(0, len(lines), self.chunk_lines):
            if session.failed:
                break
            session.write_chunk(start, min(start + self.chunk_lines, len(lines)))
        return session.report

    @staticmethod
    def _check_time(at: float | None) -> None:
        """A request that cannot even start before the deadline is a batch error, not a wait."""
        if at is not None and at - time.monotonic() <= MIN_WAIT_S:
            raise WriteError("no time left in this invocation for the write", retryable=False)

    def _write_idx(self, lines: Sequence[str], idxs: list[int], report: WriteReport,
                   at: float | None, body: bytes | None = None) -> None:
        """Send ``idxs`` (``body``: their ready-made request body) before ``at``; split and resend on refusals."""
        report.requests += 1
        self._check_time(at)
        if body is not None and self._takes_bodies:
            status, text, retry_after = self._send_body(body, at)
        else:
            status, text, retry_after = self._send([lines[i] for i in idxs], at)
        if status in (200, 204):
            return
        if status == 413 or status == 422 or (status == 400 and _about_points(text)):
            if len(idxs) == 1:
                report.rejected[idxs[0]] = (text.strip() or f"HTTP {status}")[:500] if status != 413 else (
                    "the point is larger than the server's max-body-size")
                return
            mid = len(idxs) // 2
            self._write_idx(lines, idxs[:mid], report, at)
            self._write_idx(lines, idxs[mid:], report, at)
            return
        if status in (401, 403) and self.refresh_credentials is not None and not self._refreshed:
            self._refreshed = True
            if self.refresh_credentials():
                self._write_idx(lines, idxs, report, at, body)
                return
        raise self._batch_error(status, text, retry_after)

    def _batch_error(self, status: int, text: str, retry_after: float | None) -> WriteError:
        detail = text.strip()[:300]
        if status == 400 or (status == 500 and "retention policy not found" in text):
            return WriteError(f"InfluxDB refused the request (HTTP {status}): {detail}", status=status,
                              retryable=False)
        if status in (401, 403):
            return WriteError(f"InfluxDB refused the credentials (HTTP {status}): {detail}", status=status,
                              retryable=False)
        if status == 404:
            return WriteError(f"InfluxDB answered 404: {detail} (does the database exist?)", status=status,
                              retryable=False)
        return WriteError(f"InfluxDB answered HTTP {status}: {detail}", status=status,
                          retryable=status in (429, 500, 502, 503, 504) or status >= 500,
                          retry_after=retry_after)


class WriteSession:
    """One batch's writes, given a chunk at a time and in order, under ``LineWriter.write``'s rules.

    ``lines`` (and ``groups``) may grow while the session runs: the delivery stage appends the
    next chunk's lines while this one is written. Lines already given never change. Once a
    batch error ends the session (``failed``), later chunks are not sent; ``report`` says from
    which line on nothing was written.
    """

    def __init__(self, writer: LineWriter, lines: Sequence[str], *, deadline: float | None = None,
                 retry_interval: float = 1.0, retries: bool = False, groups: LineGroups | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.writer = writer
        self.lines = lines
        self.deadline = deadline
        self.retry_interval = retry_interval
        self.retries = retries
        self.groups = groups
        self.sleep = sleep
        self.report = WriteReport()
        self._stopped: set[object] = set()  # groups with a refused line: their later lines are skipped
        writer._refreshed = False

    @property
    def failed(self) -> bool:
        return self.report.error is not None

    def write_chunk(self, start: int, end: int, body: bytes | None = None) -> None:
        """Write lines ``start..end`` (``body``: those lines as a ready request body, if built)."""
        if self.failed:
            return
        t0 = time.perf_counter()
        try:
            self._write_chunk(start, end, body)
        finally:
            self.report.seconds += time.perf_counter() - t0

    def _write_chunk(self, start: int, end: int, body: bytes | None) -> None:
        report, groups, stopped = self.report, self.groups, self._stopped
        if groups is not None and stopped:
            idxs = [i for i in range(start, end) if groups[i] not in stopped]
            report.skipped.update(i for i in range(start, end) if groups[i] in stopped)
            body = None  # not the whole chunk any more
        else:
            idxs = list(range(start, end))
        delay = self.retry_interval
        attempt = 0
        while idxs:
            attempt += 1
            try:
                self.writer._write_idx(self.lines, idxs, report, self.deadline, body)
                break
            except WriteError as err:
                now = time.monotonic()
                wait = err.retry_after if err.retry_after is not None else delay
                if not (self.retries and err.retryable) or (self.deadline is not None and now + wait >= self.deadline):
                    if self.retries:
                        self._log_give_up(err, attempt, wait, now, len(idxs))
                    report.error = err
                    report.unwritten_from = idxs[0]
                    return
                report.retries += 1
                log.warning("write of %d line(s) failed (attempt %d): %s; retrying in %.1fs", len(idxs), attempt,
                            err.reason, wait, extra={"attempt": attempt, "reason": err.reason,
                                                     "wait_s": round(wait, 3), "lines": len(idxs)})
                self.sleep(wait)
                delay = min(delay * 2, 60.0)
        if groups is not None and report.rejected:
            stopped.update(groups[i] for i in report.rejected)


    def _log_give_up(self, err: WriteError, attempt: int, wait: float, now: float, lines: int) -> None:
        """Why RETRY stops retrying here: the error is not worth retrying, or the next attempt
        would start after the deadline (the records are then reported for redelivery)."""
        if not err.retryable:
            why = "the error is not retryable"
        else:
            left = max(0.0, (self.deadline or now) - now)
            why = f"the next attempt, in {wait:.1f}s, would start after the invocation's deadline ({left:.1f}s left)"
        log.error("write of %d line(s) failed (attempt %d): %s; giving up: %s", lines, attempt, err.reason, why,
                  extra={"attempt": attempt, "reason": err.reason, "give_up": why, "lines": lines})


class Pipeline:
    """Runs a ``WriteSession`` on a thread of its own: chunks are written in the order submitted,
    one request at a time on the writer's one connection, while the caller prepares the next.

    ``submit`` never waits: the caller keeps mapping at full speed even while the writer sleeps
    before a retry, so a batch error under RETRY still ends at the deadline, as without the
    thread (a bounded queue would hold the mapping back until the writer gave up, and the rest
    of the batch would then be mapped after the deadline). What waits in the queue is at most the
    batch's request bodies, about the size of its line protocol. After a batch error the thread
    drops what is still submitted (the session is ``failed``). ``finish`` waits for the writes
    and re-raises, on the caller's thread, anything unexpected the writer thread raised.
    """

    def __init__(self, session: WriteSession) -> None:
        self.session = session
        self._queue: queue.SimpleQueue[tuple[int, int, bytes | None] | None] = queue.SimpleQueue()
        self._raised: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="influx-sink-writer", daemon=True)
        self._thread.start()

    def submit(self, start: int, end: int, body: bytes | None = None) -> None:
        self._queue.put((start, end, body))

    def finish(self) -> WriteReport:
        self._queue.put(None)
        self._thread.join()
        if self._raised is not None:
            raise self._raised
        return self.session.report

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._raised is not None:
                continue  # drop the rest: finish() re-raises
            try:
                self.session.write_chunk(*item)
            except BaseException as err:
                self._raised = err


class V1Writer(LineWriter):
    """InfluxDB 1.x ``POST /write?db=&rp=&precision=n&consistency=`` with Basic auth."""

    def __init__(self, target: HttpTarget, *, db: str, rp: str | None = None, consistency: str | None = None,
                 username: str | None = None, password: str | None = None, chunk_lines: int = 5000,
                 gzip: bool = False) -> None:
        super().__init__(target, chunk_lines=chunk_lines, gzip=gzip)
        params = {"db": db, "precision": "n"}
        if rp:
            params["rp"] = rp
        if consistency:
            params["consistency"] = consistency.lower()
        self.path = "/write?" + urllib.parse.urlencode(params)
        self.headers = {"Content-Type": "text/plain; charset=utf-8"}
        self.set_credentials(username, password, None)
