"""Schema registries: Confluent (HTTP ``GET /schemas/ids/{id}``) and AWS Glue (``GetSchemaVersion``).

Registry schemas are immutable per id, so each one is fetched once and kept, parsed, for the life
of the process (module-level caches, so a rebuilt Decoder keeps them too). A failed look-up is
remembered for a short while: a batch of 10,000 records with an unknown id, or a registry that
is down, costs one request, not 10,000 time-outs. Every failure is a ``RecordError`` of kind
``decode`` for the record; the delivery stage adds topic, partition and offset.

Every wait (DNS, connect, TLS, read) ends before the invocation's deadline (``handler.deadline``):
a registry that hangs costs the records a decode error in time, never the batch's answer.

Credentials never appear in reasons or logs: the registry is shown by its URL without user info.

Protobuf schemas (``schemaType`` PROTOBUF, Glue's data format PROTOBUF) are built by
``handler.decode.protobuf``, imported only then. From a Confluent registry a schema answered as ``.proto``
text is asked for again with ``?format=serialized``, and each reference (an import, by subject
and version, resolved recursively) is asked for that way at once: a base64 FileDescriptorProto,
which needs no ``.proto`` parser. A registry that ignores the parameter answers text again, which
is parsed instead.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import socket
import ssl
import sys
import time
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from handler.deadline import Limit, open_socket, process_limit
from handler.errors import FailureKind, NoTimeLeft, RecordError, WaitTimedOut

if TYPE_CHECKING:
    from google.protobuf.descriptor_pb2 import FileDescriptorProto

    from handler.decode.avro import Schema

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
TIMEOUT_S = 10.0  # read
NOT_FOUND_TTL_S = 60.0  # an id the registry does not know (or a schema we cannot use)
UNAVAILABLE_TTL_S = 5.0  # registry unreachable, 5xx, refused credentials
_MAX_REFERENCE_DEPTH = 32



class RegistrySchema(Protocol):
    """What the decode stage needs of a registry schema: Avro's ``Schema`` or a ``ProtobufSchema``."""

    label: str
    text_format: str

    def read(self, body: bytes | memoryview, what: str) -> Any: ...


_confluent_cache: dict[str, dict[int, RegistrySchema]] = {}  # registry URL → schema id → schema
_glue_cache: dict[str, RegistrySchema] = {}  # schema version id (a UUID) → schema
_failed: dict[tuple[str, str], tuple[float, str]] = {}  # (registry, id) → (retry after, reason)


class _LookupFailed(Exception):
    """Internal: why a schema could not be had, and how long to remember that."""

    def __init__(self, reason: str, ttl: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.ttl = ttl


def _remembered(key: tuple[str, str], what: str) -> None:
    failed = _failed.get(key)
    if failed is not None:
        if failed[0] > time.monotonic():
            raise RecordError(f"{what}: {failed[1]}", FailureKind.DECODE)
        del _failed[key]


def _remember(key: tuple[str, str], err: _LookupFailed) -> None:
    _failed[key] = (time.monotonic() + err.ttl, err.reason)


def clear_caches() -> None:
    """Forget every schema and failure (tests that need a cold process)."""
    _confluent_cache.clear()
    _glue_cache.clear()
    if "handler.aws_calls" in sys.modules:
        sys.modules["handler.aws_calls"].clear_clients()
    _failed.clear()


def _build_protobuf(text: Any, label: str, confluent: bool,
                    references: list[tuple[str, str, str]] | None = None) -> RegistrySchema:
    """A Protobuf schema from its text and its references' (import name, text, label), deepest first."""
    from handler.decode import protobuf

    if not isinstance(text, str):
        raise _LookupFailed(f"{label} has no schema text", NOT_FOUND_TTL_S)
    try:
        pool = protobuf.new_pool()
        for name, ref_text, ref_label in references or ():
            if name in protobuf.WELL_KNOWN_FILES or protobuf.has_file(pool, name):
                continue  # the pool has its own copy; a diamond of imports adds a file once
            protobuf.add_file(pool, protobuf.file_proto(ref_text, name, ref_label), ref_label)
        root: FileDescriptorProto = protobuf.file_proto(text, f"{label.replace(' ', '-')}.proto", label)
        file = protobuf.add_file(pool, root, label)
    except protobuf.SchemaProblem as err:
        raise _LookupFailed(str(err), NOT_FOUND_TTL_S) from None
    return protobuf.ProtobufSchema(file, label, confluent)


def _build(fmt: str | None, text: Any, label: str, named: dict[str, Any] | None = None) -> Schema:
    from handler.decode.avro import Schema, SchemaProblem, parse  # fastavro: only for Avro and JSON schemas

    fmt = (fmt or "AVRO").upper()
    if fmt == "JSON":
        return Schema(None, label, "JSON")
    if fmt != "AVRO":
        raise _LookupFailed(f"{label} is a {fmt} schema; only Avro, JSON and Protobuf payloads are supported",
                            NOT_FOUND_TTL_S)
    try:
        return parse(text, label, named)
    except SchemaProblem as err:
        raise _LookupFailed(str(err), NOT_FOUND_TTL_S) from None


class ConfluentRegistry:
    """A Confluent Schema Registry (or any server with its REST contract)."""

    def __init__(self, url: str, user_info: str | None = None, timeout: float = TIMEOUT_S) -> None:
        parts = urllib.parse.urlsplit(url.rstrip("/"))
        host = parts.hostname or ""
        self._https = parts.scheme == "https"
        self._host = host
        self._port = parts.port
        self._base = parts.path.rstrip("/")
        netloc = f"[{host}]" if ":" in host else host
        if parts.port:
            netloc += f":{parts.port}"
        self.display = urllib.parse.urlunsplit((parts.scheme, netloc, self._base, "", ""))
        if not user_info and parts.username is not None:
            user_info = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        self._headers = {"Accept": "application/vnd.schemaregistry.v1+json, application/json"}
        if user_info:
            token = base64.b64encode(user_info.encode("utf-8")).decode("ascii")
            self._headers["Authorization"] = f"Basic {token}"
        self._timeout = timeout
        self._peer = f"the schema registry at {self.display}"
        self._ssl: ssl.SSLContext | None = None
        self._cache = _confluent_cache.setdefault(self.display, {})

    def _tls(self) -> ssl.SSLContext | None:
        if not self._https:
            return None
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def _read_limit(self, sock: socket.socket) -> Limit:
        read = process_limit(self._timeout, f"the schema registry's {self._timeout:g}s timeout",
                             "asking the schema registry")
        sock.settimeout(read.seconds)
        return read

    def schema(self, schema_id: int, what: str) -> RegistrySchema:
        """The schema with this id; fetched on first use, then from memory."""
        found = self._cache.get(schema_id)
        if found is not None:
            return found
        key = (self.display, str(schema_id))
        _remembered(key, what)
        label = f"schema id {schema_id}"
        try:
            doc = self._get(f"/schemas/ids/{schema_id}", label)
            schema: RegistrySchema
            if str(doc.get("schemaType") or "").upper() == "PROTOBUF":
                from handler.decode.protobuf import is_serialized

                if not is_serialized(doc.get("schema")):  # .proto text: ask for the descriptor
                    doc = self._get(f"/schemas/ids/{schema_id}?format=serialized", label)
                refs: list[tuple[str, str, str]] = []
                self._proto_references(doc.get("references"), refs, label, 0)
                schema = _build_protobuf(doc.get("schema"), label, True, refs)
            else:
                named: dict[str, Any] = {}
                self._references(doc.get("references"), named, label, 0)
                schema = _build(doc.get("schemaType"), doc.get("schema"), label, named)
        except _LookupFailed as err:
            _remember(key, err)
            raise RecordError(f"{what}: {err.reason}", FailureKind.DECODE) from None
        except NoTimeLeft as err:  # not remembered: the registry may be fine
            raise RecordError(f"{what}: {label}: {err}", FailureKind.DECODE) from None
        log.info("schema id %d fetched from the schema registry at %s", schema_id, self.display)
        self._cache[schema_id] = schema
        return schema

    def _fetched_references(self, refs: Any, label: str, depth: int, *, serialized: bool = False,
                            keys: tuple[str, ...] = ()) -> Iterator[tuple[dict[str, Any], str, dict[str, Any]]]:
        """Each reference of a schema (subject + version, and ``keys``) fetched from the registry, as
        (the reference, its label, its document); a malformed list, references nested too deep, or a
        reference lacking one of its keys is the schema's error."""
        if not refs:
            return
        if depth > _MAX_REFERENCE_DEPTH or not isinstance(refs, list):
            raise _LookupFailed(f"{label} has references nested too deep or malformed", NOT_FOUND_TTL_S)
        query = "?format=serialized" if serialized else ""
        for ref in refs:
            try:
                subject, version = str(ref["subject"]), str(ref["version"])
                for key in keys:
                    str(ref[key])
            except (KeyError, TypeError):
                raise _LookupFailed(f"{label} has a malformed reference: {ref!r}", NOT_FOUND_TTL_S) from None
            ref_label = f"{label} reference {subject} version {version}"
            doc = self._get(f"/subjects/{urllib.parse.quote(subject, safe='')}/versions/"
                            f"{urllib.parse.quote(version, safe='')}{query}", ref_label)
            yield ref, ref_label, doc

    def _references(self, refs: Any, named: dict[str, Any], label: str, depth: int) -> None:
        """Parse referenced schemas (subject + version) into ``named``, deepest first."""
        for _, ref_label, doc in self._fetched_references(refs, label, depth):
            from handler.decode.avro import SchemaProblem, parse

            self._references(doc.get("references"), named, ref_label, depth + 1)
            if (doc.get("schemaType") or "AVRO").upper() != "AVRO":
                raise _LookupFailed(f"{ref_label} is not an Avro schema", NOT_FOUND_TTL_S)
            try:
                parse(doc["schema"], ref_label, named)  # fills ``named`` with the reference's types
            except (KeyError, SchemaProblem) as err:
                raise _LookupFailed(f"{ref_label} cannot be used: {err}", NOT_FOUND_TTL_S) from None

    def _proto_references(self, refs: Any, out: list[tuple[str, str, str]], label: str, depth: int) -> None:
        """Fetch a Protobuf schema's references (subject + version, serialized) into ``out`` as
        (import name, schema text, label), each one's own references before it."""
        for ref, ref_label, doc in self._fetched_references(refs, label, depth, serialized=True, keys=("name",)):
            if str(doc.get("schemaType") or "").upper() != "PROTOBUF":
                raise _LookupFailed(f"{ref_label} is not a Protobuf schema", NOT_FOUND_TTL_S)
            self._proto_references(doc.get("references"), out, ref_label, depth + 1)
            text = doc.get("schema")
            if not isinstance(text, str):
                raise _LookupFailed(f"{ref_label} has no schema text", NOT_FOUND_TTL_S)
            out.append((str(ref["name"]), text, ref_label))

    def _get(self, path: str, label: str) -> dict[str, Any]:
        """GET a registry document; every wait (DNS, connect, TLS, read) ends before the
        invocation's deadline. ``NoTimeLeft`` passes through: it says nothing about the registry."""
        conn: http.client.HTTPConnection | None = None
        read: Limit | None = None
        try:
            budget = process_limit(CONNECT_TIMEOUT_S, f"the schema registry's {CONNECT_TIMEOUT_S:g}s connect timeout",
                                   "asking the schema registry")
            sock = open_socket(self._host, self._port or (443 if self._https else 80), self._peer, budget,
                               self._tls())
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port)
            conn.sock = sock
            conn.auto_open = 0
            read = self._read_limit(sock)
            conn.request("GET", self._base + path, headers=self._headers)
            read = self._read_limit(sock)
            resp = conn.getresponse()
            status, body = resp.status, resp.read()
        except WaitTimedOut as err:
            raise _LookupFailed(f"{label}: {err}", UNAVAILABLE_TTL_S) from None
        except TimeoutError:
            assert read is not None
            timed_out = WaitTimedOut("read", self._peer, read.seconds, read.reason)
            raise _LookupFailed(f"{label}: {timed_out}", UNAVAILABLE_TTL_S) from None
        except (OSError, http.client.HTTPException) as err:
            raise _LookupFailed(f"{label}: the schema registry at {self.display} is unreachable: "
                                f"{type(err).__name__}: {err}", UNAVAILABLE_TTL_S) from None
        finally:
            if conn is not None:
                conn.close()
        message = _message(body)
        if status == 404:
            raise _LookupFailed(f"{label} is not in the schema registry at {self.display} "
                                f"(HTTP 404: {message})", NOT_FOUND_TTL_S)
        if status in (401, 403):
            raise _LookupFailed(f"{label}: the schema registry at {self.display} refused access (HTTP {status}: "
                                f"{message}); check connect.influx.schema.registry.basic.auth.user.info",
                                UNAVAILABLE_TTL_S)
        if status != 200:
            raise _LookupFailed(f"{label}: the schema registry at {self.display} answered HTTP {status}: "
                                f"{message}", UNAVAILABLE_TTL_S)
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise _LookupFailed(f"{label}: the schema registry at {self.display} answered something that "
                                f"is not a JSON object: {body[:200]!r}", UNAVAILABLE_TTL_S)
        return doc


def _message(body: bytes) -> str:
    try:
        doc = json.loads(body)
        if isinstance(doc, dict) and "message" in doc:
            return str(doc["message"])
    except ValueError:
        pass
    return body[:200].decode("utf-8", "replace").strip() or "no message"


class GlueRegistry:
    """The AWS Glue Schema Registry, through boto3 (imported on first use: ~250 ms), every wait
    inside the invocation's deadline (``handler.aws_calls``)."""

    def __init__(self, region: str | None = None) -> None:
        self.region = region

    def schema(self, version_id: str, what: str) -> RegistrySchema:
        found = _glue_cache.get(version_id)
        if found is not None:
            return found
        key = ("glue", version_id)
        _remembered(key, what)
        label = f"AWS Glue schema version {version_id}"
        try:
            resp = self._fetch(version_id, label)
            schema: RegistrySchema
            if str(resp.get("DataFormat") or "").upper() == "PROTOBUF":
                schema = _build_protobuf(resp.get("SchemaDefinition"), label, False)
            else:
                schema = _build(resp.get("DataFormat"), resp.get("SchemaDefinition"), label)
        except _LookupFailed as err:
            _remember(key, err)
            raise RecordError(f"{what}: {err.reason}", FailureKind.DECODE) from None
        except NoTimeLeft as err:  # not remembered: Glue may be fine
            raise RecordError(f"{what}: {label}: {err}", FailureKind.DECODE) from None
        log.info("%s fetched from AWS Glue", label)
        _glue_cache[version_id] = schema
        return schema

    def _fetch(self, version_id: str, label: str) -> dict[str, Any]:
        try:
            from botocore.exceptions import BotoCoreError, ClientError

            from handler import aws_calls
        except ImportError:  # the Lambda runtime ships boto3; elsewhere it is the `aws` extra
            raise RecordError(f"{label} needs boto3 for AWS Glue: pip install 'influx-sink[aws]'",
                              FailureKind.CONFIG) from None

        endpoint = os.environ.get("AWS_ENDPOINT_URL_GLUE") or os.environ.get("AWS_ENDPOINT_URL")
        try:
            resp: dict[str, Any] = aws_calls.call(
                "glue", "AWS Glue", "asking AWS Glue for a schema",
                lambda client: client.get_schema_version(SchemaVersionId=version_id),
                region=self.region, endpoint=endpoint)
        except WaitTimedOut as err:
            raise _LookupFailed(f"{label}: {err}", UNAVAILABLE_TTL_S) from None
        except ClientError as err:
            error = err.response.get("Error", {})
            code, message = error.get("Code", "?"), error.get("Message", "")
            if code == "EntityNotFoundException":
                raise _LookupFailed(f"{label} is not in the AWS Glue Schema Registry ({code}: {message})",
                                    NOT_FOUND_TTL_S) from None
            raise _LookupFailed(f"{label}: AWS Glue answered {code}: {message}", UNAVAILABLE_TTL_S) from None
        except BotoCoreError as err:
            raise _LookupFailed(f"{label}: AWS Glue is unreachable: {err}", UNAVAILABLE_TTL_S) from None
        return resp
