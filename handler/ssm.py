"""Settings from Parameter Store: every parameter under ``CONNECT_INFLUX_SSM_PATH`` named by a key.

``/some/path/connect.influx.password`` supplies ``connect.influx.password``; SecureStrings are
decrypted. Values go through Powertools Parameters with a cache lifetime
(``CONNECT_INFLUX_SSM_MAX_AGE`` seconds, default 300) so a rotated password is picked up without a
redeploy. boto3 is imported only here, and this module only when the path is set.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from handler.errors import ConfigError
from handler.settings import BY_KEY

log = logging.getLogger(__name__)

PATH_ENV = "CONNECT_INFLUX_SSM_PATH"
MAX_AGE_ENV = "CONNECT_INFLUX_SSM_MAX_AGE"
DEFAULT_MAX_AGE = 300


def max_age(environ: Mapping[str, str]) -> int:
    raw = environ.get(MAX_AGE_ENV, "") or str(DEFAULT_MAX_AGE)
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"invalid settings:\n- {MAX_AGE_ENV} = {raw!r} must be a whole number of seconds") from None
    if value < 0:
        raise ConfigError(f"invalid settings:\n- {MAX_AGE_ENV} = {raw!r} must be at least 0")
    return value


def fetch(path: str, age: int, *, force: bool = False) -> dict[str, str]:
    """Known setting keys under ``path`` (one level), decrypted; cached for ``age`` seconds."""
    from aws_lambda_powertools.utilities import parameters

    try:
        raw = parameters.get_parameters(path.rstrip("/"), recursive=False, decrypt=True, max_age=age,
                                        force_fetch=force, raise_on_transform_error=False)
    except parameters.exceptions.GetParameterError as err:
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
