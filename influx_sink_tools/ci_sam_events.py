"""Every sample event (events/*.json with "records") through the built package, as Lambda runs it.

Called by scripts/ci_sam.sh: ``.venv/bin/python -m influx_sink_tools.ci_sam_events WORK PY312 BUILD RUNTIME_DIR``.
Each event goes to the package under AWS's runtime interface client (``python3.12 -S -m awslambdaric
handler.app.lambda_handler``, read-only task root, awslambdaric and boto3 from RUNTIME_DIR, the
/var/runtime stand-in) through a Runtime API on loopback (influx_sink_tools/lambda_sandbox.py,
influx_sink_tools/lambda_runtime_api.py), against a real InfluxDB (influx_sink_tools.local_influxdb) with
events/env.json pointed at it. msk-*.json and self-managed-*.json need nothing else;
events/payload-*.json also get what docs/payloads.md's "Sample events" table says they need (the
PAYLOAD table below mirrors it, and is checked against it):

- a Confluent Schema Registry (influx_sink_tools.local_registry) serving the schema ids the values carry;
- CONNECT_INFLUX_VALUE_AVRO_SCHEMA pointing at events/schemas/*.avsc for unframed Avro;
- for AWS Glue framing, moto's server (influx_sink_tools.local_moto) with the schema registered, the
  sample's placeholder schema version id replaced by the one moto assigned, AWS_ENDPOINT_URL and
  dummy credentials (the function's boto3 is the runtime's, as in Lambda).

Each response must be an empty batchItemFailures (env.json's error policy is THROW: a record that
does not decode fails the invocation); InfluxDB must hold one point per non-null value, with the
fields listed below; the registry must have been asked once per schema id; the task root must be
unchanged and the Runtime API must have seen no protocol error.
"""

from __future__ import annotations

import base64
import glob
import json
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from influx_sink_tools import lambda_sandbox, local_influxdb, local_moto, local_registry
from influx_sink_tools.lambda_runtime_api import OutcomeKind, RuntimeAPI, RuntimeAPIError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMAS = os.path.join(ROOT, "events", "schemas")
GLUE_PLACEHOLDER = uuid.UUID("0b0d1d2c-7a4e-4c3b-9a51-1f0d3e6c2a10")  # docs/payloads.md
USER_ROW = {"_measurement": "influxMeasure", "company": "DataMountaineer", "address": "MontainTop",
            "latitude": -49.817962646484375, "longitude": -141.64581298828125}  # Avro floats, widened
AWS_DUMMY = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
             "AWS_EC2_METADATA_DISABLED": "true"}

# docs/payloads.md, "Sample events": KCQL, what else each event needs, the rows InfluxDB must hold
# (in time order; only the listed columns are compared) and some fields' InfluxDB types.
PAYLOAD: dict[str, dict[str, Any]] = {
    "payload-avro-confluent.json": {
        "kcql": "INSERT INTO influxMeasure SELECT * FROM influx-topic WITHTIMESTAMP sys_time()",
        "registry": {1: "user.avsc"},  # schema id carried by the values -> the schema served under it
        "rows": [USER_ROW],
        "types": {"influxMeasure": {"company": "string", "latitude": "float"}}},
    "payload-avro-glue.json": {
        "kcql": "INSERT INTO readings SELECT * FROM sensors WITHTIMESTAMP ts WITHTAG(_key AS sensor_key, state)",
        "glue": "reading.avsc",
        "rows": [{"_measurement": "readings", "time": 1_700_000_000_123_000_000, "state": "OK", "sensor_key": "s-1",
                  "price": 1234.56, "day": 1_709_164_800_000, "level": 0.75, "location_lat": 51.5, "samples1": 2.5},
                 {"time": 1_700_000_060_123_000_000, "state": "FAULT", "sensor_key": "s-1", "level": None}],
        "types": {"readings": {"ts": "integer", "price": "float", "day": "integer"}}},
    "payload-avro-unframed.json": {
        "kcql": "INSERT INTO influxMeasure SELECT * FROM influx-topic",
        "env": {"CONNECT_INFLUX_VALUE_AVRO_SCHEMA": os.path.join(SCHEMAS, "user.avsc")},
        "rows": [USER_ROW]},
    "payload-connect-json.json": {
        "kcql": "INSERT INTO trades SELECT * FROM trades WITHTIMESTAMP traded_at WITHTAG(_key AS symbol_key)",
        "rows": [{"_measurement": "trades", "time": 1_700_000_000_123_000_000, "symbol": "ACME", "price": 101.0,
                  "qty": 5, "fee": 12.34, "trade_date": 1_709_164_800_000, "symbol_key": "ACME"}],
        "types": {"trades": {"price": "float", "qty": "integer"}}},  # declared double, written as 101
    "payload-connect-string.json": {
        "kcql": "INSERT INTO devices SELECT * FROM devices WITHTAG(device)",
        "rows": [{"_measurement": "devices", "device": "d-7", "temperature": 21.5, "humidity": 40}]},
    "payload-esm-json.json": {
        "kcql": "INSERT INTO influxMeasure SELECT * FROM influx-topic",
        "rows": [{**USER_ROW, "latitude": -49.817964, "longitude": -141.645812}]},  # JSON numbers: no widening
}


class Failed(Exception):
    """One event's check failed: the message says which and why."""


@dataclass(frozen=True)
class Paths:
    """Where the run happens: a scratch folder, the runtime's Python, the built package, the /var/runtime stand-in."""

    work: str
    py312: str
    build: str
    provided: str


def check_docs_table() -> None:
    """The table above and docs/payloads.md's must agree: the docs are what users run."""
    with open("docs/payloads.md", encoding="utf-8") as fh:
        rows = {line.split("|")[1].strip().strip("`"): line for line in fh if line.startswith("| `payload-")}
    problems = [f"{name}: not in docs/payloads.md's table" for name in PAYLOAD if name not in rows]
    problems += [f"{name}: docs/payloads.md gives another KCQL than `{spec['kcql']}`"
                 for name, spec in PAYLOAD.items() if name in rows and f"`{spec['kcql']}`" not in rows[name]]
    problems += [f"{name}: in docs/payloads.md's table, not in ci_sam_events.py's"
                 for name in rows if name not in PAYLOAD]
    if problems:
        sys.exit("influx_sink_tools/ci_sam_events.py and docs/payloads.md disagree:\n" + "\n".join(problems))


def parts(event: dict) -> list[bytes]:
    """Every non-null value and key of the event, decoded."""
    return [base64.b64decode(r[k]) for recs in event["records"].values() for r in recs
            for k in ("value", "key") if r.get(k) is not None]


def confluent_ids(event: dict) -> set[int]:
    return {int.from_bytes(b[1:5], "big") for b in parts(event) if len(b) >= 5 and b[0] == 0}


def glue_ids(event: dict) -> set[uuid.UUID]:
    return {uuid.UUID(bytes=b[2:18]) for b in parts(event) if len(b) >= 18 and b[0] == 3}


class Moto:
    """moto's server with one Glue registry: started for the Glue event only."""

    def __init__(self, work: str) -> None:
        try:
            self.server = local_moto.start(os.path.join(work, "moto.log"))
        except local_moto.MotoStartError as err:
            raise Failed(str(err)) from None
        self.url = self.server.url
        import boto3

        self.glue = boto3.client("glue", endpoint_url=self.url, region_name="us-east-1",
                                 aws_access_key_id="testing", aws_secret_access_key="testing")
        self.glue.create_registry(RegistryName="ci-sam")

    def register(self, name: str, text: str) -> uuid.UUID:
        """As docs/payloads.md's `aws glue create-schema`: the new schema's first version id."""
        resp = self.glue.create_schema(RegistryId={"RegistryName": "ci-sam"}, SchemaName=name,
                                       DataFormat="AVRO", Compatibility="BACKWARD", SchemaDefinition=text)
        return uuid.UUID(resp["SchemaVersionId"])

    def stop(self) -> None:
        self.server.stop()


def with_glue_version(event: dict, version: uuid.UUID) -> dict:
    """docs/payloads.md: put the version id Glue assigned where the sample's placeholder is."""
    for recs in event["records"].values():
        for rec in recs:
            for k in ("value", "key"):
                raw = None if rec.get(k) is None else bytearray(base64.b64decode(rec[k]))
                if raw is not None and len(raw) >= 18 and raw[0] == 3:
                    raw[2:18] = version.bytes
                    rec[k] = base64.b64encode(bytes(raw)).decode()
    return event


def stored(server: local_influxdb.InfluxServer, db: str) -> list[dict]:
    res = server.query("SELECT * FROM /.*/", db=db)["results"][0]
    if "error" in res:
        raise Failed(f"InfluxDB query: {res['error']}")
    return [{"_measurement": s["name"], **dict(zip(s["columns"], v, strict=True))}
            for s in res.get("series", []) for v in s["values"]]


def run_one(paths: Paths, path: str, event: dict, i: int, server: local_influxdb.InfluxServer, env_doc: dict,
            services: dict) -> str:
    name = os.path.basename(path)
    spec = PAYLOAD.get(name)
    if spec is None and not name.startswith(("msk-", "self-managed-")):
        raise Failed(f"{path}: a new kind of sample event; add what it needs to ci_sam_events.py's PAYLOAD table "
                     "(and to docs/payloads.md's), or name it msk-*/self-managed-* if events/env.json suffices")
    spec = spec or {}
    db = f"ci_sam_{i}"
    server.query(f'CREATE DATABASE "{db}"')
    settings = dict(env_doc["InfluxSinkFunction"], CONNECT_INFLUX_URL=server.url, CONNECT_INFLUX_DB=db)
    if "kcql" in spec:
        settings["CONNECT_INFLUX_KCQL"] = spec["kcql"]
    settings.update(spec.get("env", {}))
    function_env: dict[str, str] = {}
    notes = []

    registry = None
    ids = confluent_ids(event)
    if ids:
        files = spec.get("registry", {})
        if not ids <= files.keys():
            raise Failed(f"{path}: carries Confluent schema id(s) {sorted(ids - files.keys())} that ci_sam_events.py's "
                         "PAYLOAD table does not map to a schema file")
        texts = {}
        for sid in sorted(ids):
            with open(os.path.join(SCHEMAS, files[sid]), encoding="utf-8") as fh:
                texts[sid] = fh.read()
        registry = local_registry.start(texts)
        settings["CONNECT_INFLUX_SCHEMA_REGISTRY_URL"] = registry.url
        notes.append(f"registry {registry.url} with id(s) {sorted(ids)}")

    versions = glue_ids(event)
    if versions:
        if versions != {GLUE_PLACEHOLDER} or "glue" not in spec:
            raise Failed(f"{path}: carries Glue schema version id(s) {sorted(map(str, versions))}; ci_sam_events.py "
                         f"expects the placeholder {GLUE_PLACEHOLDER} and a 'glue' schema in its PAYLOAD table")
        if "moto" not in services:
            services["moto"] = Moto(paths.work)
        moto = services["moto"]
        with open(os.path.join(SCHEMAS, spec["glue"]), encoding="utf-8") as fh:
            version = moto.register(f"{os.path.splitext(spec['glue'])[0]}-{i}", fh.read())
        event = with_glue_version(event, version)
        function_env.update(AWS_DUMMY, AWS_ENDPOINT_URL=moto.url)
        notes.append(f"moto Glue version {version}, the runtime's boto3")

    build = Path(paths.build)
    before = lambda_sandbox.tree_state(build)
    try:
        with RuntimeAPI() as api, lambda_sandbox.started(
                build, "handler.app.lambda_handler", api.address, runtime_dir=Path(paths.provided),
                python=paths.py312, function_env={**settings, **function_env},
                log_dir=Path(paths.work) / f"logs-{i}") as fn:
            try:
                outcome = api.wait(api.invoke(event, timeout_s=120), timeout=120, process=fn)
            except RuntimeAPIError as err:
                outcome = None
                why = str(err)
            problems = api.problems
        out, err_text = fn.output()
    finally:
        if registry is not None:
            registry.stop()
    context = f"\n--- the function's log ---\n{(out + err_text)[-4000:]}"
    if outcome is None:
        raise Failed(f"{name}: {why}{context}")
    if outcome.kind is not OutcomeKind.RESPONSE:
        raise Failed(f"{name}: the invocation failed: {outcome.body[-2000:]!r}{context}")
    if problems:
        raise Failed(f"{name}: the Runtime API saw protocol errors: {problems}{context}")
    if lambda_sandbox.tree_state(build) != before:
        raise Failed(f"{name}: the task root changed during the run (it is read-only in Lambda){context}")
    try:
        response = outcome.json()
    except ValueError:
        raise Failed(f"{name}: the response is not JSON: {outcome.body[-2000:]!r}{context}") from None
    if response != {"batchItemFailures": []}:
        raise Failed(f"{name}: unexpected response {response}{context}")

    values = [r["value"] for recs in event["records"].values() for r in recs]
    expected = sum(v is not None for v in values)
    rows = stored(server, db)
    if len(rows) != expected:
        raise Failed(f"{name}: {len(rows)} point(s) in InfluxDB, expected {expected} (one per non-null value):"
                     f"\n{rows}{context}")
    if "rows" in spec:
        want = spec["rows"]
        for n, (row, fields) in enumerate(zip(rows, want, strict=True)):
            wrong = {k: (row.get(k), v) for k, v in fields.items() if row.get(k) != v}
            if wrong:
                raise Failed(f"{name}: point {n} differs ((stored, expected) per column): {wrong}\n"
                             f"point: {row}{context}")
    else:  # JSON values: the first record's scalar members are the first point's fields
        first = json.loads(base64.b64decode(next(v for v in values if v is not None)))
        if not any(all(row.get(k) == v for k, v in first.items() if not isinstance(v, dict | list)) for row in rows):
            raise Failed(f"{name}: the first record {first} is not in InfluxDB: {rows}{context}")
    for measurement, types in spec.get("types", {}).items():
        res = server.query(f'SHOW FIELD KEYS FROM "{measurement}"', db=db)["results"][0]
        have = {k: t for series in res.get("series", []) for k, t in series["values"]}
        wrong = {k: (have.get(k), t) for k, t in types.items() if have.get(k) != t}
        if wrong:
            raise Failed(f"{name}: field types of {measurement} differ ((stored, expected)): {wrong}{context}")
    if registry is not None:
        asked = dict(registry.requests)
        if asked != {f"/schemas/ids/{sid}": 1 for sid in ids}:
            raise Failed(f"{name}: the registry was asked {asked}; expected one GET per schema id {sorted(ids)}")
    extra = f" ({'; '.join(notes)})" if notes else ""
    return f"{name}: {response} - {len(rows)} point(s) in InfluxDB, as expected{extra}"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 4:
        sys.exit("usage: python -m influx_sink_tools.ci_sam_events WORK PY312 BUILD RUNTIME_DIR")
    paths = Paths(*args)
    check_docs_table()
    events = []
    for path in sorted(glob.glob("events/*.json")):
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
        if isinstance(doc, dict) and "records" in doc:
            events.append((path, doc))
    names = {os.path.basename(p) for p, _ in events}
    missing = sorted(set(PAYLOAD) - names)
    if missing or not any(n.startswith("msk-") for n in names):
        sys.exit(f"events/: no msk-*.json, or PAYLOAD names events that are gone: {missing}")

    failures = []
    services: dict = {}
    server = local_influxdb.start(os.path.join(paths.work, "influxd"))
    try:
        with open("events/env.json", encoding="utf-8") as fh:
            env_doc = json.load(fh)
        for i, (path, event) in enumerate(events):
            try:
                print(run_one(paths, path, event, i, server, env_doc, services), flush=True)
            except Failed as err:
                print(f"FAILED {err}", flush=True)
                failures.append(os.path.basename(path))
    finally:
        if "moto" in services:
            services["moto"].stop()
        server.stop()
    if failures:
        sys.exit(f"{len(failures)} of {len(events)} sample event(s) failed: {', '.join(failures)}")
    print(f"all {len(events)} sample events: the built artifact, under awslambdaric, wrote what they hold")


if __name__ == "__main__":
    main()
