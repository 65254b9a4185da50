"""Scheduling: when a batch's write requests go out.

A ``WriteSession`` holds one batch's writes. The delivery stage appends lines to the session's
list as it maps records and calls ``offer``; every full chunk of ``chunk_lines`` lines then goes
out, in order. With ``overlap`` the chunks are written on a thread of their own (one request at a
time on the writer's one connection, the pieces handed on meanwhile joined into the next request
up to a chunk) while the next chunk is being mapped; without it (THROW,
where nothing may be written until every record has mapped) they are written on the caller's
thread when it calls ``flush``. A request body is built on the caller's thread, next to the
mapping, so the writer thread only waits for InfluxDB.

A chunk that hits a retryable batch error is retried, when ``retries`` is set, with backoff
(``retry_interval`` doubled each time up to a minute, ``Retry-After`` honoured) while the deadline
allows; otherwise the first batch error ends the session (``failed``): later chunks are not sent,
and ``report.unwritten_from`` says from which line on nothing was written. Refused credentials are
refreshed once per session (``Writer.refresh_credentials``: Parameter Store, Secrets Manager) and
the request resent.

Statements may name their own database (``Plan.routes``): the writer then has one protocol per
route (``routes``, index 0 the settings' database, all on one connection) and the session a route
per line (``targets``). A chunk's lines go out as one request per route, in the order each route
first appears in the chunk, so each request writes to one database. A batch error in one of them
ends the session there: that request's lines and those of the chunk's later requests are listed
in ``report.unwritten`` (the chunk's earlier requests stay written), and ``unwritten_from`` is the
chunk's end.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from handler.errors import WriteError
from handler.write.protocol import LineProtocolWriter, refused_credentials, request_body, send_lines

log = logging.getLogger(__name__)

# Which of lines ``start..end`` still go out, given the lines refused so far (None: all of them).
# The delivery stage's error policy decides; it is called on the thread that writes.
Select = Callable[[int, int, Mapping[int, str]], list[int] | None]


@dataclass
class WriteReport:
    """What happened to a session's lines (indexes into its list)."""

    rejected: dict[int, str] = field(default_factory=dict)  # line index → server's reason
    unwritten_from: int | None = None  # first line not written because of ``error`` (None: all tried)
    unwritten: list[int] = field(default_factory=list)  # before ``unwritten_from``, lines not written either
    error: WriteError | None = None
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0  # time spent writing (requests and the waits between retries)


class Writer:
    """A protocol (one per route: ``routes``, the first being ``protocol``) and the chunk size its
    sessions write in; kept warm across invocations."""

    def __init__(self, protocol: LineProtocolWriter, *, chunk_lines: int = 5000,
                 routes: Sequence[LineProtocolWriter] = ()) -> None:
        self.protocol = protocol
        self.routes: list[LineProtocolWriter] = list(routes) or [protocol]
        self.chunk_lines = max(1, chunk_lines)
        # Called once per session on refused credentials; True when it installed new ones.
        self.refresh_credentials: Callable[[], bool] | None = None

    def set_credentials(self, username: str | None, password: str | None, token: str | None) -> None:
        """Install new credentials (a rotated password or token)."""
        for proto in self.routes:
            proto.set_credentials(username, password, token)

    def close(self) -> None:
        for proto in self.routes:
            proto.close()

    def session(self, lines: Sequence[str], *, deadline: float | None = None, retry_interval: float = 1.0,
                retries: bool = False, select: Select | None = None, overlap: bool = False,
                sleep: Callable[[float], None] = time.sleep, targets: Sequence[int] | None = None) -> WriteSession:
        """One batch's writes of ``lines`` (a list the caller may keep appending to); ``targets``,
        growing with it, is each line's route (None: every line goes to ``protocol``)."""
        return WriteSession(self, lines, deadline=deadline, retry_interval=retry_interval, retries=retries,
                            select=select, overlap=overlap, sleep=sleep, targets=targets)


class WriteSession:
    """One batch's writes, chunk after chunk, in order (see the module's docstring for the rules).

    ``lines`` may grow while the session runs; lines already offered never change.
    """

    def __init__(self, writer: Writer, lines: Sequence[str], *, deadline: float | None, retry_interval: float,
                 retries: bool, select: Select | None, overlap: bool, sleep: Callable[[float], None],
                 targets: Sequence[int] | None = None) -> None:
        self.writer = writer
        self.lines = lines
        self.targets = targets
        self.chunk = writer.chunk_lines
        self.deadline = deadline
        self.retry_interval = retry_interval
        self.retries = retries
        self.select = select
        self.overlap = overlap
        self.sleep = sleep
        self.report = WriteReport()
        self._handed = 0  # lines handed on to be written so far
        self._thread: _WriterThread | None = None
        self._refreshed = False

    @property
    def failed(self) -> bool:
        return self.report.error is not None

    def room(self) -> int:
        """How many more lines fill the next chunk."""
        return self.chunk - (len(self.lines) - self._handed)

    def offer(self) -> None:
        """Hand on every full chunk of the lines appended so far."""
        lines, chunk = self.lines, self.chunk
        while len(lines) - self._handed >= chunk and not self.failed:
            self._hand(self._handed, self._handed + chunk, thread=self.overlap)

    @property
    def handed(self) -> int:
        """How many of the lines have been handed on to be written (a prefix of ``lines``)."""
        return self._handed

    def offer_rest(self) -> None:
        """Hand on every line appended so far, the last ones as a shorter piece, on the writer
        thread, which joins the pieces handed on while a request was out into one request of up
        to a chunk: the delivery stage hands on each piece it maps, so the first request leaves
        early and what is left once the last record is mapped is what InfluxDB has yet to take."""
        self.offer()
        if self._handed < len(self.lines) and not self.failed:
            self._hand(self._handed, len(self.lines), thread=self.overlap)

    def flush(self) -> None:
        """Hand on the rest, a last short chunk included. On the caller's thread unless the writer
        thread already runs: a batch of one chunk needs none."""
        self.offer()
        if self._handed < len(self.lines) and not self.failed:
            self._hand(self._handed, len(self.lines), thread=self._thread is not None)

    def wait(self) -> WriteReport:
        """Wait for every chunk handed on; re-raise here what the writer thread raised unexpectedly."""
        if self._thread is not None:
            self._thread.finish()
        return self.report

    def _hand(self, start: int, end: int, thread: bool) -> None:
        body = request_body(self.lines[start:end])
        self._handed = end
        if not thread:
            self.write_chunk(start, end, body)
            return
        if self._thread is None:
            self._thread = _WriterThread(self)
        self._thread.submit(start, end, body)

    def write_chunk(self, start: int, end: int, body: bytes | None = None) -> None:
        """Write lines ``start..end`` now (``body``: those lines as a request body, if built)."""
        if self.failed:
            return
        t0 = time.perf_counter()
        try:
            self._write_chunk(start, end, body)
        finally:
            self.report.seconds += time.perf_counter() - t0

    def _write_chunk(self, start: int, end: int, body: bytes | None) -> None:
        report = self.report
        idxs = self.select(start, end, report.rejected) if self.select is not None else None
        if idxs is None:
            idxs = list(range(start, end))
        else:
            body = None  # not the whole chunk any more
        if self.targets is None:
            self._send(self.writer.protocol, idxs, body, end, ())
            return
        chunk_routes = set(self.targets[start:end])  # at C speed: most chunks hold one database
        if len(chunk_routes) == 1:
            self._send(self.writer.routes[chunk_routes.pop()], idxs, body, end, ())
            return
        groups = self._by_route(idxs)
        requests = list(groups.items())
        for n, (route, group) in enumerate(requests):
            later = [i for _, g in requests[n + 1:] for i in g]
            if not self._send(self.writer.routes[route], group, None, end, later):
                return

    def _by_route(self, idxs: list[int]) -> dict[int, list[int]]:
        """The lines ``idxs`` by route, routes in the order they first appear."""
        targets = self.targets
        assert targets is not None
        groups: dict[int, list[int]] = {}
        for i in idxs:
            route = targets[i]
            group = groups.get(route)
            if group is None:
                groups[route] = [i]
            else:
                group.append(i)
        return groups

    def _send(self, protocol: LineProtocolWriter, idxs: list[int], body: bytes | None, end: int,
              later: Sequence[int]) -> bool:
        """One request of lines ``idxs`` (of the chunk ending at ``end``), retried as the session
        allows; False after a batch error, recorded in the report with the chunk's ``later`` lines."""
        report = self.report
        delay = self.retry_interval
        attempt = 0
        while idxs:
            attempt += 1
            try:
                send_lines(protocol, self.lines, idxs, report, self.deadline, body)
                return True
            except WriteError as err:
                if self._refresh(err):
                    attempt -= 1  # the same attempt, with new credentials
                    continue
                now = time.monotonic()
                wait = err.retry_after if err.retry_after is not None else delay
                if not (self.retries and err.retryable) or (self.deadline is not None and now + wait >= self.deadline):
                    if self.retries:
                        self._log_give_up(err, attempt, wait, now, len(idxs))
                    report.error = err
                    if self.targets is None:
                        report.unwritten_from = idxs[0]
                    else:
                        report.unwritten = sorted([*idxs, *later])
                        report.unwritten_from = end
                    return False
                report.retries += 1
                log.warning("write of %d line(s) failed (attempt %d): %s; retrying in %.1fs", len(idxs), attempt,
                            err.reason, wait, extra={"attempt": attempt, "reason": err.reason,
                                                     "wait_s": round(wait, 3), "lines": len(idxs)})
                self.sleep(wait)
                delay = min(delay * 2, 60.0)
        return True

    def _refresh(self, err: WriteError) -> bool:
        """Refused credentials, the first time in this session: True when new ones were installed."""
        refresh = self.writer.refresh_credentials
        if refresh is None or self._refreshed or not refused_credentials(err):
            return False
        self._refreshed = True
        return refresh()

    def _log_give_up(self, err: WriteError, attempt: int, wait: float, now: float, lines: int) -> None:
        """Why retrying stops here: the error is not worth retrying, or the next attempt would start
        after the deadline (the records are then reported for redelivery)."""
        if not err.retryable:
            why = "the error is not retryable"
        else:
            left = max(0.0, (self.deadline or now) - now)
            why = f"the next attempt, in {wait:.1f}s, would start after the invocation's deadline ({left:.1f}s left)"
        log.error("write of %d line(s) failed (attempt %d): %s; giving up: %s", lines, attempt, err.reason, why,
                  extra={"attempt": attempt, "reason": err.reason, "give_up": why, "lines": lines})


class _WriterThread:
    """Writes a session's chunks on a thread of its own, in the order submitted; consecutive
    chunks waiting in the queue when a request ends go out as one request of up to a chunk.

    ``submit`` never waits: the caller keeps mapping at full speed even while the writer sleeps
    before a retry, so a batch error under retries still ends at the deadline, as without the
    thread (a bounded queue would hold the mapping back until the writer gave up, and the rest of
    the batch would then be mapped after the deadline). What waits in the queue is at most the
    batch's request bodies, about the size of its line protocol. After a batch error the session is
    ``failed`` and what is still queued is dropped. ``finish`` waits for the writes and re-raises,
    on the caller's thread, anything unexpected the writer thread raised.
    """

    def __init__(self, session: WriteSession) -> None:
        self.session = session
        self._queue: queue.SimpleQueue[tuple[int, int, bytes] | None] = queue.SimpleQueue()
        self._raised: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="influx-sink-writer", daemon=True)
        self._thread.start()

    def submit(self, start: int, end: int, body: bytes) -> None:
        self._queue.put((start, end, body))

    def finish(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._raised is not None:
            raise self._raised

    def _run(self) -> None:
        chunk = self.session.chunk
        while (item := self._queue.get()) is not None:
            last = False
            # InfluxDB is the slower side: what was handed on while the last request was out goes
            # in one request, up to a chunk, instead of one request per piece (each has its cost).
            while item[1] - item[0] < chunk:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    last = True
                    break
                if more[0] != item[1] or more[1] - item[0] > chunk:
                    self._write(item)
                    item = more
                    continue
                item = (item[0], more[1], item[2] + more[2])
            self._write(item)
            if last:
                return

    def _write(self, item: tuple[int, int, bytes]) -> None:
        if self._raised is not None:
            return  # drop the rest: finish() re-raises
        try:
            self.session.write_chunk(*item)
        except BaseException as err:
            self._raised = err
