"""InfluxDB 2.x / Cloud / 3.x target: ``/api/v2/write`` through influxdb-client's write API.

The lines are already encoded (``handler.lineproto``); the client only sends them, so its
``Point`` class and its batching thread are never used. Splitting on 400/413/422 and retries
are the shared ``LineWriter`` logic. influxdb_client is imported only when this target is chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from handler.errors import WriteError
from handler.influx import HttpTarget, LineWriter
from handler.settings import mask_url


class V2Writer(LineWriter):
    def __init__(self, target: HttpTarget, url: str, *, bucket: str, org: str | None, token: str | None,
                 chunk_lines: int = 5000, gzip: bool = False, verify: bool = True,
                 ca_bundle: str | None = None) -> None:
        super().__init__(target, chunk_lines=chunk_lines, gzip=gzip)
        self.url = url
        self.shown_url = mask_url(url)  # for messages: a URL may carry user:password
        self.bucket = bucket
        self.org = org or "-"
        self.verify = verify
        self.ca_bundle = ca_bundle
        self.token = token
        self._client: Any = None
        self._write_api: Any = None

    def set_credentials(self, username: str | None, password: str | None, token: str | None) -> None:
        self.token = token
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = self._write_api = None

    def _api(self) -> Any:
        if self._write_api is None:
            from influxdb_client import InfluxDBClient
            from influxdb_client.client.write_api import SYNCHRONOUS

            self._client = InfluxDBClient(
                url=self.url, token=self.token or "", org=self.org, timeout=int(self.target.read_timeout * 1000),
                verify_ssl=self.verify, ssl_ca_cert=self.ca_bundle, enable_gzip=self.gzip, retries=False)
            self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        return self._write_api

    def _send(self, lines: Sequence[str], read_timeout: float | None) -> tuple[int, str, float | None]:
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        api = self._api()
        timeout = (self.target.connect_timeout, read_timeout or self.target.read_timeout)
        try:
            api.write(bucket=self.bucket, org=self.org, record="\n".join(lines), write_precision="ns",
                      _request_timeout=timeout)
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
        except Urllib3Error as err:
            self.close()
            name = type(err).__name__
            if "Timeout" in name or "timed out" in str(err):
                raise WriteError(f"InfluxDB at {self.shown_url} did not answer within {timeout[1]:g}s") from None
            raise WriteError(f"cannot reach InfluxDB at {self.shown_url}: {name}") from None
        return 204, "", None
