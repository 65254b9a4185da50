"""Schema-registry fixtures: a Confluent-contract registry served from the test, and moto's Glue.

Use from a test module with ``pytest_plugins = ["tests.fixtures_registry"]``.

- ``registry``: a fresh ``influx_sink_tools.local_registry`` server per test (over real HTTP on
  loopback; ``GET /schemas/ids/{id}``, ``GET /subjects/{s}/versions/{v}``, ``POST
  /subjects/{s}/versions``), counting requests. No Confluent server exists here; the same
  server runs in the end-to-end tests and in CI's run of the built Lambda artifact.
- ``secured_registry``: the same, wanting Basic auth ``sr-user:sr-secret``.
- ``glue``: moto's real Glue HTTP API, on the session's one moto server (``moto_server`` and
  ``aws_env`` of tests/conftest.py: boto3 pointed at it with dummy credentials, us-east-1), and a
  Glue registry of the test's own in it.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from handler.decode import registry as registry_mod
from influx_sink_tools import local_registry

_names = itertools.count()


@pytest.fixture
def registry() -> Iterator[local_registry.RegistryServer]:
    """A fresh registry, and a process with no cached schemas (a cold Lambda)."""
    registry_mod.clear_caches()
    server = local_registry.start()
    yield server
    server.stop()
    registry_mod.clear_caches()


@pytest.fixture
def secured_registry() -> Iterator[local_registry.RegistryServer]:
    """A registry that wants Basic auth ``sr-user:sr-secret``."""
    registry_mod.clear_caches()
    server = local_registry.start(user_info="sr-user:sr-secret")
    yield server
    server.stop()
    registry_mod.clear_caches()


# ---------------------------------------------------------------- moto (AWS Glue)


class Glue:
    """A Glue registry of its own in moto, and the helper to register schema versions in it."""

    def __init__(self, endpoint: str) -> None:
        import boto3

        self.endpoint = endpoint
        self.client = boto3.client("glue", region_name="us-east-1", endpoint_url=endpoint)
        self.registry_name = f"reg{os.getpid()}_{next(_names)}"
        self.client.create_registry(RegistryName=self.registry_name)

    def register(self, schema: Any, data_format: str = "AVRO", name: str | None = None) -> str:
        """Create a schema and return its first version id (what producers put in the frame)."""
        text = schema if isinstance(schema, str) else json.dumps(schema)
        resp = self.client.create_schema(RegistryId={"RegistryName": self.registry_name},
                                         SchemaName=name or f"s{next(_names)}", DataFormat=data_format,
                                         Compatibility="NONE", SchemaDefinition=text)
        return str(resp["SchemaVersionId"])


@pytest.fixture
def glue(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Glue]:
    """boto3 in this process pointed at moto's Glue (``aws_env``), and a fresh registry."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)  # a real session's token would not match "testing"
    registry_mod.clear_caches()
    yield Glue(aws_env)
    registry_mod.clear_caches()


# ---------------------------------------------------------------- Protobuf message classes


def protobuf_classes(files: dict[str, str], preloaded: tuple[bytes, ...] = ()) -> dict[str, Any]:
    """Message classes (full name → class) of ``.proto`` texts (import name → text, imports first),
    built in a pool of their own, as generated code would give a producer. There is no protoc
    here: the texts are read by the function's own ``.proto`` reader, which
    tests/unit/test_protobuf.py checks against protoc's descriptors of the well-known types."""
    from google.protobuf import message_factory

    from handler.decode import protobuf

    pool = protobuf.new_pool()
    for serialized in preloaded:  # files the texts import besides the well-known types (serialized)
        pool.AddSerializedFile(serialized)
    out: dict[str, Any] = {}
    for name, text in files.items():
        file = protobuf.add_file(pool, protobuf.parse_proto(text, name, name), name)
        for desc in protobuf._all_messages(file.message_types_by_name.values()):
            out[desc.full_name] = message_factory.GetMessageClass(desc)
    return out
