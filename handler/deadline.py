"""The invocation's deadline, and network waits that end before it.

Lambda stops an invocation at its timeout, and an answer that comes later is lost — a RETRY
partial batch response included. So no wait on the network may outlast the deadline:
``lambda_handler`` records it here when each invocation starts (the remaining time minus a
safety margin), and every client — InfluxDB, the schema registry, Glue, Parameter Store — asks
``limit`` for the most it may wait. A connect to a host whose SYNs are dropped then ends on time
as surely as a read from a server that never answers.

The holder is process-wide because Lambda runs one invocation at a time per process, and the
registry and Parameter Store clients sit deep inside decoding and settings, where threading the
deadline through every call would change every layer between. Writers are handed the deadline
explicitly (``run_batch(deadline=...)``) and pass it to ``limit``.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from handler.errors import NoTimeLeft, WaitTimedOut, seconds_text

T = TypeVar("T")

BY_DEADLINE = "the invocation's deadline"
MIN_WAIT_S = 0.05  # below this a request cannot complete: say so instead of starting it

_deadline: float | None = None  # time.monotonic() seconds; None: no deadline (CLI, tests, local runs)


def set_deadline(at: float | None) -> None:
    """Record this invocation's deadline (``time.monotonic()`` seconds), or None for none."""
    global _deadline
    _deadline = at


def current() -> float | None:
    return _deadline


@dataclass(frozen=True, slots=True)
class Limit:
    """How long one wait may take, and what set that: a timeout setting or the deadline."""

    seconds: float
    reason: str

    def __str__(self) -> str:
        return f"{seconds_text(self.seconds)}s ({self.reason})"


def limit(timeout: float, setting: str, what: str, at: float | None) -> Limit:
    """``timeout`` seconds (named by ``setting``), or less when the deadline ``at`` is nearer.

    ``NoTimeLeft`` (naming ``what``) when too little is left to start a wait at all.
    """
    if at is None:
        return Limit(timeout, setting)
    left = at - time.monotonic()
    if left <= MIN_WAIT_S:
        raise NoTimeLeft(f"no time left in this invocation for {what}")
    if left < timeout:
        return Limit(left, BY_DEADLINE)
    return Limit(timeout, setting)


def process_limit(timeout: float, setting: str, what: str) -> Limit:
    """``limit`` against the deadline recorded by ``set_deadline``."""
    return limit(timeout, setting, what, _deadline)


def call_within(fn: Callable[[], T], seconds: float) -> T:
    """``fn()`` on a daemon thread, waited for at most ``seconds``; ``TimeoutError`` after that.

    For waits that cannot be given a timeout of their own (``getaddrinfo``), or that are made of
    several requests (a paginated AWS call). A thread that is still waiting is left to finish on
    its own: nothing can interrupt it, and nothing waits for it.
    """
    done = threading.Event()
    box: list[T] = []
    raised: list[BaseException] = []

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as err:  # handed to the caller's thread below
            raised.append(err)
        finally:
            done.set()

    threading.Thread(target=run, name="influx-sink-bounded-wait", daemon=True).start()
    if not done.wait(seconds):
        raise TimeoutError(f"no answer within {seconds_text(seconds)}s")
    if raised:
        raise raised[0]
    return box[0]


AddrInfo = tuple[int, int, int, str, Any]  # family, type, proto, canonname, address


def resolve(host: str, port: int, seconds: float) -> list[AddrInfo]:
    """The addresses of ``host``; a name is looked up on a thread so the wait is bounded
    (``getaddrinfo`` has no timeout, and a resolver that does not answer takes its own,
    unbounded, retries). An address literal needs no look-up and no thread."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        found: list[AddrInfo] = call_within(lambda: list(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)),
                                            seconds)
        return found
    return list(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST))


def open_socket(host: str, port: int, peer: str, budget: Limit, tls: ssl.SSLContext | None = None) -> socket.socket:
    """A connected (and, with ``tls``, handshaken) socket, all within ``budget``.

    DNS look-up, TCP connect (each address in turn) and the TLS handshake share the one budget,
    so together they never wait longer than it. ``WaitTimedOut`` (phase ``connect``, naming the
    step) when the budget runs out; ``OSError`` when the peer cannot be reached at all.
    """
    end = time.monotonic() + budget.seconds

    def timed_out(step: str) -> WaitTimedOut:
        return WaitTimedOut("connect", peer, budget.seconds, budget.reason, step)

    try:
        infos = resolve(host, port, budget.seconds)
    except TimeoutError:
        raise timed_out("DNS look-up") from None
    last: OSError | None = None
    for family, kind, proto, _, address in infos:
        left = end - time.monotonic()
        if left <= 0:
            raise timed_out("TCP connect")
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(left)
            sock.connect(address)
        except TimeoutError:
            sock.close()
            raise timed_out("TCP connect") from None
        except OSError as err:
            sock.close()
            last = err
            continue
        if tls is None:
            return sock
        try:
            sock.settimeout(max(MIN_WAIT_S, end - time.monotonic()))
            return tls.wrap_socket(sock, server_hostname=host)
        except TimeoutError:
            sock.close()
            raise timed_out("TLS handshake") from None
        except OSError:
            sock.close()
            raise
    raise last or OSError(f"no address for {host}")
