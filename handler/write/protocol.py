"""Protocol: the write request of each InfluxDB version, and what its answer means.

- 1.x: ``POST /write?db=&rp=&precision=n&consistency=`` with Basic auth (``V1Protocol``).
- 2.x, Cloud: ``POST /api/v2/write?org=&bucket=&precision=ns`` with a token (``V2Protocol``).
- 3.x: ``POST /api/v3/write_lp?db=&precision=nanosecond&accept_partial=&no_sync=`` with a bearer
  token (``V3Protocol``).

What an answer means (``send_lines``):

- 200, 204: every line stored.
- 3.x's partial write (400 ``partial write of line protocol occurred`` with a ``data`` list of
  ``line_number``, 1-based, and ``error_message``): the named lines were refused, every other
  line of the request is stored. Each named line is reported with its reason; nothing is resent.
- 400 about points (``partial write``, ``unable to parse``, ``field type conflict``, ...), 413
  (body too large) and 422: some lines were refused. The request is split in halves and resent
  until each refused line stands alone; identical points overwrite themselves, so resending the
  good ones is harmless. A refused line alone is reported with the server's reason.
- anything else (401/403, 404, 429, 5xx, a 400 about the request): a ``WriteError`` for the
  request as a whole, retryable or not. Unreachable servers and timeouts are the transport's
  ``WriteError``.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Protocol, overload

from handler.deadline import MIN_WAIT_S
from handler.errors import WriteError
from handler.write.transport import Answer, ClientTarget, HttpTarget, basic_auth


class LineProtocolWriter(Protocol):
    """One server version's write request. ``lines`` are the request's lines; ``body`` is the
    same lines as ``request_body`` makes them, when already built (else the protocol builds what
    it sends from ``lines``)."""

    def send(self, lines: Sequence[str], body: bytes | None, at: float | None) -> Answer: ...

    def refused_lines(self, answer: Answer, sent: int) -> dict[int, str] | None:
        """For an answer that stored some lines of a request of ``sent`` lines and refused the
        others: the refused lines' positions in the request (0-based) and reasons. None for any
        other answer."""
        ...

    def set_credentials(self, username: str | None, password: str | None, token: str | None) -> None: ...

    def close(self) -> None: ...


class _Picked(Sequence[str]):
    """Lines ``idxs`` of ``lines``, without copying them: a protocol that sends a ready body never
    looks at them."""

    __slots__ = ("idxs", "lines")

    def __init__(self, lines: Sequence[str], idxs: list[int]) -> None:
        self.lines = lines
        self.idxs = idxs

    def __len__(self) -> int:
        return len(self.idxs)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self.lines[j] for j in self.idxs[i]]
        return self.lines[self.idxs[i]]

    def __iter__(self) -> Iterator[str]:
        lines = self.lines
        return (lines[j] for j in self.idxs)


def request_body(lines: Sequence[str]) -> bytes:
    """A write request's body: the lines, each ended by a newline, as UTF-8 (the delivery stage
    checks while mapping that each line can be encoded)."""
    return ("\n".join(lines) + "\n").encode("utf-8")


class V1Protocol:
    """InfluxDB 1.x ``POST /write`` over an ``HttpTarget``."""

    def __init__(self, target: HttpTarget, *, db: str, rp: str | None = None, consistency: str | None = None,
                 username: str | None = None, password: str | None = None) -> None:
        self.target = target
        params = {"db": db, "precision": "n"}
        if rp:
            params["rp"] = rp
        if consistency:
            params["consistency"] = consistency.lower()
        self.path = "/write?" + urllib.parse.urlencode(params)
        self.headers = {"Content-Type": "text/plain; charset=utf-8"}
        self.set_credentials(username, password, None)

    def set_credentials(self, username: str | None, password: str | None, token: str | None) -> None:
        self.headers.pop("Authorization", None)
        if username:
            self.headers["Authorization"] = basic_auth(username, password)

    def send(self, lines: Sequence[str], body: bytes | None, at: float | None) -> Answer:
        return self.target.send(self.path, request_body(lines) if body is None else body, dict(self.headers), at)

    def refused_lines(self, answer: Answer, sent: int) -> dict[int, str] | None:
        return None  # 1.x stores all of a request or none of it

    def close(self) -> None:
        self.target.close()


class V2Protocol:
    """``POST /api/v2/write`` (InfluxDB 2.x, Cloud) through influxdb-client (``ClientTarget``)."""

    def __init__(self, target: ClientTarget, *, bucket: str, org: str | None) -> None:
        self.target = target
        self.bucket = bucket
        self.org = org or "-"

    def set_credentials(self, username: str | None, password: str | None, token: str | None) -> None:
        self.target.set_token(token)

    def send(self, lines: Sequence[str], body: bytes | None, at: float | None) -> Answer:
        return self.target.post_write(org=self.org, bucket=self.bucket, body="\n".join(lines), precision="ns", at=at)

    def refused_lines(self, answer: Answer, sent: int) -> dict[int, str] | None:
        return None  # the v2 API names no lines: refused points are found by splitting

    def close(self) -> None:
        self.target.close()


PARTIAL_WRITE = "partial write of line protocol occurred"


class V3Protocol:
    """InfluxDB 3's own ``POST /api/v3/write_lp`` over an ``HttpTarget``.

    With ``accept_partial`` (the server's default, sent explicitly) a request holding invalid
    lines stores the valid ones and names the others by line number, so a refused point costs no
    further request. Without it the request is all or nothing, and refused points are found by
    splitting, as for the other versions. ``no_sync`` asks for the answer before the write-ahead
    log is persisted (faster; a server crash can lose acknowledged points).
    """

    def __init__(self, target: HttpTarget, *, db: str, accept_partial: bool = True, no_sync: bool = False,
                 token: str | None = None) -> None:
        self.target = target
        params = {"db": db, "precision": "nanosecond", "accept_partial": str(accept_partial).lower(),
                  "no_sync": str(no_sync).lower()}
        self.path = "/api/v3/write_lp?" + urllib.parse.urlencode(params)
        self.headers = {"Content-Type": "text/plain; charset=utf-8"}
        self.set_credentials(None, None, token)

    def set_credentials(self, username: str | None, password: str | None, token: str | None) -> None:
        self.headers.pop("Authorization", None)
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def send(self, lines: Sequence[str], body: bytes | None, at: float | None) -> Answer:
        return self.target.send(self.path, request_body(lines) if body is None else body, dict(self.headers), at)

    def refused_lines(self, answer: Answer, sent: int) -> dict[int, str] | None:
        """The lines a partial write names; ``WriteError`` when it names a line the request did
        not have (which lines were stored is then unknown: the whole request counts as not
        written). InfluxDB 3 numbers the request's lines from 1, skipping empty and comment lines
        and keeping a newline inside a string field in its line; the encoder writes neither empty
        nor comment lines, so line n is ``lines[n - 1]`` of what was sent."""
        if answer.status != 400 or PARTIAL_WRITE not in answer.text:
            return None
        import json

        try:
            doc = json.loads(answer.text)
        except ValueError:
            return None
        data = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(data, list) or not data:
            return None
        out: dict[int, str] = {}
        for item in data:
            number = item.get("line_number") if isinstance(item, dict) else None
            if type(number) is not int or not 1 <= number <= sent:
                raise WriteError(f"InfluxDB answered a partial write naming line {number!r} of a request of "
                                 f"{sent} line(s); which lines it stored is unknown", status=400, retryable=False)
            message = item.get("error_message")
            out[number - 1] = (str(message).strip() if message else "refused")[:500]
        return out

    def close(self) -> None:
        self.target.close()


# Messages of 400 answers that are about some of the points, not about the request as a whole.
_POINT_ERRORS = ("partial write", "parsing failed for write_lp", "unable to parse", "failed to parse", "conflict",
                 "invalid field",
                 "beyond retention", "max-values-per-tag", "dropped", "invalid number", "invalid boolean",
                 "bad timestamp", "missing field", "missing tag", "line protocol")

TOO_LARGE = "the point is larger than the server's max-body-size"


def about_points(answer: Answer) -> bool:
    """Whether the answer refuses some of the points (so splitting the request finds them)."""
    if answer.status in (413, 422):
        return True
    if answer.status != 400:
        return False
    low = answer.text.lower()
    return any(marker in low for marker in _POINT_ERRORS)


def refusal(answer: Answer) -> str:
    """Why the server refused a request holding one point."""
    if answer.status == 413:
        return TOO_LARGE
    return (answer.text.strip() or f"HTTP {answer.status}")[:500]


def batch_error(answer: Answer) -> WriteError:
    """A refusal of the request as a whole, retryable or not."""
    status, text = answer.status, answer.text
    detail = text.strip()[:300]
    if status == 400 or (status == 500 and "retention policy not found" in text):
        return WriteError(f"InfluxDB refused the request (HTTP {status}): {detail}", status=status, retryable=False)
    if status in (401, 403):
        return WriteError(f"InfluxDB refused the credentials (HTTP {status}): {detail}", status=status,
                          retryable=False)
    if status == 404:
        return WriteError(f"InfluxDB answered 404: {detail} (does the database exist?)", status=status,
                          retryable=False)
    return WriteError(f"InfluxDB answered HTTP {status}: {detail}", status=status,
                      retryable=status in (429, 500, 502, 503, 504) or status >= 500,
                      retry_after=answer.retry_after)


def refused_credentials(err: WriteError) -> bool:
    """Whether a batch error is the server refusing the credentials (new ones may help)."""
    return err.status in (401, 403)


class Tally(Protocol):
    """Where a write's requests are counted and its refused lines kept, as answers come in, so that
    a batch error part way through a split leaves what was learnt before it."""

    rejected: dict[int, str]  # line index → the server's reason
    requests: int


def send_lines(proto: LineProtocolWriter, lines: Sequence[str], idxs: list[int], sent: Tally,
               at: float | None, body: bytes | None = None) -> None:
    """Send lines ``idxs`` of ``lines`` (``body``: exactly those lines as a request body, if built)
    before ``at``; refused points go to ``sent.rejected``: as the server names them (3.x's partial
    write), else by splitting the request and resending the halves.

    ``WriteError`` for a batch error: a request that cannot even start before the deadline, the
    transport's errors, and every answer that refuses the request as a whole.
    """
    sent.requests += 1
    if at is not None and at - time.monotonic() <= MIN_WAIT_S:
        raise WriteError("no time left in this invocation for the write", retryable=False)
    answer = proto.send(_Picked(lines, idxs), body, at)
    if answer.status in (200, 204):
        return
    refused = proto.refused_lines(answer, len(idxs))
    if refused is not None:
        for pos, reason in refused.items():
            sent.rejected[idxs[pos]] = reason
        return
    if not about_points(answer):
        raise batch_error(answer)
    if len(idxs) == 1:
        sent.rejected[idxs[0]] = refusal(answer)
        return
    mid = len(idxs) // 2
    send_lines(proto, lines, idxs[:mid], sent, at)
    send_lines(proto, lines, idxs[mid:], sent, at)
