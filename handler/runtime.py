"""Cold-start wiring: settings → plan → writer, built once per process and kept warm.

With ``CONNECT_INFLUX_SSM_PATH`` the settings are re-read from Parameter Store (through
Powertools' cache, so at most once per ``CONNECT_INFLUX_SSM_MAX_AGE``) and the runtime is rebuilt
when they change. With ``connect.influx.secret.id`` the credentials come from Secrets Manager
(``handler.secrets``, cached for ``connect.influx.secret.max.age``) and replace the settings' own;
they are checked at each invocation (a cache hit costs nothing) and installed when rotated. An
authentication failure (401/403) forces one fresh read of both before the write fails.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypedDict

from handler.decode import Decoder
from handler.errors import ConfigError
from handler.mapping import DEFAULT_ROUTE, Plan, Route
from handler.settings import SSM_PATH_ENV, InfluxVersion, Settings, load
from handler.write.protocol import LineProtocolWriter, V1Protocol
from handler.write.schedule import Writer
from handler.write.transport import HttpTarget, url_credentials

if TYPE_CHECKING:  # imported when a secret is set: most functions have none
    from handler.secrets import Credentials

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    plan: Plan
    writer: Writer
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)
    ssm_values: dict[str, str] | None = field(default=None, repr=False)
    credentials: Credentials | None = field(default=None, repr=False)  # from Secrets Manager

    @property
    def watched(self) -> bool:
        """Whether each invocation checks Parameter Store or Secrets Manager for changes."""
        return self.ssm_values is not None or self.credentials is not None


def make_writer(settings: Settings, routes: Sequence[Route] = (DEFAULT_ROUTE,)) -> Writer:
    """The writer the settings describe: transport, the server version's protocol, chunk size,
    and one protocol per route (``Plan.routes``: the databases statements name), all sharing
    the first one's connection."""
    first = _protocol(settings, routes[0])
    others = [_protocol(settings, route, first) for route in routes[1:]]
    return Writer(first, chunk_lines=settings.batch_lines, routes=[first, *others])


class _Transport(TypedDict):
    connect_timeout: float
    read_timeout: float
    verify: bool
    ca_bundle: str | None
    gzip: bool


def _protocol(settings: Settings, route: Route, shared: LineProtocolWriter | None = None) -> LineProtocolWriter:
    """The protocol writing to ``route`` (on ``shared``'s transport when given). A route's database
    replaces the settings' one; a statement naming a database without a retention policy writes to
    that database's default policy, not to ``connect.influx.retention.policy``."""
    transport = _Transport(connect_timeout=settings.connect_timeout_ms / 1000,
                           read_timeout=settings.read_timeout_ms / 1000, verify=settings.ssl_verify,
                           ca_bundle=settings.ssl_ca_bundle, gzip=settings.gzip)
    database, rp = route
    target: Any = getattr(shared, "target", None)
    # load() refuses a target without its database or bucket, so the ``or ""`` never applies.
    if settings.version is InfluxVersion.V3:
        from handler.write.protocol import V3Protocol

        return V3Protocol(target or HttpTarget(settings.url, **transport),
                          db=database or settings.bucket or settings.db or "",
                          accept_partial=settings.accept_partial, no_sync=settings.no_sync, token=settings.token)
    if settings.version is InfluxVersion.V2:
        from handler.write.protocol import V2Protocol
        from handler.write.transport import ClientTarget

        return V2Protocol(target or ClientTarget(settings.url, token=settings.token, **transport),
                          bucket=database or settings.bucket or settings.db or "", org=settings.org)
    username, password = settings.username, settings.password
    if username is None:  # credentials in the URL (http://user:password@host:8086) are Basic auth too
        username, password = url_credentials(settings.url) or (None, None)
    if database is None:
        database, rp = settings.db, rp or settings.retention_policy
    return V1Protocol(target or HttpTarget(settings.url, **transport), db=database or "", rp=rp,
                      consistency=settings.consistency_level, username=username, password=password)


def _ssm_values(env: Mapping[str, str], force: bool = False) -> dict[str, str] | None:
    path = env.get(SSM_PATH_ENV)
    if not path:
        return None
    from handler import ssm

    return ssm.fetch(path, ssm.max_age(env), force=force)


def _secret(settings: Settings, force: bool = False) -> Credentials | None:
    if not settings.secret_id:
        return None
    from handler import secrets

    return secrets.fetch(settings.secret_id, settings.version, settings.secret_max_age, force=force)


def _with_credentials(settings: Settings, creds: Credentials | None) -> Settings:
    """The settings the writer uses: the secret's credentials in place of the settings' own. The
    runtime keeps the settings as loaded, so the printed settings never hold the secret's values."""
    if creds is None:
        return settings
    if creds.token is not None:
        return replace(settings, token=creds.token)
    return replace(settings, username=creds.username, password=creds.password)


def build(environ: Mapping[str, str] | None = None, ssm_values: dict[str, str] | None = None) -> Runtime:
    env = dict(os.environ if environ is None else environ)
    if ssm_values is None:
        ssm_values = _ssm_values(env)
    settings = load(env, ssm_values)
    creds = _secret(settings)
    plan = Plan(settings.statements, Decoder.from_settings(settings))
    writer = make_writer(_with_credentials(settings, creds), plan.routes)
    rt = Runtime(settings, plan, writer, env, ssm_values, creds)
    if rt.watched:
        writer.refresh_credentials = lambda: _refresh_credentials(rt)
    return rt


def _refresh_credentials(rt: Runtime) -> bool:
    """On 401/403: read the credentials' source afresh (Secrets Manager when a secret is set, its
    credentials winning over the settings', else Parameter Store); install them if they changed.
    A read that fails is logged (never with a value) and leaves the refusal as it is."""
    try:
        return _refresh_secret(rt, force=True) if rt.credentials is not None else _refresh_ssm_credentials(rt)
    except ConfigError as err:
        log.warning("cannot re-read the credentials after InfluxDB refused them: %s", err)
        return False


def _refresh_secret(rt: Runtime, force: bool) -> bool:
    """Install the secret's credentials if they changed (``force``: bypass the cache)."""
    if rt.credentials is None:
        return False
    fresh = _secret(rt.settings, force=force)
    if fresh is None or fresh == rt.credentials:
        return False
    log.info("credentials changed in Secrets Manager; using them from this write on")
    rt.credentials = fresh
    new = _with_credentials(rt.settings, fresh)
    rt.writer.set_credentials(new.username, new.password, new.token)
    return True


def _refresh_ssm_credentials(rt: Runtime) -> bool:
    """On 401/403: read Parameter Store afresh; install the credentials if they changed."""
    fresh = _ssm_values(rt.environ, force=True)
    if fresh is None or fresh == rt.ssm_values:
        return False
    new = load(rt.environ, fresh)
    old = rt.settings
    rt.ssm_values = fresh
    if (new.username, new.password, new.token) == (old.username, old.password, old.token):
        return False
    log.info("credentials changed in Parameter Store; retrying the write with them")
    rt.writer.set_credentials(new.username, new.password, new.token)
    rt.settings = new
    return True


def refresh(rt: Runtime) -> Runtime:
    """The runtime to use for this invocation: rebuilt if Parameter Store changed, new credentials
    installed if the secret changed (both cached reads)."""
    if rt.ssm_values is not None:
        fresh = _ssm_values(rt.environ)
        if fresh != rt.ssm_values:
            changed = sorted(k for k in set(fresh or {}) | set(rt.ssm_values)
                             if (fresh or {}).get(k) != rt.ssm_values.get(k))
            log.info("settings changed in Parameter Store (%s); rebuilding", ", ".join(changed))
            rt.writer.close()
            return build(rt.environ, fresh)
    try:
        _refresh_secret(rt, force=False)
    except ConfigError as err:  # the credentials in use may still be good: the write will tell
        log.warning("cannot check the secret for new credentials; keeping those in use: %s", err)
    return rt
