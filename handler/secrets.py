"""Credentials from AWS Secrets Manager: ``connect.influx.secret.id`` names a JSON secret.

The secret holds ``username`` and ``password`` (InfluxDB 1.x Basic auth) or ``token`` (2.x, 3.x);
other keys (a rotation function's ``host``, ``engine``, ...) are ignored. It is read through
Powertools Parameters' ``SecretsProvider``, whose cache keeps it for
``connect.influx.secret.max.age`` seconds, so a rotated secret is picked up without a redeploy; a
refused write (401/403) reads it afresh once (``force``), before the write fails.

The read happens inside an invocation, so it ends before the invocation's deadline like every
other wait (``handler.aws_calls``): a Secrets Manager that cannot be reached is a ``ConfigError``
saying connect or read, in time. The secret's values never reach a message, a log line or the
printed settings: errors name the secret and the keys it lacks, never what it holds. boto3 is
imported only here, and this module only when the setting is set.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from handler.errors import ConfigError
from handler.settings import InfluxVersion

SETTING = "connect.influx.secret.id (CONNECT_INFLUX_SECRET_ID)"


@dataclass(frozen=True)
class Credentials:
    """What a secret supplies: Basic auth (1.x) or a token (2.x, 3.x); never shown by repr."""

    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)


_provider: Any = None  # one Powertools provider: its cache lives as long as the process


def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_SECRETS_MANAGER") or os.environ.get("AWS_ENDPOINT_URL") or None


# botocore logs every response body at DEBUG, a secret's value included: its parser's logger is
# held at INFO, so that a debug log level (AWS_LAMBDA_LOG_LEVEL=DEBUG) never shows the secret.
_BODY_LOGGER = "botocore.parsers"


def _get_provider() -> Any:
    """A Powertools SecretsProvider whose fetches (cache misses only) go through ``aws_calls``."""
    global _provider
    if _provider is None:
        body_log = logging.getLogger(_BODY_LOGGER)
        if body_log.getEffectiveLevel() < logging.INFO:
            body_log.setLevel(logging.INFO)
        from aws_lambda_powertools.utilities.parameters import SecretsProvider

        from handler import aws_calls

        class BoundedSecretsProvider(SecretsProvider):
            def _get(self, name: str, **sdk_options: Any) -> str | bytes:
                def read(client: Any) -> str | bytes:
                    self.client = client
                    got: str | bytes = SecretsProvider._get(self, name, **sdk_options)
                    return got

                return aws_calls.call("secretsmanager", "Secrets Manager", "reading Secrets Manager", read,
                                      endpoint=_endpoint())

        _provider = BoundedSecretsProvider(boto3_client=aws_calls.usual_client("secretsmanager",
                                                                              endpoint=_endpoint()))
    return _provider


def clear_cache() -> None:
    """Forget the provider and its cache (tests)."""
    global _provider
    _provider = None


def fetch(secret_id: str, version: InfluxVersion, max_age: int, *, force: bool = False) -> Credentials:
    """The credentials in ``secret_id`` for ``version``, cached for ``max_age`` seconds.

    ``ConfigError`` when it cannot be read, is not a JSON object of strings, or lacks what the
    version needs (``username`` and ``password`` for 1.x, ``token`` otherwise).
    """
    from aws_lambda_powertools.utilities import parameters

    try:
        raw = _get_provider().get(secret_id, max_age=max_age, force_fetch=force)
    except parameters.exceptions.GetParameterError as err:  # carries the message of what failed
        raise ConfigError(f"cannot read the secret {secret_id!r} ({SETTING}) from Secrets Manager: {err}") from None
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise ConfigError(f"the secret {secret_id!r} ({SETTING}) is not a JSON object: it should hold "
                          '{"username": ..., "password": ...} (InfluxDB 1.x) or {"token": ...} (2.x, 3.x)')
    wanted = ("username", "password") if version is InfluxVersion.V1 else ("token",)
    missing = [k for k in wanted if not isinstance(doc.get(k), str) or not doc.get(k)]
    if missing:
        held = ", ".join(sorted(str(k) for k in doc)) or "nothing"
        hint = ("; for a token set connect.influx.version to 2 or 3 (auto picks 1 without a token or bucket "
                "setting)") if version is InfluxVersion.V1 and "token" in doc else ""
        raise ConfigError(f"the secret {secret_id!r} ({SETTING}) has no {' or '.join(repr(k) for k in missing)} "
                          f"(InfluxDB {version}.x needs {' and '.join(wanted)}); it holds the keys: {held}{hint}")
    if version is InfluxVersion.V1:
        return Credentials(username=doc["username"], password=doc["password"])
    return Credentials(token=doc["token"])
