"""InfluxDB 2.x / Cloud / 3.x target: ``/api/v2/write`` through influxdb-client's write service.

The lines are already encoded (``handler.lineproto``); the client's write service only sends
them, so its ``Point`` class, write API and batching thread are never used. Splitting on
400/413/422 and retries are the shared ``LineWriter`` logic. influxdb_client is imported only
when this target is chosen.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from handler.deadline import BY_DEADLINE, MIN_WAIT_S, limit, resolve
from handler.errors import NoTimeLeft, WaitTimedOut, WriteError
from handler.influx import CONNECT_SETTING, READ_SETTING, HttpTarget, LineWriter
from handler.settings import mask_url


class V2Writer(LineWriter):
    def __init__(self, target: HttpTarget, url: str, *, bucket: str, org: str | None, token: str | None,
                 chunk_lines: int = 5000, gzip: bool = False, verify: bool = True,
                 ca_bundle: str | None = None) -> None:
        super().__init__(target, chunk_lines=chunk_lines, gzip=gzip)
        self.url = url
        self.shown_url = mask_url(url)  # for messages: a URL may carry user:password
        self.peer = f"InfluxDB at {self.shown_url}"
        self.bucket = bucket
        self.org = org or "-"
        self.verify = verify
        self.ca_bundle = ca_bundle
        self.token = token
        self._client: Any = None
        self._service: Any = None

    def set_credentials(self, username: str | None, password: str | None, token: str | None) -> None:
        self.token = token
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = self._service = None

    def _api(self, at: float | None) -> Any:
        """The client's write service: its ``post_write`` takes a timeout per request, which the
        write API's ``write`` accepts but does not pass on."""
        if self._service is None:
            from influxdb_client import InfluxDBClient
            from influxdb_client.service.write_service import WriteService

            self._check_dns(at)
            self._client = InfluxDBClient(
                url=self.url, token=self.token or "", org=self.org, timeout=int(self.target.read_timeout * 1000),
                verify_ssl=self.verify, ssl_ca_cert=self.ca_bundle, enable_gzip=self.gzip, retries=False)
            self._service = WriteService(self._client.api_client)
        return self._service

    def _check_dns(self, at: float | None) -> None:
        """Look the host up within the connect limit before a client is built.

        urllib3 resolves names with ``getaddrinfo``, which has no timeout; a resolver that does not
        answer would hold the write past the deadline. The bounded look-up here proves it answers
        (a later one by urllib3 is then answered from the same resolver). Every error closes the
        client, so the next write checks again.
        """
        budget = limit(self.target.connect_timeout, CONNECT_SETTING, "connecting to InfluxDB", at)
        try:
            resolve(self.target.host, self.target.port, budget.seconds)
        except TimeoutError:
            raise WaitTimedOut("connect", self.peer, budget.seconds, budget.reason, "DNS look-up") from None
        except OSError as err:
            raise WriteError(f"cannot reach {self.peer}: {err}") from None

    def _timeouts(self, at: float | None) -> tuple[tuple[float, float] | float, float, float]:
        """influxdb-client's ``_request_timeout`` (milliseconds), and the connect and read limits
        in seconds for messages. When the deadline is nearer than connect + read timeouts, one
        total (urllib3 subtracts the connect's time from the read's) keeps the two together
        inside it."""
        connect, read = self.target.connect_timeout, self.target.read_timeout
        if at is not None:
            left = at - time.monotonic()
            if left < connect + read:
                left = max(left, MIN_WAIT_S)
                return left * 1000, min(connect, left), left
        return (connect * 1000, read * 1000), connect, read

    def _send(self, lines: Sequence[str], at: float | None) -> tuple[int, str, float | None]:
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            api = self._api(at)
        except NoTimeLeft as err:
            raise WriteError(str(err), retryable=False) from None
        except WaitTimedOut as err:
            raise WriteError(str(err)) from None
        request_timeout, connect_s, read_s = self._timeouts(at)
        reason = BY_DEADLINE if isinstance(request_timeout, float) else None
        try:
            api.post_write(org=self.org, bucket=self.bucket, body="\n".join(lines), precision="ns",
                           content_type="text/plain; charset=utf-8", _request_timeout=request_timeout)
        except ApiException as err:
            retry_after = None
            headers = getattr(err, "headers", None) or {}
            if headers.get("Retry-After"):
                try:
                    retry_after = float(headers["Retry-After"])
                except ValueError:
                    retry_after = None
            body = err.body.decode("utf-8", "replace") if isinstance(err.body, bytes) else str(err.body or "")
            return int(err.status or 0), body or str(err.reason), retry_after
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
        return 204, "", None
