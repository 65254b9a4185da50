"""Settings: the original connector's keys, from defaults < Parameter Store < environment, validated once.

A key ``connect.influx.kcql`` is the environment variable ``CONNECT_INFLUX_KCQL``. Every problem
is gathered into one ``ConfigError`` naming the key, its environment name and the bad value;
secrets are never shown (``[hidden]``, as the original connector's startup log prints them).

Each setting is declared once, as a field of ``Settings`` carrying its key, default text, parser
and line of docs (``_setting``); ``SPECS``, which loading, the printed settings and the README's
table read, is derived from those fields, so a name or default cannot differ between them.
"""

from __future__ import annotations

import difflib
import logging
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from handler.decode import PayloadKind
from handler.errors import ConfigError, ErrorPolicy, env_name
from handler.redact import mask_url
from handler.topics import KEY as TOPICS_KEY
from handler.topics import parse_topics, unread_topics, unread_topics_message

if TYPE_CHECKING:  # only for annotations: importing kcql pulls in pyparsing
    from kcql import Statement

log = logging.getLogger(__name__)

E = TypeVar("E", bound=StrEnum)

# Environment variables read before the settings (by the runtime, for Parameter Store): not keys.
SSM_PATH_ENV = "CONNECT_INFLUX_SSM_PATH"
SSM_MAX_AGE_ENV = "CONNECT_INFLUX_SSM_MAX_AGE"
RUNTIME_ENV = (SSM_PATH_ENV, SSM_MAX_AGE_ENV)
ENV_PREFIX = "CONNECT_"

Source = Literal["env", "ssm", "default"]  # where a setting's value came from


class InfluxVersion(StrEnum):
    """The InfluxDB write API: AUTO is resolved while loading (2 with a token or bucket, else 1)."""

    AUTO = "AUTO"
    V1 = "1"
    V2 = "2"
    V3 = "3"


class Consistency(StrEnum):
    """The 1.x write consistency (``consistency=``), acted on by Enterprise clusters."""

    ALL = "ALL"
    ANY = "ANY"
    ONE = "ONE"
    QUORUM = "QUORUM"


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


def _choice(options: type[E], upper: bool = True) -> Callable[[str], E]:
    """A member of the closed set ``options``, read in any case."""
    def parse(text: str) -> E:
        value = text.strip().upper() if upper else text.strip().lower()
        try:
            return options(value)
        except ValueError:
            raise ValueError(f"must be one of {', '.join(options)}") from None

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


def _text(text: str) -> str:
    return text.strip()


def _topics(text: str) -> tuple[str, ...]:
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

    @property
    def named(self) -> str:
        """``key (ENV_NAME)``: how a problem names the setting, so it is found either way."""
        return f"{self.key} ({self.env})"


def _setting(key: str, parse: Callable[[str], Any], doc: str, default: str | None = None, *,
             secret: bool = False, required: bool = False) -> Any:
    """A field of ``Settings`` declaring one setting. Its default as a value is the default text
    parsed, so the two cannot disagree; a required setting has none. Secrets and URLs (which may
    carry ``user:password``) stay out of the repr."""
    spec = Spec(key, "", default, parse, doc, secret, required)
    shown = not (secret or parse is _url)
    metadata = {"spec": spec}
    if required:
        return field(repr=shown, metadata=metadata)
    return field(default=None if default is None else parse(default), repr=shown, metadata=metadata)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The validated settings; each field declares its setting, in the order they are listed."""

    kcql: str = _setting("connect.influx.kcql", _text, "KCQL statements, `;`-separated", required=True)
    url: str = _setting("connect.influx.url", _url, "InfluxDB URL, e.g. `http://influx:8086`", required=True)
    db: str | None = _setting("connect.influx.db", _text,
                              "InfluxDB 1.x or 3.x database (required for 1.x; also the 2.x bucket's default)")
    version: InfluxVersion = _setting(  # noqa: RUF009 - a dataclasses.field, as every _setting is
        "connect.influx.version", _choice(InfluxVersion),
        "target API: 1 (`/write`), 2 (`/api/v2/write` via influxdb-client), 3 (`/api/v3/write_lp`); auto = 2 "
        "when a token or bucket is set, else 1", "auto")
    org: str | None = _setting("connect.influx.org", _text, "2.x/Cloud organization")
    bucket: str | None = _setting("connect.influx.bucket", _text, "2.x bucket, or 3.x database (default: db)")
    token: str | None = _setting("connect.influx.token", _text,
                                 "2.x/3.x API token, sent as `Token` (2.x) or `Bearer` (3.x); 1.8+: `user:password`",
                                 secret=True)
    ssl_verify: bool = _setting("connect.influx.ssl.verify", _bool, "verify the server's TLS certificate", "true")
    ssl_ca_bundle: str | None = _setting("connect.influx.ssl.ca.bundle", _text, "CA bundle file for TLS verification")
    gzip: bool = _setting("connect.influx.gzip", _bool, "gzip request bodies", "false")
    username: str | None = _setting("connect.influx.username", _text, "user name (1.x Basic auth)")
    password: str | None = _setting("connect.influx.password", _text, "password (1.x Basic auth)", secret=True)
    secret_id: str | None = _setting(
        "connect.influx.secret.id", _text,
        "AWS Secrets Manager secret (name or ARN) holding JSON `username`/`password` (1.x) or `token` (2.x/3.x)")
    secret_max_age: int = _setting("connect.influx.secret.max.age", _int(0),
                                   "seconds the secret is cached before it is read again (a refused write "
                                   "re-reads it at once)", "300")
    retention_policy: str | None = _setting("connect.influx.retention.policy", _text, "1.x retention policy (`rp`)",
                                            "autogen")
    consistency_level: Consistency = _setting(  # noqa: RUF009
        "connect.influx.consistency.level", _choice(Consistency),
        "1.x write consistency: ALL, ANY, ONE, QUORUM (acted on by Enterprise clusters)", "ALL")
    accept_partial: bool = _setting("connect.influx.accept.partial", _bool,
                                    "3.x: keep the valid lines of a request that has invalid ones", "true")
    no_sync: bool = _setting("connect.influx.no.sync", _bool,
                             "3.x: acknowledge writes before the write-ahead log is persisted", "false")
    error_policy: ErrorPolicy = _setting(  # noqa: RUF009
        "connect.influx.error.policy", _choice(ErrorPolicy), "THROW, RETRY or NOOP (see Error policies)", "THROW")
    max_retries: int = _setting("connect.influx.max.retries", _int(-1),
                                "the event source's MaximumRetryAttempts (set by the SAM template; -1 = infinite)",
                                "10")
    retry_interval_ms: int = _setting(
        "connect.influx.retry.interval", _int(0),
        "ms between in-invocation write retries under RETRY (capped by the remaining time)", "60000")
    progress_enabled: bool = _setting("connect.progress.enabled", _bool, "log per-topic record counts", "false")
    batch_lines: int = _setting("connect.influx.batch.lines", _int(1), "most lines per write request", "5000")
    connect_timeout_ms: int = _setting("connect.influx.connect.timeout.ms", _int(1), "HTTP connect timeout", "5000")
    read_timeout_ms: int = _setting("connect.influx.read.timeout.ms", _int(1),
                                    "HTTP read timeout (also capped by the invocation's remaining time)", "30000")
    value_format: PayloadKind = _setting(  # noqa: RUF009
        "connect.influx.value.format", _choice(PayloadKind, upper=False),
        "force the value kind: auto, json, avro, protobuf, connect, string, lineprotocol", "auto")
    key_format: PayloadKind = _setting(  # noqa: RUF009
        "connect.influx.key.format", _choice(PayloadKind, upper=False),
        "force the key kind: auto, json, avro, protobuf, connect, string", "auto")
    schema_registry_url: str | None = _setting("connect.influx.schema.registry.url", _url,
                                               "Confluent Schema Registry URL (Avro with magic byte 0)")
    schema_registry_user_info: str | None = _setting("connect.influx.schema.registry.basic.auth.user.info", _text,
                                                     "`user:password` for the registry's Basic auth", secret=True)
    glue_region: str | None = _setting(
        "connect.influx.glue.region", _text,
        "AWS region of the Glue Schema Registry (Avro with magic byte 3); default: the function's region")
    value_avro_schema: str | None = _setting("connect.influx.value.avro.schema", _text,
                                             "Avro schema for unframed values: inline JSON or a file path")
    key_avro_schema: str | None = _setting("connect.influx.key.avro.schema", _text,
                                           "Avro schema for unframed keys: inline JSON or a file path")
    topics: tuple[str, ...] | None = _setting(
        TOPICS_KEY, _topics,
        "the topics the event source delivers, comma-separated (set by the SAM template); each must be read "
        "by a KCQL statement")
    sources: Mapping[str, Source] = field(default_factory=dict, repr=False)  # key → where its value came from
    statements: tuple[Statement, ...] = field(default=(), repr=False)  # the parsed KCQL

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


SPECS: tuple[Spec, ...] = tuple(replace(f.metadata["spec"], attr=f.name) for f in fields(Settings)
                                if "spec" in f.metadata)
BY_KEY = {s.key: s for s in SPECS}
_BY_ATTR = {s.attr: s for s in SPECS}


def _named(attr: str) -> str:
    return _BY_ATTR[attr].named


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
    sources: dict[str, Source] = {}
    for spec in SPECS:
        raw: str | None = None
        source: Source = "default"
        if spec.env in environ and environ[spec.env] != "":
            raw, source = environ[spec.env], "env"
        elif ssm is not None and spec.key in ssm:
            raw, source = ssm[spec.key], "ssm"
        elif spec.default is not None:
            raw = spec.default
        if raw is None:
            if spec.required:
                problems.append(f"{spec.named} is required: {spec.doc}")
            values[spec.attr] = None
            continue
        try:
            values[spec.attr] = spec.parse(raw)
        except ValueError as err:
            shown = "[hidden]" if spec.secret else repr(mask_url(raw) if spec.parse is _url else raw)
            problems.append(f"{spec.named} = {shown} {err}")
            continue
        sources[spec.key] = source
    version = values.get("version") or InfluxVersion.AUTO
    if version is InfluxVersion.AUTO:
        version = InfluxVersion.V2 if (values.get("token") or values.get("bucket")) else InfluxVersion.V1
        values["version"] = version
    if version is InfluxVersion.V1 and not values.get("db"):
        problems.append(f"{_named('db')} is required for InfluxDB 1.x")
    if version in (InfluxVersion.V2, InfluxVersion.V3) and not (values.get("bucket") or values.get("db")):
        problems.append(f"{_named('bucket')} is required for InfluxDB {version}.x")
    if version is InfluxVersion.V2 and not values.get("org") and ":" not in (values.get("token") or ""):
        problems.append(f"{_named('org')} is required for InfluxDB 2.x")
    if values.get("ssl_ca_bundle"):
        import os

        if not os.path.isfile(values["ssl_ca_bundle"]):
            problems.append(f"{_named('ssl_ca_bundle')} = {values['ssl_ca_bundle']!r} is not a readable file")
    if values.get("kcql"):
        from kcql import KcqlError, parse

        try:
            values["statements"] = parse(values["kcql"])
        except KcqlError as err:
            problems.append(f"{_named('kcql')} is not valid KCQL:\n{err}")
        else:
            if version is not InfluxVersion.V1:
                with_rp = [st.text for st in values["statements"] if st.retention_policy is not None]
                if with_rp:
                    problems.append(f"{_named('kcql')}: RETENTION POLICY applies to InfluxDB 1.x only; for "
                                    f"InfluxDB {version}.x name the bucket or database with DATABASE: "
                                    + "; ".join(with_rp))
            unread = unread_topics(values.get("topics") or (), values["statements"])
            if unread:
                problems.append(unread_topics_message(unread, values["statements"]))
    if problems:
        raise ConfigError.invalid(problems)
    return Settings(**values, sources=sources)
