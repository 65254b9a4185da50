"""Settings: the original connector's keys, from defaults < Parameter Store < environment, validated once.

A key ``connect.influx.kcql`` is the environment variable ``CONNECT_INFLUX_KCQL``. Every problem
is gathered into one ``ConfigError`` naming the key, its environment name and the bad value;
secrets are never shown (``[hidden]``, as the original connector's startup log prints them).
"""

from __future__ import annotations

import difflib
import logging
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from handler.errors import ConfigError

log = logging.getLogger(__name__)

POLICIES = ("THROW", "RETRY", "NOOP")
CONSISTENCY = ("ALL", "ANY", "ONE", "QUORUM")
PAYLOAD_KINDS = ("auto", "json", "avro", "connect", "string")


def env_name(key: str) -> str:
    return key.upper().replace(".", "_")


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _int(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError("must be a whole number") from None
        if value < minimum:
            raise ValueError(f"must be at least {minimum}")
        return value

    return parse


def _choice(options: tuple[str, ...], upper: bool = True) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().upper() if upper else text.strip().lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return parse


def _url(text: str) -> str:
    value = text.strip().rstrip("/")
    hint = (" (a password holding '/', '?' or '#' ends the host part early: percent-encode them as "
            "%2F, %3F, %23)") if _hides_host(value) else ""
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"has an invalid host or port{hint}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL with a host{hint}")
    return value


def _hides_host(url: str) -> bool:
    """True when an ``@`` comes after the first ``/``, ``?`` or ``#`` past ``://``: a password
    holding one of them, unencoded, so a URL parser would take part of it for the host."""
    rest = url.partition("://")[2]
    at = rest.rfind("@")
    end = min((i for i in (rest.find(c) for c in "/?#") if i != -1), default=-1)
    return at != -1 and end != -1 and end < at


# Query parameters that carry credentials (InfluxDB 1.x reads ``u``/``p``; tokens by other names).
_SECRET_QUERY = re.compile(r"(?i)([?&;](?:p|password|pass|pwd|token|access_token|api_key|apikey|secret)=)[^&;#]*")


_USER_RE = re.compile(r"[A-Za-z0-9._~%!$&'()*+,;=-]+")  # what RFC 3986 allows in a user name


def mask_url(text: str) -> str:
    """The URL with its credentials replaced by ``[hidden]``, for logs and errors.

    Parsing is not trusted to find them: a password holding ``/``, ``?``, ``#`` or ``@`` makes a
    URL parser take part of it for the host or path. So everything between ``://`` (or the
    start) and the *last* ``@`` is user information; only a user name that looks like one (no
    ``/?#`` in it) is kept before the ``:``. Credential query parameters (``p=``, ``token=``, ...)
    are hidden too. Hiding too much is harmless; showing a secret is not.
    """
    at = text.rfind("@")
    if at != -1:
        scheme_end = text.find("://")
        start = scheme_end + 3 if scheme_end != -1 and scheme_end < at else 0
        user, colon, _ = text[start:at].partition(":")
        keep = f"{user}:" if colon and _USER_RE.fullmatch(user) else ""
        text = f"{text[:start]}{keep}[hidden]{text[at:]}"
    if "=" in text:
        text = _SECRET_QUERY.sub(r"\1[hidden]", text)
    return text


def _text(text: str) -> str:
    return text.strip()


def _topics(text: str) -> tuple[str, ...]:
    from handler.topics import parse_topics

    return tuple(parse_topics(text))


@dataclass(frozen=True)
class Spec:
    """One setting: its key, default, parser, whether it is secret, and a line of docs."""

    key: str
    attr: str
    default: str | None
    parse: Callable[[str], Any]
    doc: str
    secret: bool = False
    required: bool = False

    @property
    def env(self) -> str:
        return env_name(self.key)


SPECS: tuple[Spec, ...] = (
    Spec("connect.influx.kcql", "kcql", None, _text, "KCQL statements, `;`-separated", required=True),
    Spec("connect.influx.url", "url", None, _url, "InfluxDB URL, e.g. `http://influx:8086`", required=True),
    Spec("connect.influx.db", "db", None, _text,
         "InfluxDB 1.x database (required for 1.x; the bucket's default for 3.x)"),
    Spec("connect.influx.version", "version", "auto", _choice(("AUTO", "1", "2", "3")),
         "target API: 1 (`/write`), 2 or 3 (`/api/v2/write` via influxdb-client); auto = 2 when a token or "
         "bucket is set, else 1"),
    Spec("connect.influx.org", "org", None, _text, "2.x/Cloud organization"),
    Spec("connect.influx.bucket", "bucket", None, _text, "2.x/3.x bucket (3.x: the database; default: db)"),
    Spec("connect.influx.token", "token", None, _text, "2.x/3.x API token (1.8+: `user:password`)", secret=True),
    Spec("connect.influx.ssl.verify", "ssl_verify", "true", _bool, "verify the server's TLS certificate"),
    Spec("connect.influx.ssl.ca.bundle", "ssl_ca_bundle", None, _text, "CA bundle file for TLS verification"),
    Spec("connect.influx.gzip", "gzip", "false", _bool, "gzip request bodies"),
    Spec("connect.influx.username", "username", None, _text, "user name (1.x Basic auth)"),
    Spec("connect.influx.password", "password", None, _text, "password (1.x Basic auth)", secret=True),
    Spec("connect.influx.retention.policy", "retention_policy", "autogen", _text,
         "1.x retention policy (`rp`)"),
    Spec("connect.influx.consistency.level", "consistency_level", "ALL", _choice(CONSISTENCY),
         "1.x write consistency: ALL, ANY, ONE, QUORUM (acted on by Enterprise clusters)"),
    Spec("connect.influx.error.policy", "error_policy", "THROW", _choice(POLICIES),
         "THROW, RETRY or NOOP (see Error policies)"),
    Spec("connect.influx.max.retries", "max_retries", "10", _int(-1),
         "the event source's MaximumRetryAttempts (set by the SAM template; -1 = infinite)"),
    Spec("connect.influx.retry.interval", "retry_interval_ms", "60000", _int(0),
         "ms between in-invocation write retries under RETRY (capped by the remaining time)"),
    Spec("connect.progress.enabled", "progress_enabled", "false", _bool, "log per-topic record counts"),
    Spec("connect.influx.batch.lines", "batch_lines", "5000", _int(1), "lines per write request"),
    Spec("connect.influx.connect.timeout.ms", "connect_timeout_ms", "5000", _int(1),
         "HTTP connect timeout"),
    Spec("connect.influx.read.timeout.ms", "read_timeout_ms", "30000", _int(1),
         "HTTP read timeout (also capped by the invocation's remaining time)"),
    Spec("connect.influx.value.format", "value_format", "auto", _choice(PAYLOAD_KINDS, upper=False),
         "force the value kind: auto, json, avro, connect, string"),
    Spec("connect.influx.key.format", "key_format", "auto", _choice(PAYLOAD_KINDS, upper=False),
         "force the key kind: auto, json, avro, connect, string"),
    Spec("connect.influx.schema.registry.url", "schema_registry_url", None, _url,
         "Confluent Schema Registry URL (Avro with magic byte 0)"),
    Spec("connect.influx.schema.registry.basic.auth.user.info", "schema_registry_user_info", None, _text,
         "`user:password` for the registry's Basic auth", secret=True),
    Spec("connect.influx.glue.region", "glue_region", None, _text,
         "AWS region of the Glue Schema Registry (Avro with magic byte 3); default: the function's region"),
    Spec("connect.influx.value.avro.schema", "value_avro_schema", None, _text,
         "Avro schema for unframed values: inline JSON or a file path"),
    Spec("connect.influx.key.avro.schema", "key_avro_schema", None, _text,
         "Avro schema for unframed keys: inline JSON or a file path"),
    Spec("connect.influx.topics", "topics", None, _topics,
         "the topics the event source delivers, comma-separated (set by the SAM template); each must be read "
         "by a KCQL statement"),
)
BY_KEY = {s.key: s for s in SPECS}


@dataclass(frozen=True)
class Settings:
    kcql: str
    url: str = field(repr=False)  # may carry user:password
    db: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    retention_policy: str | None = "autogen"
    consistency_level: str = "ALL"
    error_policy: str = "THROW"
    max_retries: int = 10
    retry_interval_ms: int = 60000
    progress_enabled: bool = False
    version: str = "AUTO"
    org: str | None = None
    bucket: str | None = None
    token: str | None = field(default=None, repr=False)
    ssl_verify: bool = True
    ssl_ca_bundle: str | None = None
    gzip: bool = False
    batch_lines: int = 5000
    connect_timeout_ms: int = 5000
    read_timeout_ms: int = 30000
    value_format: str = "auto"
    key_format: str = "auto"
    schema_registry_url: str | None = field(default=None, repr=False)  # may carry user:password
    schema_registry_user_info: str | None = field(default=None, repr=False)
    glue_region: str | None = None
    value_avro_schema: str | None = None
    key_avro_schema: str | None = None
    topics: tuple[str, ...] | None = None
    sources: Mapping[str, str] = field(default_factory=dict, repr=False)  # key → env | ssm | default
    statements: tuple[Any, ...] = field(default=(), repr=False)  # the parsed KCQL (kcql.Statement)

    def describe(self) -> list[str]:
        """``key = value (source)`` lines with secrets masked, like the original connector's startup log."""
        lines = []
        for spec in SPECS:
            value = getattr(self, spec.attr)
            shown = "[hidden]" if spec.secret and value else value
            if spec.parse is _url and isinstance(value, str):
                shown = mask_url(value)
            elif isinstance(value, tuple):
                shown = ",".join(value)
            lines.append(f"{spec.key} = {shown} ({self.sources.get(spec.key, 'default')})")
        return lines


# Environment variables read before the settings (by the runtime, for Parameter Store): not keys.
RUNTIME_ENV = ("CONNECT_INFLUX_SSM_PATH", "CONNECT_INFLUX_SSM_MAX_AGE")
ENV_PREFIX = "CONNECT_"


def unknown_env(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``CONNECT_*`` variables (in any case) that no setting reads, each with the closest name
    that would be read (None when nothing is close): a mistyped name is otherwise ignored in
    silence and its setting keeps its default."""
    known = [spec.env for spec in SPECS] + list(RUNTIME_ENV)
    out: list[tuple[str, str | None]] = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or name in known:
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.75)
        out.append((name, close[0] if close else None))
    return out


def warn_unknown_env(environ: Mapping[str, str]) -> None:
    """One warning per ``CONNECT_*`` variable that is not a setting, naming the closest one."""
    for name, close in unknown_env(environ):
        hint = f"; did you mean {close}?" if close else ""
        log.warning("environment variable %s is not a setting and is ignored%s", name, hint,
                    extra={"variable": name, "closest": close})


def load(environ: Mapping[str, str], ssm: Mapping[str, str] | None = None) -> Settings:
    """Build and validate the settings; raise one ConfigError listing every problem.

    ``ssm`` holds Parameter Store values by setting key; a non-empty environment variable wins.
    Environment variables that look like settings but are none are warned about (see
    ``unknown_env``): this runs at cold start and whenever Parameter Store changes the settings.
    """
    warn_unknown_env(environ)
    problems: list[str] = []
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in SPECS:
        raw: str | None = None
        source = "default"
        if spec.env in environ and environ[spec.env] != "":
            raw, source = environ[spec.env], "env"
        elif ssm is not None and spec.key in ssm:
            raw, source = ssm[spec.key], "ssm"
        elif spec.default is not None:
            raw = spec.default
        if raw is None:
            if spec.required:
                problems.append(f"{spec.key} ({spec.env}) is required: {spec.doc}")
            values[spec.attr] = None
            continue
        try:
            values[spec.attr] = spec.parse(raw)
        except ValueError as err:
            shown = "[hidden]" if spec.secret else repr(mask_url(raw) if spec.parse is _url else raw)
            problems.append(f"{spec.key} ({spec.env}) = {shown} {err}")
            continue
        sources[spec.key] = source
    version = values.get("version") or "AUTO"
    if version == "AUTO":
        version = "2" if (values.get("token") or values.get("bucket")) else "1"
        values["version"] = version
    if version == "1" and not values.get("db"):
        problems.append("connect.influx.db (CONNECT_INFLUX_DB) is required for InfluxDB 1.x")
    if version in ("2", "3") and not (values.get("bucket") or values.get("db")):
        problems.append(f"connect.influx.bucket (CONNECT_INFLUX_BUCKET) is required for InfluxDB {version}.x")
    if version == "2" and not values.get("org") and ":" not in (values.get("token") or ""):
        problems.append("connect.influx.org (CONNECT_INFLUX_ORG) is required for InfluxDB 2.x")
    if values.get("ssl_ca_bundle"):
        import os

        if not os.path.isfile(values["ssl_ca_bundle"]):
            problems.append(f"connect.influx.ssl.ca.bundle (CONNECT_INFLUX_SSL_CA_BUNDLE) = "
                            f"{values['ssl_ca_bundle']!r} is not a readable file")
    if values.get("kcql"):
        from kcql import KcqlError, parse

        try:
            values["statements"] = parse(values["kcql"])
        except KcqlError as err:
            problems.append(f"connect.influx.kcql (CONNECT_INFLUX_KCQL) is not valid KCQL:\n{err}")
        else:
            from handler.topics import unread_topics, unread_topics_message

            unread = unread_topics(values.get("topics") or (), values["statements"])
            if unread:
                problems.append(unread_topics_message(unread, values["statements"]))
    if problems:
        raise ConfigError("invalid settings:\n- " + "\n- ".join(problems))
    return Settings(**values, sources=sources)
