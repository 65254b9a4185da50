"""Transport: bytes to InfluxDB and its answer back, every wait ending before the deadline.

Two transports, one per client the server versions are spoken through:

- ``HttpTarget`` (1.x, 3.x): one kept-alive ``http.client`` connection, reused across warm
  invocations. http.client is imported on the cold path anyway; urllib3 or requests would add
  import time for nothing. The socket is opened by ``deadline.open_socket`` (DNS look-up, TCP
  connect and TLS handshake within the connect limit), never by http.client, whose own connect
  would wait the full connect timeout.
- ``ClientTarget`` (2.x, Cloud): influxdb-client's write service, imported only when that
  target is chosen. Its ``post_write`` takes a timeout per request, which the client's write
  API accepts but does not pass on, so the service is called directly.

Both answer with an ``Answer`` (status, text, ``Retry-After``) whatever the status: what it means
is the protocol's business. A server that cannot be reached or does not answer in time is a
``WriteError`` here. Credentials belong to the transport too, including those written into the
URL (``http://user:password@host:8086``), which no message ever shows (``redact.mask_url``).
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from handler.deadline import BY_DEADLINE, MIN_WAIT_S, Limit, limit, open_socket, resolve
from handler.errors import NoTimeLeft, WaitTimedOut, WriteError
from handler.redact import mask_url

CONNECT_SETTING = "connect.influx.connect.timeout.ms"
READ_SETTING = "connect.influx.read.timeout.ms"


@dataclass(frozen=True, slots=True)
class Answer:
    """What the server said to one request."""

    status: int
    text: str
    retry_after: float | None = None  # seconds, from a Retry-After header


def split_url(url: str) -> urllib.parse.SplitResult:
    """The URL's parts; ``ValueError`` when it is not http(s) with a host. The URL itself is not
    in the message: it may carry credentials."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL with a host (scheme {parts.scheme!r})")
    return parts


def url_credentials(url: str) -> tuple[str, str] | None:
    """User name and password written into the URL (percent-decoded), or None when it has none."""
    parts = urllib.parse.urlsplit(url)
    if not parts.username:
        return None
    return urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or "")


def basic_auth(username: str, password: str | None) -> str:
    """The ``Authorization`` header value for HTTP Basic auth."""
    return "Basic " + base64.b64encode(f"{username}:{password or ''}".encode()).decode()


def retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds; None when absent or not a number of seconds."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _no_wait(err: NoTimeLeft | WaitTimedOut) -> WriteError:
    """A wait that could not start (no time left: retrying cannot help) or that timed out."""
    return WriteError(str(err), retryable=not isinstance(err, NoTimeLeft))


class _Endpoint:
    """Where the server is and how long each wait for it may take; ``peer`` names it in messages."""

    def __init__(self, url: str, connect_timeout: float, read_timeout: float, gzip: bool) -> None:
        parts = split_url(url)
        self.scheme = parts.scheme
        self.host: str = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        self.peer = f"InfluxDB at {self.host}:{self.port}"
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.gzip = gzip


class HttpTarget(_Endpoint):
    """One kept-alive HTTP(S) connection with separate connect and read timeouts, both cut short
    by the deadline when it is nearer; bodies are gzipped on the way when asked."""

    def __init__(self, url: str, *, connect_timeout: float = 5.0, read_timeout: float = 30.0,
                 verify: bool = True, ca_bundle: str | None = None, gzip: bool = False) -> None:
        super().__init__(url, connect_timeout, read_timeout, gzip)
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

    def send(self, path: str, body: bytes, headers: dict[str, str], at: float | None = None) -> Answer:
        """POST ``body`` (gzipped first when asked) to ``path``, below the URL's own path."""
        if self.gzip:
            import gzip

            body = gzip.compress(body, compresslevel=1)
            headers = {**headers, "Content-Encoding": "gzip"}
        return self.post(path, body, headers, at)

    def post(self, path: str, body: bytes, headers: dict[str, str], at: float | None = None) -> Answer:
        """POST and read the whole answer, every wait ending before ``at`` (``time.monotonic()``
        seconds) when given. A stale kept-alive connection is retried once."""
        for attempt in (0, 1):
            fresh = self._conn is None
            try:
                conn = self._connect(at)
            except (NoTimeLeft, WaitTimedOut) as err:
                raise _no_wait(err) from None
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
                return Answer(resp.status, data.decode("utf-8", "replace"), retry_after(resp.getheader("Retry-After")))
            except NoTimeLeft as err:
                self.close()
                raise _no_wait(err) from None
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


class ClientTarget(_Endpoint):
    """influxdb-client's write service for ``/api/v2/write``, within the connect and read limits.

    The client is built on the first write and kept; every transport error closes it, so the
    next write starts afresh (and looks the host up again).
    """

    def __init__(self, url: str, *, token: str | None = None, connect_timeout: float = 5.0,
                 read_timeout: float = 30.0, verify: bool = True, ca_bundle: str | None = None,
                 gzip: bool = False) -> None:
        super().__init__(url, connect_timeout, read_timeout, gzip)
        self.url = url
        self.peer = f"InfluxDB at {mask_url(url)}"  # the client is given the whole URL, path included
        self.token = token
        self.verify = verify
        self.ca_bundle = ca_bundle
        self._client: Any = None
        self._service: Any = None

    def set_token(self, token: str | None) -> None:
        """Use a new token (rotated in Parameter Store) from the next request on."""
        self.token = token
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = self._service = None

    def _api(self, at: float | None) -> Any:
        if self._service is None:
            from influxdb_client import InfluxDBClient
            from influxdb_client.service.write_service import WriteService

            self._check_dns(at)
            self._client = InfluxDBClient(
                url=self.url, token=self.token or "", org="-", timeout=int(self.read_timeout * 1000),
                verify_ssl=self.verify, ssl_ca_cert=self.ca_bundle, enable_gzip=self.gzip, retries=False)
            self._service = WriteService(self._client.api_client)
        return self._service

    def _check_dns(self, at: float | None) -> None:
        """Look the host up within the connect limit before a client is built.

        urllib3 resolves names with ``getaddrinfo``, which has no timeout; a resolver that does not
        answer would hold the write past the deadline. The bounded look-up here proves it answers
        (a later one by urllib3 is then answered from the same resolver).
        """
        budget = limit(self.connect_timeout, CONNECT_SETTING, "connecting to InfluxDB", at)
        try:
            resolve(self.host, self.port, budget.seconds)
        except TimeoutError:
            raise WaitTimedOut("connect", self.peer, budget.seconds, budget.reason, "DNS look-up") from None
        except OSError as err:
            raise WriteError(f"cannot reach {self.peer}: {err}") from None

    def _timeouts(self, at: float | None) -> tuple[tuple[float, float] | float, float, float]:
        """influxdb-client's ``_request_timeout`` (milliseconds), and the connect and read limits
        in seconds for messages. When the deadline is nearer than connect + read timeouts, one
        total (urllib3 subtracts the connect's time from the read's) keeps the two together
        inside it."""
        connect, read = self.connect_timeout, self.read_timeout
        if at is not None:
            left = at - time.monotonic()
            if left < connect + read:
                left = max(left, MIN_WAIT_S)
                return left * 1000, min(connect, left), left
        return (connect * 1000, read * 1000), connect, read

    def post_write(self, *, org: str, bucket: str, body: str, precision: str, at: float | None) -> Answer:
        """``POST /api/v2/write`` of ``body``; the answer whatever its status."""
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            api = self._api(at)
        except (NoTimeLeft, WaitTimedOut) as err:
            raise _no_wait(err) from None
        request_timeout, connect_s, read_s = self._timeouts(at)
        reason = BY_DEADLINE if isinstance(request_timeout, float) else None
        try:
            api.post_write(org=org, bucket=bucket, body=body, precision=precision,
                           content_type="text/plain; charset=utf-8", _request_timeout=request_timeout)
        except ApiException as err:
            headers = getattr(err, "headers", None) or {}
            text = err.body.decode("utf-8", "replace") if isinstance(err.body, bytes) else str(err.body or "")
            return Answer(int(err.status or 0), text or str(err.reason), retry_after(headers.get("Retry-After")))
        except NewConnectionError as err:  # before ConnectTimeoutError: urllib3 derives it from that
            self.close()
            cause = err.__cause__ or err.__context__
            detail = f"{type(cause).__name__}: {cause}" if cause is not None else type(err).__name__
            raise WriteError(f"cannot reach {self.peer}: {detail}") from None
        except ConnectTimeoutError:
            self.close()
            raise WriteError(str(WaitTimedOut("connect", self.peer, connect_s, reason or CONNECT_SETTING))) from None
        except ReadTimeoutError:
            self.close()
            raise WriteError(str(WaitTimedOut("read", self.peer, read_s, reason or READ_SETTING))) from None
        except Urllib3Error as err:
            self.close()
            raise WriteError(f"cannot reach {self.peer}: {type(err).__name__}") from None
        return Answer(204, "")
