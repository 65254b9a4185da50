"""Cold-start wiring: settings → plan → writer, built once per process and kept warm.

With ``CONNECT_INFLUX_SSM_PATH`` the settings are re-read from Parameter Store (through
Powertools' cache, so at most once per ``CONNECT_INFLUX_SSM_MAX_AGE``) and the runtime is rebuilt
when they change; an authentication failure forces one fresh read before the write fails.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from handler.decode import Decoder
from handler.mapping import DEFAULT_ROUTE, Plan, Route
from handler.settings import SSM_PATH_ENV, InfluxVersion, Settings, load
from handler.write.protocol import LineProtocolWriter, V1Protocol
from handler.write.schedule import Writer
from handler.write.transport import HttpTarget, url_credentials

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    plan: Plan
    writer: Writer
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)
    ssm_values: dict[str, str] | None = field(default=None, repr=False)


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


def build(environ: Mapping[str, str] | None = None, ssm_values: dict[str, str] | None = None) -> Runtime:
    env = dict(os.environ if environ is None else environ)
    if ssm_values is None:
        ssm_values = _ssm_values(env)
    settings = load(env, ssm_values)
    plan = Plan(settings.statements, Decoder.from_settings(settings))
    writer = make_writer(settings, plan.routes)
    rt = Runtime(settings, plan, writer, env, ssm_values)
    if ssm_values is not None:
        writer.refresh_credentials = lambda: _refresh_credentials(rt)
    return rt


def _refresh_credentials(rt: Runtime) -> bool:
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
    """The runtime to use for this invocation: rebuilt if Parameter Store changed (cached read)."""
    if rt.ssm_values is None:
        return rt
    fresh = _ssm_values(rt.environ)
    if fresh == rt.ssm_values:
        return rt
    changed = sorted(k for k in set(fresh or {}) | set(rt.ssm_values) if (fresh or {}).get(k) != rt.ssm_values.get(k))
    log.info("settings changed in Parameter Store (%s); rebuilding", ", ".join(changed))
    rt.writer.close()
    return build(rt.environ, fresh)
