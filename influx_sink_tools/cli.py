"""influx-sink: the developer toolbox around the Lambda handler.

    influx-sink kcql 'INSERT INTO m SELECT * FROM t'     parse and explain KCQL (exit 1 on an error)
    influx-sink event --topic t < values.jsonl > ev.json  JSON lines → a Kafka event (SAM has no generator)
    influx-sink invoke ev.json --env-vars events/env.json run the handler as `sam local invoke` would
    influx-sink invoke ev.json --dry-run                  print the line protocol instead of writing it
    influx-sink frame confluent --id 1 --schema S '{...}' an Avro payload as a producer frames it

Every error is one readable message on stderr, with exit code 1 (the command failed) or 2 (bad
input or usage); Ctrl-C exits with 130. None of them prints a traceback.

The Lambda never imports this module, and this module imports the handler's heavy parts only in
the subcommand that needs them, so ``influx-sink kcql`` starts fast and the cold start is untouched.

A subcommand is one registration: a function ``add_<name>_parser(subparsers)`` that adds its
parser and sets ``func`` (``func(args) -> exit code``). ``influx_sink_tools.consume`` is registered when it
exists, through its ``add_consume_parser``. See docs/deploy.md ("The influx-sink CLI").
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kcql import Statement

PROG = "influx-sink"
FUNCTION_ID = "InfluxSinkFunction"  # the function's logical id in template.yaml and env.json
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

Subparsers = Any  # argparse._SubParsersAction: private in typeshed, so not named here
Registrar = Callable[[Subparsers], argparse.ArgumentParser]


class UsageError(Exception):
    """Bad input to a subcommand (a file, an option value): printed without a traceback, exit 2."""


# ---------------------------------------------------------------- kcql


def add_kcql_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "kcql", help="parse KCQL and explain what each statement writes",
        description="Parse connect.influx.kcql and explain each statement: topic, measurement, fields, tags, "
                    "timestamp. A syntax error is shown with its line, column and a caret; the exit code is 1.")
    parser.add_argument("statement", help="the KCQL text ('-' reads it from stdin)")
    parser.add_argument("--json", action="store_true",
                        help="print the explanation as JSON; an error too, as {\"error\": {...}} on stdout")
    parser.set_defaults(func=run_kcql)
    return parser


def run_kcql(args: argparse.Namespace) -> int:
    from kcql import KcqlError, parse

    text = sys.stdin.read() if args.statement == "-" else args.statement
    try:
        statements = parse(text)
    except KcqlError as err:
        if args.json:
            print(json.dumps({"error": error_json(err)}, indent=2))
        else:
            print(err, file=sys.stderr)
        return EXIT_FAILED
    from handler.mapping import describe_compiled

    if args.json:
        print(json.dumps([{**explain_json(s), "compiled": describe_compiled(s)} for s in statements], indent=2))
    else:
        for i, s in enumerate(statements, 1):
            if i > 1:
                print()
            print(f"Statement {i} of {len(statements)} (line {s.line}, column {s.column})")
            print("\n".join(explain_lines(s)))
            print("compiled to:")
            print("\n".join(f"  {line}" for line in describe_compiled(s)))
    return EXIT_OK


def error_json(err: Exception) -> dict[str, Any]:
    """A KCQL error for ``--json``: the full message, and where it is when the parser located it."""
    doc: dict[str, Any] = {"type": type(err).__name__, "message": str(err)}
    for attr in ("reason", "line", "column"):
        if hasattr(err, attr):
            doc[attr] = getattr(err, attr)
    return doc


def _describe_field(field: Any) -> str:
    from kcql import Source

    path = field.path
    if field.wildcard:
        if path.source is Source.KEY:
            where = "the key" if not path.segments else f"_key.{'.'.join(path.segments)}"
        else:
            where = "the value" if not path.segments else ".".join(path.segments)
        return (f"{path.text or '*'}: every field of {where} "
                "(nested objects flattened with _, arrays as name0, name1, ...)")
    return f"{path.text} as {field.name}" if field.name != path.text else path.text


def _describe_tag(tag: Any) -> str:
    from kcql import ConstantTag

    if isinstance(tag, ConstantTag):
        return f"{tag.key}={tag.value} (constant)"
    return f"{tag.name} <- {tag.path.text} (left out when missing, null or empty)"


def _describe_time(s: Statement) -> str:
    if s.timestamp is None:
        return "time of processing (sys_time()), nanoseconds"
    unit = s.timestamp_unit.name if s.timestamp_unit else None
    if unit:
        return f"{s.timestamp.text}, numbers in {unit}; ISO-8601 strings with a zone as they are"
    return (f"{s.timestamp.text}: integers in MILLISECONDS, floats in epoch seconds, ISO-8601 strings with a zone "
            "(missing or null fails the record)")


def explain_lines(s: Statement) -> list[str]:
    """A human reading of one statement, aligned as ``key  value`` lines."""
    rows: list[tuple[str, list[str]]] = [
        ("statement", [s.text]),
        ("topic", [s.topic]),
        ("measurement", [f"the value of {s.target.text}, else {s.measurement}" if s.target else s.measurement]),
        ("fields", [_describe_field(f) for f in s.fields]),
        ("ignored", [p.text for p in s.ignores] or ["(none)"]),
        ("tags", [_describe_tag(t) for t in s.tags] or ["(none)"]),
        ("timestamp", [_describe_time(s)]),
    ]
    width = max(len(k) for k, _ in rows)
    out: list[str] = []
    for key, values in rows:
        for j, value in enumerate(values):
            out.append(f"  {(key if j == 0 else ''):<{width}}  {value}")
    return out


def explain_json(s: Statement) -> dict[str, Any]:
    from kcql import ConstantTag

    return {
        "line": s.line, "column": s.column, "text": s.text, "topic": s.topic,
        "measurement": s.measurement, "target": s.target.text if s.target else None,
        "fields": [{"path": f.path.text or "*", "source": f.path.source.value, "name": f.name,
                    "wildcard": f.wildcard} for f in s.fields],
        "ignore": [p.text for p in s.ignores],
        "tags": [{"name": t.key, "value": t.value} if isinstance(t, ConstantTag)
                 else {"name": t.name, "path": t.path.text} for t in s.tags],
        "timestamp": s.timestamp.text if s.timestamp else "sys_time()",
        "timestamp_unit": s.timestamp_unit.name if s.timestamp_unit else None,
    }


# ---------------------------------------------------------------- event


def add_event_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "event", help="JSON lines on stdin -> a Kafka event on stdout",
        description="Read one record value per line (JSON) from stdin and print a Kafka event shaped like the "
                    "MSK (or self-managed) event source's, for `sam local invoke -e` and `influx-sink invoke`. "
                    "A line `null` is a tombstone; empty lines are skipped.")
    parser.add_argument("--topic", required=True, help="the topic of every record (required)")
    parser.add_argument("--partition", type=int, default=0, help="the partition of every record (default 0)")
    parser.add_argument("--offset", type=int, default=0, help="offset of the first record (default 0)")
    parser.add_argument("--key", help="the key of every record, as UTF-8 text (default: no key)")
    parser.add_argument("--header", action="append", default=[], metavar="NAME=VALUE",
                        help="a header on every record (repeatable)")
    parser.add_argument("--timestamp", type=int, metavar="MS",
                        help="record timestamp in epoch ms (default: now, +1 ms per record)")
    parser.add_argument("--format", choices=["json", "avro"], default="json",
                        help="how values are encoded in the event (default json)")
    parser.add_argument("--schema", metavar="FILE", help="Avro schema (.avsc) for --format avro")
    parser.add_argument("--schema-id", type=int, metavar="N",
                        help="Confluent framing (magic byte 0 + schema id); without it Avro is unframed, "
                             "for connect.influx.value.avro.schema")
    parser.add_argument("--self-managed", action="store_true",
                        help="a self-managed Kafka event (eventSource SelfManagedKafka, no eventSourceArn)")
    parser.add_argument("--bootstrap-servers", default="b-1.demo.kafka.us-east-1.amazonaws.com:9092",
                        metavar="HOST:PORT,...",
                        help="the event's bootstrapServers (default: a sample MSK broker; nothing is contacted)")
    parser.set_defaults(func=run_event)
    return parser


def _avro_encoder(schema_file: str, schema_id: int | None) -> Callable[[Any], bytes]:
    import fastavro
    from fastavro.validation import ValidationError, validate

    try:
        with open(schema_file, encoding="utf-8") as fh:
            parsed = fastavro.parse_schema(json.load(fh))
    except (OSError, ValueError, fastavro.schema.SchemaParseException) as err:
        raise UsageError(f"--schema {schema_file}: {err}") from None
    from influx_sink_tools.framing import confluent_frame, validation_text, write_body

    def encode(value: Any) -> bytes:
        try:
            validate(value, parsed, raise_errors=True)
        except ValidationError as err:
            raise UsageError(f"the value does not match the schema: {validation_text(err)}") from None
        body = write_body(parsed, value)
        return body if schema_id is None else confluent_frame(schema_id, body)

    return encode


def read_values(stream: IO[str]) -> Iterator[tuple[int, Any, str]]:
    """(line number, parsed value, raw text) for each non-empty line."""
    for n, line in enumerate(stream, 1):
        text = line.strip()
        if not text:
            continue
        try:
            yield n, json.loads(text), text
        except ValueError as err:
            raise UsageError(f"stdin line {n} is not JSON: {err}") from None


WAITING_HINT = (f"{PROG} event: waiting for record values on stdin, one JSON document per line; end with Ctrl-D "
                f"(or pipe a file: {PROG} event --topic T < values.jsonl)")


def run_event(args: argparse.Namespace) -> int:
    from influx_sink_tools.eventgen import Rec, build_event


    if args.schema_id is not None and not 0 <= args.schema_id < 2**32:
        raise UsageError("--schema-id must be between 0 and 4294967295")
    avro: Callable[[Any], bytes] | None = None
    if args.format == "avro":
        if not args.schema:
            raise UsageError("--format avro needs --schema FILE")
        avro = _avro_encoder(args.schema, args.schema_id)
    elif args.schema or args.schema_id is not None:
        raise UsageError("--schema and --schema-id go with --format avro")
    headers = []
    for h in args.header:
        name, sep, value = h.partition("=")
        if not sep or not name:
            raise UsageError(f"--header {h!r}: expected NAME=VALUE")
        headers.append((name, value.encode("utf-8")))
    key = None if args.key is None else args.key.encode("utf-8")
    ts = int(time.time() * 1000) if args.timestamp is None else args.timestamp
    if sys.stdin.isatty():  # a person at a terminal: say what is awaited instead of waiting silently
        print(WAITING_HINT, file=sys.stderr, flush=True)
    records = []
    for i, (n, value, raw) in enumerate(read_values(sys.stdin)):
        # JSON values keep the line's own bytes (number spelling, key order), as a producer sent them.
        try:
            body = None if value is None else avro(value) if avro else raw.encode("utf-8")
        except UsageError as err:
            raise UsageError(f"stdin line {n}: {err}") from None
        records.append(Rec(args.topic, args.partition, args.offset + i, body, key, list(headers),
                           timestamp=ts + (i if args.timestamp is None else 0)))
    event = build_event(records, self_managed=args.self_managed, bootstrap_servers=args.bootstrap_servers)
    print(json.dumps(event, indent=2))
    return EXIT_OK


# ---------------------------------------------------------------- invoke


def add_invoke_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "invoke", help="run the handler on an event file, as `sam local invoke` would (no Docker)",
        description="Run handler.app.lambda_handler on EVENT with the variables of --env-vars (SAM's format: "
                    f'{{"{FUNCTION_ID}": {{...}}}} and/or {{"Parameters": {{...}}}}) over the current '
                    "environment. The response goes to stdout, logs and metrics to stderr. A function "
                    "error prints Lambda's error object on stdout and the error itself on stderr, and "
                    "exits 1.")
    parser.add_argument("event", help="event JSON file ('-' for stdin)")
    parser.add_argument("--env-vars", metavar="FILE", help="environment variables file (SAM --env-vars format)")
    parser.add_argument("--function", default=FUNCTION_ID, help=f"section of --env-vars to use (default {FUNCTION_ID})")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                        help="the context's remaining time at the start (default 120, the template's Timeout)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the lines the handler would write, under the error policy, instead of "
                             "writing them; contacts nothing (no InfluxDB, no schema registry, no AWS), so "
                             "connect.influx.url is not needed and Avro in Confluent or Glue framing needs "
                             "--schema")
    parser.add_argument("--schema", action="append", default=[], metavar="ID=FILE",
                        help="with --dry-run: the Avro schema (.avsc) or Protobuf schema (.proto, importing "
                             "only the well-known types) of a Confluent schema id (digits) or an AWS Glue "
                             "schema version id (a UUID); repeatable")
    parser.set_defaults(func=run_invoke)
    return parser


def _env_value(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise UsageError(f"--env-vars: {name} must be a string, number or boolean")


def load_env_vars(path: str, function: str = FUNCTION_ID) -> dict[str, str | None]:
    """SAM's --env-vars file: ``Parameters`` apply to every function, the function's own section wins."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as err:
        raise UsageError(f"--env-vars {path}: {err}") from None
    if not isinstance(doc, dict) or not all(isinstance(v, dict) for v in doc.values()):
        raise UsageError(f'--env-vars {path}: expected {{"{function}": {{"VAR": "value"}}}} '
                         'or {"Parameters": {...}}')
    if function not in doc and "Parameters" not in doc:
        raise UsageError(f"--env-vars {path}: no {function!r} or 'Parameters' section (found: {', '.join(doc)})")
    merged: dict[str, str | None] = {}
    for section in ("Parameters", function):
        for name, value in doc.get(section, {}).items():
            merged[name] = _env_value(name, value)
    return merged


def _load_event(path: str) -> Any:
    try:
        if path == "-":
            return json.load(sys.stdin)
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as err:
        raise UsageError(f"event {path}: {err}") from None


@contextlib.contextmanager
def patched_environ(overrides: Mapping[str, str | None]) -> Iterator[None]:
    """Apply env.json over os.environ (None unsets), restoring it afterwards (in-process callers)."""
    saved = {k: os.environ.get(k) for k in overrides}
    try:
        _set_environ(overrides)
        yield
    finally:
        _set_environ(saved)


def _set_environ(values: Mapping[str, str | None]) -> None:
    """Set each variable to its value; None unsets it."""
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def run_invoke(args: argparse.Namespace) -> int:
    if args.schema and not args.dry_run:
        raise UsageError("--schema goes with --dry-run (a real invocation fetches schemas from the registry)")
    schemas = offline_schemas(args.schema)
    event = _load_event(args.event)
    overrides = load_env_vars(args.env_vars, args.function) if args.env_vars else {}
    with patched_environ(overrides):
        if args.dry_run:
            return dry_run(event, os.environ, schemas)
        from influx_sink_tools.local_context import LocalContext

        return _invoke(event, LocalContext(args.timeout, args.function))


def _invoke(event: Any, context: Any) -> int:
    # The handler's logs and EMF metrics print to stdout (as in Lambda); keep stdout for the response.
    real_stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        from handler import app

        app.reset_runtime()
        try:
            response = app.lambda_handler(event, context)
        except Exception as err:  # what Lambda turns into a function error; the event source retries
            failure = {"errorMessage": str(err), "errorType": type(err).__name__}
            print(json.dumps(failure, indent=2), file=real_stdout)
            print(f"{PROG} invoke: function error ({type(err).__name__}): {err}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            with contextlib.suppress(Exception):
                app.reset_runtime()
    print(json.dumps(response, indent=2), file=real_stdout)
    return EXIT_OK


# ---------------------------------------------------------------- invoke --dry-run

# Stand-ins for the target settings a dry run does not use (it writes nothing): only the
# settings that shape the lines must be given.
DRY_RUN_TARGET = {"CONNECT_INFLUX_URL": "http://dry-run.invalid", "CONNECT_INFLUX_DB": "dry-run"}


def offline_schemas(specs: Sequence[str]) -> dict[str, Any]:
    """``ID=FILE`` options → schema id (Confluent digits or Glue UUID, as text) → parsed schema."""
    if not specs:
        return {}
    from handler.decode.avro import SchemaProblem, parse

    out: dict[str, Any] = {}
    for spec in specs:
        sid, sep, path = spec.partition("=")
        sid = sid.strip().lower()
        if not sep or not path or not (sid.isdigit() or _is_uuid(sid)):
            raise UsageError(f"--schema {spec!r}: expected ID=FILE, ID a Confluent schema id (digits) or an AWS "
                             "Glue schema version id (a UUID)")
        if sid.isdigit():
            sid = str(int(sid))
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
            if path.endswith(".proto"):
                out[sid] = _offline_protobuf(text, sid, path)
            else:
                out[sid] = parse(text, f"--schema {sid}={path}")
        except OSError as err:
            raise UsageError(f"--schema {spec}: {path}: {err.strerror or err}") from None
        except SchemaProblem as err:
            raise UsageError(str(err)) from None
    return out


def _offline_protobuf(text: str, sid: str, path: str) -> Any:
    """A ``.proto`` file as the registry's Protobuf schema of ``sid`` (Confluent framing for a
    number, Glue framing for a UUID)."""
    from handler.decode import protobuf

    label = f"--schema {sid}={path}"
    try:
        pool = protobuf.new_pool()
        file = protobuf.add_file(pool, protobuf.parse_proto(text, os.path.basename(path), label), label)
    except protobuf.SchemaProblem as err:
        raise UsageError(str(err)) from None
    return protobuf.ProtobufSchema(file, f"schema id {sid}" if sid.isdigit() else f"AWS Glue schema version {sid}",
                                   sid.isdigit())


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


class OfflineSchemas:
    """The schemas of ``--schema``, answering as a registry would, without any network.

    Stands in for both the Confluent and the Glue registry of the dry run's decoder; a schema
    that was not given fails its record (kind ``decode``), saying how to give it.
    """

    def __init__(self, schemas: Mapping[str, Any]) -> None:
        self.schemas = dict(schemas)

    def schema(self, schema_id: int | str, what: str) -> Any:
        from handler.errors import FailureKind, RecordError

        key = str(schema_id).lower()
        found = self.schemas.get(key)
        if found is None:
            label = f"schema id {key}" if key.isdigit() else f"AWS Glue schema version {key}"
            raise RecordError(f"{what} needs {label}, and --dry-run contacts no schema registry: give it with "
                              f"--schema {key}=FILE", FailureKind.DECODE)
        return found


def _offline_decoder(settings: Any, schemas: OfflineSchemas) -> Any:
    """The settings' decoder with every registry look-up answered by ``schemas``."""
    from handler.decode import Decoder

    class OfflineDecoder(Decoder):
        def _confluent_registry(self, what: str, schema_id: int) -> Any:
            return schemas

        def _glue_registry(self) -> Any:
            return schemas

    return OfflineDecoder.from_settings(settings)


class _KeepLines:
    """A protocol that keeps the lines of each request, in order, answers "stored" and sends nothing."""

    def __init__(self) -> None:
        self.kept: list[str] = []

    def send(self, lines: Sequence[str], body: bytes | None, at: float | None) -> Any:
        from handler.write.transport import Answer

        self.kept.extend(lines)
        return Answer(204, "")

    def refused_lines(self, answer: Any, sent: int) -> dict[int, str] | None:
        """Every line is "stored": none is refused."""
        return None

    def set_credentials(self, username: str | None, password: str | None, token: str | None) -> None:
        """Nothing to authenticate to."""

    def close(self) -> None:
        """Nothing to close."""


@contextlib.contextmanager
def _quiet_delivery_log() -> Iterator[None]:
    """The delivery stage logs each failure; the dry run prints them itself, once each."""
    import logging

    logger = logging.getLogger("handler.delivery")
    before = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = before


def dry_run(event: Any, environ: Mapping[str, str], schemas: Mapping[str, Any] | None = None) -> int:
    """Run the batch through the real settings, plan, encoder and error policy, writing nothing.

    stdout gets the lines InfluxDB would receive (none under THROW when a record fails); stderr
    gets each failed record, the handler's response or error, and a summary. The exit code is
    what ``invoke`` would give: 1 when the invocation would fail, else 0.
    """
    from handler.delivery import run_batch
    from handler.errors import BatchFailed, ConfigError, Failure
    from handler.mapping import Plan
    from handler.records import EventError, parse_event
    from handler.settings import load

    env = dict(environ)
    for name, stand_in in DRY_RUN_TARGET.items():
        if not env.get(name):
            env[name] = stand_in
    try:
        settings = load(env)
        plan = Plan(settings.statements, _offline_decoder(settings, OfflineSchemas(schemas or {})))
    except ConfigError as err:
        raise UsageError(str(err)) from None
    try:
        records = parse_event(event)
    except EventError as err:
        raise UsageError(str(err)) from None
    from handler.write.schedule import Writer

    keep = _KeepLines()
    writer = Writer(keep)
    policy = settings.error_policy
    failures: list[Failure]
    with _quiet_delivery_log():
        try:
            result = run_batch(records, plan, writer, policy)
        except BatchFailed as err:
            failures, response, written = err.failures, None, 0
            error: BatchFailed | None = err
        else:
            failures, response, written, error = result.failures, result.response, len(keep.kept), None
    for line in keep.kept:
        sys.stdout.write(line + "\n")
    sys.stdout.flush()
    for f in failures:
        print(f"record failed ({f.kind}): {f}", file=sys.stderr)
    summary = (f"{len(records)} record(s), {plan.stats.tombstones} tombstone(s), {len(failures)} failed; "
               f"{written} line(s) would be written under {policy}; nothing written (--dry-run)")
    if error is not None:
        print(f"{PROG} invoke --dry-run: the invocation would fail ({type(error).__name__}): {error}\n{summary}"
              + ("\n(CONNECT_INFLUX_ERROR_POLICY=NOOP shows the lines of the records that map)"
                 if written == 0 and len(failures) < len(records) else ""), file=sys.stderr)
        return EXIT_FAILED
    print(f"response: {json.dumps(response)}\n{summary}", file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------- frame


def add_frame_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    from influx_sink_tools import framing

    return framing.add_parser(subparsers)


# ---------------------------------------------------------------- wiring


def _consume_registrar() -> Registrar | None:
    """``influx_sink_tools.consume``'s registration, when that module is there (imported only to register)."""
    if importlib.util.find_spec("influx_sink_tools.consume") is None:
        return None
    try:
        from influx_sink_tools import consume
    except ImportError as err:
        reason = str(err)

        def unavailable(subparsers: Subparsers) -> argparse.ArgumentParser:
            parser: argparse.ArgumentParser = subparsers.add_parser("consume", help="(unavailable: see --help)",
                                                                    description=f"unavailable: {reason}")
            parser.set_defaults(func=lambda _args: _fail(f"consume is unavailable: {reason}"))
            return parser

        return unavailable
    registrar: Registrar = consume.add_consume_parser
    return registrar


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return EXIT_FAILED


def registrars() -> list[Registrar]:
    found: list[Registrar] = [add_kcql_parser, add_event_parser, add_invoke_parser, add_frame_parser]
    consume = _consume_registrar()
    if consume is not None:
        found.append(consume)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n", 1)[0],
                                     epilog="Run `influx-sink COMMAND --help` for a command's options.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in registrars():
        register(subparsers)
    return parser


def _stdout_gone() -> None:
    """stdout's reader went away (`influx-sink event ... | head`): stop writing to it quietly."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    command = PROG
    try:
        args = build_parser().parse_args(argv)
        command = f"{PROG} {args.command}"
        code: int = args.func(args)
        sys.stdout.flush()
    except UsageError as err:
        print(f"{command}: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\n{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _stdout_gone()
        return EXIT_OK
    except OSError as err:  # a file or terminal that cannot be read or written
        print(f"{command}: {err}", file=sys.stderr)
        return EXIT_FAILED
    return code


if __name__ == "__main__":
    sys.exit(main())
