"""Settings from Parameter Store: every parameter under ``CONNECT_INFLUX_SSM_PATH`` named by a key.

``/some/path/connect.influx.password`` supplies ``connect.influx.password``; SecureStrings are
decrypted. Values go through Powertools Parameters with a cache lifetime
(``CONNECT_INFLUX_SSM_MAX_AGE`` seconds, default 300) so a rotated password is picked up without a
redeploy. boto3 is imported only here, and this module only when the path is set.

The read happens inside an invocation (cold start, or a refresh once the cache expired), so it
ends before the invocation's deadline like every other wait (``handler.aws_calls``): a Parameter
Store that cannot be reached is a ``ConfigError`` saying connect or read, in time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from handler.errors import ConfigError
from handler.settings import BY_KEY, SSM_MAX_AGE_ENV, SSM_PATH_ENV

log = logging.getLogger(__name__)

PATH_ENV = SSM_PATH_ENV
MAX_AGE_ENV = SSM_MAX_AGE_ENV
DEFAULT_MAX_AGE = 300


def max_age(environ: Mapping[str, str]) -> int:
    raw = environ.get(MAX_AGE_ENV, "") or str(DEFAULT_MAX_AGE)
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError.invalid([f"{MAX_AGE_ENV} = {raw!r} must be a whole number of seconds"]) from None
    if value < 0:
        raise ConfigError.invalid([f"{MAX_AGE_ENV} = {raw!r} must be at least 0"])
    return value


_provider: Any = None  # one Powertools SSM provider: its cache lives as long as the process


def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_SSM") or os.environ.get("AWS_ENDPOINT_URL") or None


def _get_provider() -> Any:
    """A Powertools SSMProvider whose fetches (cache misses only) go through ``aws_calls``."""
    global _provider
    if _provider is None:
        from aws_lambda_powertools.utilities.parameters import SSMProvider

        from handler import aws_calls

        class BoundedSSMProvider(SSMProvider):
            def _get_multiple(self, path: str, decrypt: bool | None = None, recursive: bool = False,
                              **sdk_options: Any) -> dict[str, str]:
                def read(client: Any) -> dict[str, str]:
                    self.client = client
                    got: dict[str, str] = SSMProvider._get_multiple(self, path, decrypt, recursive, **sdk_options)
                    return got

                return aws_calls.call("ssm", "Parameter Store", "reading Parameter Store", read,
                                      endpoint=_endpoint())

        _provider = BoundedSSMProvider(boto3_client=aws_calls.usual_client("ssm", endpoint=_endpoint()))
    return _provider


def fetch(path: str, age: int, *, force: bool = False) -> dict[str, str]:
    """Known setting keys under ``path`` (one level), decrypted; cached for ``age`` seconds."""
    from aws_lambda_powertools.utilities import parameters

    try:
        raw = _get_provider().get_multiple(path.rstrip("/"), recursive=False, decrypt=True, max_age=age,
                                           force_fetch=force, raise_on_transform_error=False)
    except parameters.exceptions.GetParameterError as err:  # carries the message of what failed
        raise ConfigError(f"cannot read Parameter Store path {path!r} ({PATH_ENV}): {err}") from None
    out: dict[str, str] = {}
    unknown = []
    for name, value in raw.items():
        key = name.rsplit("/", 1)[-1]
        if key in BY_KEY:
            out[key] = str(value)
        else:
            unknown.append(key)
    if unknown:
        log.warning("Parameter Store path %s holds parameters that are not settings (ignored): %s",
                    path, ", ".join(sorted(unknown)))
    return out
