"""A small Confluent Schema Registry on a free loopback port (stdlib only, threaded).

No Confluent server exists here, and the part of its REST contract the sink and producers use is
small enough to serve: the tests, the end-to-end runner tests and CI's run of the built Lambda
artifact (scripts/ci_sam.sh) all use this one server, over real HTTP.

Served (Confluent's paths, bodies and error codes; ``application/vnd.schemaregistry.v1+json``):

- ``GET /schemas/ids/{id}``: ``{"schema": "<text>"}`` (plus ``schemaType`` when not Avro and
  ``references`` when given); unknown id: 404 ``{"error_code": 40403, "message": "Schema 7 not found"}``
  (the message as Confluent words it, with the id);
- ``POST /subjects/{subject}/versions`` with ``{"schema": "<text>"[, "schemaType", "references"]}``:
  registers and answers ``{"id": N}``; the same schema (compared as parsed JSON, so whitespace does
  not matter) gets the same id, in any subject, as in Confluent;
- ``POST /subjects/{subject}`` with the same body: looks the schema up under the subject and
  answers ``{"subject", "id", "version", "schema", ...}`` (404 40403 when it is not there);
  Protobuf serializers register each import this way and read back its version;
- ``GET /subjects``, ``GET /subjects/{subject}/versions`` and ``/versions/{n|latest}`` (what
  schema references are resolved with);
- Protobuf schemas (``schemaType`` PROTOBUF) as registered: a base64 FileDescriptorProto (what
  confluent-kafka's ProtobufSerializer sends) or ``.proto`` text; ``?format=serialized`` on the
  two GETs answers ``.proto`` text as a base64 FileDescriptorProto, as Confluent does (parsed by
  the function's own ``.proto`` reader). ``serialized_format = False`` makes the server ignore
  the parameter, like a registry that does not offer it;
- optional Basic auth (401 ``{"error_code": 401, "message": "Unauthorized"}`` without it);
- ``requests``: a counter of request paths (``"POST /subjects/..."`` for registrations), so
  callers can check the sink fetches each id once per process; ``fail_with`` answers every request
  with that HTTP status (an outage).

Importable (``scripts/`` on ``sys.path``)::

    server = local_registry.start({1: open("events/schemas/user.avsc").read()})
    ... CONNECT_INFLUX_SCHEMA_REGISTRY_URL=server.url ...
    server.stop()

or a command that prints the URL and serves until killed (Ctrl-C or SIGTERM)::

    python -m influx_sink_tools.local_registry --schema 1=events/schemas/user.avsc [--port 8081]
    LOCAL_REGISTRY_USER_INFO=user:password python -m influx_sink_tools.local_registry   # with Basic auth
"""

from __future__ import annotations

import argparse
import base64
import hmac
import json
import os
import signal
import sys
import threading
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
USER_INFO_ENV = "LOCAL_REGISTRY_USER_INFO"


def _identity(text: str, schema_type: str | None, references: Any) -> str:
    """What makes two registrations "the same schema": parsed JSON (whitespace and key order
    do not matter, as with Confluent's canonical form), its type and its references."""
    try:
        canonical = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    except ValueError:
        canonical = text  # a Protobuf schema, or text that is not JSON
    return json.dumps([canonical, (schema_type or "AVRO").upper(), references or []], sort_keys=True)


class RegistryServer:
    """The registry's state and its HTTP server on ``127.0.0.1``; see the module docstring."""

    def __init__(self, schemas: dict[int, str] | None = None, user_info: str | None = None,
                 port: int = 0, quiet: bool = True) -> None:
        self.by_id: dict[int, dict[str, Any]] = {}
        self.subjects: dict[str, list[int]] = {}
        self.requests: Counter[str] = Counter()
        self.user_info = user_info
        self.fail_with: int | None = None  # answer every request with this HTTP status (an outage)
        self.serialized_format = True  # honour ?format=serialized for Protobuf schemas
        self.quiet = quiet
        self._ids: dict[str, int] = {}  # identity → id
        self._lock = threading.Lock()
        for sid, text in (schemas or {}).items():
            self.add(sid, text)
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_class(self))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True,
                                        name="local-registry")
        self._thread.start()

    # ------------------------------------------------------------------ state

    def add(self, schema_id: int, schema: str, schema_type: str | None = None,
            references: list[dict[str, Any]] | None = None) -> None:
        """Put a schema under a chosen id (what a registry that already holds it would serve):
        sample events carry fixed ids. Later registrations get ids above the highest one."""
        if not isinstance(schema, str):
            raise TypeError(f"schema id {schema_id}: the schema must be its JSON text, not {type(schema).__name__}")
        with self._lock:
            if schema_id in self.by_id:
                raise ValueError(f"schema id {schema_id} is already taken")
            self.by_id[schema_id] = _document(schema, schema_type, references)
            self._ids.setdefault(_identity(schema, schema_type, references), schema_id)

    def register(self, subject: str, schema: Any, schema_type: str | None = None,
                 references: list[dict[str, Any]] | None = None) -> int:
        """Register as ``POST /subjects/{subject}/versions`` does and return the id; a schema
        may be given as its text or as a JSON-able object. The same schema keeps its id."""
        text = schema if isinstance(schema, str) else json.dumps(schema)
        key = _identity(text, schema_type, references)
        with self._lock:
            sid = self._ids.get(key)
            if sid is None:
                sid = max(self.by_id, default=0) + 1
                self.by_id[sid] = _document(text, schema_type, references)
                self._ids[key] = sid
            versions = self.subjects.setdefault(subject, [])
            if sid not in versions:
                versions.append(sid)
            return sid

    def lookup(self, subject: str, schema: str, schema_type: str | None = None,
               references: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
        """What ``POST /subjects/{subject}`` answers for a schema registered under it, or None."""
        key = _identity(schema, schema_type, references)
        with self._lock:
            sid = self._ids.get(key)
            versions = self.subjects.get(subject, [])
            if sid is None or sid not in versions:
                return None
            return {"subject": subject, "id": sid, "version": versions.index(sid) + 1, **self.by_id[sid]}

    def schema_requests(self) -> int:
        """How many ``GET /schemas/ids/...`` requests were made (the sink's schema fetches)."""
        with self._lock:
            return sum(n for path, n in self.requests.items() if path.startswith("/schemas/ids/"))

    def count(self, key: str) -> None:
        with self._lock:
            self.requests[key] += 1

    # ------------------------------------------------------------------ lifetime

    def stop(self) -> None:
        """Stop serving and close the port (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def serve_until_signalled(self) -> None:
        """Block until SIGINT or SIGTERM, then stop (the CLI)."""
        done = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            done.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        while not done.wait(1.0):
            pass
        self.stop()

    def __enter__(self) -> RegistryServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _document(text: str, schema_type: str | None, references: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The body of ``GET /schemas/ids/{id}``: Confluent omits ``schemaType`` for Avro."""
    doc: dict[str, Any] = {"schema": text}
    if schema_type and schema_type.upper() != "AVRO":
        doc["schemaType"] = schema_type.upper()
    if references:
        doc["references"] = references
    return doc


def _error(status: int, code: int, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error_code": code, "message": message}


def _formatted(reg: RegistryServer, doc: dict[str, Any], fmt: str | None) -> tuple[int, Any]:
    """A schema document as ``?format=`` asks: ``serialized`` turns Protobuf text into a base64
    FileDescriptorProto; other formats and other schema types are served as registered."""
    if fmt != "serialized" or not reg.serialized_format or doc.get("schemaType") != "PROTOBUF":
        return 200, doc
    from handler.decode import protobuf

    if protobuf.is_serialized(doc["schema"]):
        return 200, doc
    try:
        proto = protobuf.parse_proto(doc["schema"], "schema.proto", "the schema")
    except protobuf.SchemaProblem as err:
        return _error(422, 42201, f"Invalid schema: {err}")
    proto.ClearField("name")
    return 200, {**doc, "schema": base64.b64encode(proto.SerializeToString()).decode("ascii")}


def _route_get(reg: RegistryServer, parts: list[str], fmt: str | None = None) -> tuple[int, Any]:
    if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and parts[2].isdigit():
        sid = int(parts[2])
        doc = reg.by_id.get(sid)
        return _formatted(reg, doc, fmt) if doc is not None else _error(404, 40403, f"Schema {sid} not found")
    if parts == ["subjects"]:
        return 200, sorted(reg.subjects)
    if len(parts) in (3, 4) and parts[0] == "subjects" and parts[2] == "versions":
        subject = urllib.parse.unquote(parts[1])
        versions = reg.subjects.get(subject)
        if not versions:
            return _error(404, 40401, f"Subject '{subject}' not found.")
        if len(parts) == 3:
            return 200, list(range(1, len(versions) + 1))
        wanted = parts[3]
        if wanted in ("latest", "-1"):
            n = len(versions)
        elif wanted.isdigit():
            n = int(wanted)
        else:
            return _error(422, 42202, f"The specified version '{wanted}' is not a valid version id.")
        if not 1 <= n <= len(versions):
            return _error(404, 40402, f"Version {n} not found.")
        sid = versions[n - 1]
        return _formatted(reg, {"subject": subject, "version": n, "id": sid, **reg.by_id[sid]}, fmt)
    return _error(404, 404, "HTTP 404 Not Found")


def _route_post(reg: RegistryServer, parts: list[str], body: bytes) -> tuple[int, Any]:
    lookup = len(parts) == 2 and parts[0] == "subjects"
    if not (lookup or (len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions")):
        return _error(404, 404, "HTTP 404 Not Found")
    try:
        doc = json.loads(body)
    except ValueError as err:
        return _error(400, 400, f"Unexpected character: the body is not JSON ({err})")
    if not isinstance(doc, dict) or not isinstance(doc.get("schema"), str):
        return _error(422, 42201, "Invalid schema: the body needs a \"schema\" member holding the schema's text")
    schema_type = doc.get("schemaType")
    if (schema_type or "AVRO").upper() in ("AVRO", "JSON"):
        try:
            json.loads(doc["schema"])
        except ValueError as err:
            return _error(422, 42201, f"Invalid schema: {err}")
    subject = urllib.parse.unquote(parts[1])
    if lookup:
        if subject not in reg.subjects:
            return _error(404, 40401, f"Subject '{subject}' not found.")
        found = reg.lookup(subject, doc["schema"], schema_type, doc.get("references"))
        return (200, found) if found is not None else _error(404, 40403, "Schema not found")
    sid = reg.register(subject, doc["schema"], schema_type, doc.get("references"))
    return 200, {"id": sid}


def _handler_class(reg: RegistryServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "local-registry/1"

        def log_message(self, format: str, *args: Any) -> None:
            if not reg.quiet:
                sys.stderr.write(f"local_registry: {self.address_string()} {format % args}\n")

        def _send(self, status: int, doc: Any) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="SchemaRegistry"')
            self.end_headers()
            self.wfile.write(body)

        def _refused(self) -> bool:
            """Answer an outage or missing credentials; True when the request is done."""
            if reg.fail_with is not None:
                self._send(reg.fail_with, {"error_code": reg.fail_with * 100, "message": "Internal error"})
                return True
            if reg.user_info is None:
                return False
            expected = "Basic " + base64.b64encode(reg.user_info.encode()).decode()
            if hmac.compare_digest(self.headers.get("Authorization", "").encode(), expected.encode()):
                return False
            self._send(*_error(401, 401, "Unauthorized"))
            return True

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            path = url.path
            reg.count(path)
            fmt = urllib.parse.parse_qs(url.query).get("format", [None])[0]
            if not self._refused():
                with reg._lock:
                    answer = _route_get(reg, path.strip("/").split("/"), fmt)
                self._send(*answer)

        def do_POST(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            reg.count("POST " + path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or "0"))
            if not self._refused():
                self._send(*_route_post(reg, path.strip("/").split("/"), body))

    return Handler


def start(schemas: dict[int, str] | None = None, user_info: str | None = None) -> RegistryServer:
    """A registry holding ``schemas`` (id → schema text) on a free loopback port, served from a
    daemon thread of this process; ``user_info`` (``user:password``) turns Basic auth on."""
    return RegistryServer(schemas, user_info)


def _schema_arg(value: str) -> tuple[int, str, str | None]:
    sid, sep, path = value.partition("=")
    if not sep or not sid.isdigit() or not path:
        raise argparse.ArgumentTypeError(f"expected ID=FILE, e.g. 1=events/schemas/user.avsc; got {value!r}")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as err:
        raise argparse.ArgumentTypeError(f"{path}: {err.strerror}") from None
    if path.endswith(".proto"):
        return int(sid), text, "PROTOBUF"
    try:
        json.loads(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{path} is not a JSON (Avro) schema: {err}") from None
    return int(sid), text, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="local_registry.py",
        description="Serve a small Confluent Schema Registry on 127.0.0.1; print its URL, serve until "
                    f"killed. Basic auth: put user:password in ${USER_INFO_ENV}.")
    parser.add_argument("--schema", action="append", default=[], type=_schema_arg, metavar="ID=FILE",
                        help="serve FILE's schema under id ID (repeatable); e.g. 1=events/schemas/user.avsc; "
                             "a .proto file is a Protobuf schema")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--quiet", action="store_true", help="do not log requests to stderr")
    args = parser.parse_args(argv)
    schemas: dict[int, tuple[str, str | None]] = {}
    for sid, text, schema_type in args.schema:
        if sid in schemas:
            parser.error(f"--schema: id {sid} given twice")
        schemas[sid] = (text, schema_type)
    try:
        server = RegistryServer(None, os.environ.get(USER_INFO_ENV) or None, port=args.port, quiet=args.quiet)
    except OSError as err:
        print(f"local_registry: cannot listen on 127.0.0.1:{args.port}: {err.strerror}", file=sys.stderr)
        return 1
    for sid, (text, schema_type) in schemas.items():
        server.add(sid, text, schema_type)
    print(server.url, flush=True)
    auth = " (Basic auth on)" if server.user_info else ""
    print(f"local_registry: serving schema id(s) {sorted(schemas) or 'none'} at {server.url}{auth}; "
          "Ctrl-C stops", file=sys.stderr, flush=True)
    server.serve_until_signalled()
    return 0


if __name__ == "__main__":
    sys.exit(main())
