"""Cold-start wiring: settings → plan → writer, built once per process and kept warm."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from handler.decode import Decoder
from handler.influx import HttpTarget, LineWriter, V1Writer
from handler.mapping import Plan
from handler.settings import Settings, load


@dataclass
class Runtime:
    settings: Settings
    plan: Plan
    writer: LineWriter


def build(environ: Mapping[str, str] | None = None) -> Runtime:
    env = os.environ if environ is None else environ
    settings = load(env)
    decoder = Decoder.from_settings(settings)
    plan = Plan(settings.statements, decoder)
    target = HttpTarget(settings.url, connect_timeout=settings.connect_timeout_ms / 1000,
                        read_timeout=settings.read_timeout_ms / 1000)
    writer = V1Writer(target, db=settings.db, rp=settings.retention_policy,
                      consistency=settings.consistency_level, username=settings.username,
                      password=settings.password, chunk_lines=settings.batch_lines)
    return Runtime(settings, plan, writer)
