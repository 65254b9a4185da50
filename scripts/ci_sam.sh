#!/usr/bin/env bash
# CI checks of the SAM application (called by scripts/test; runs alone too: bash scripts/ci_sam.sh).
#
#  1. a tools virtualenv .tools/ with aws-sam-cli and cfn-lint (they pin boto3 & co: never in .venv)
#  2. sam validate --lint
#  3. the template translated by SAM's own translator, then cfn-lint on the result
#  4. samconfig.toml: every parameter override of every environment is a template parameter
#  5. sam build (the Makefile), then a look at the package: handler/, kcql/, runtime deps, nothing else
#  6. the built artifact invoked with the runtime's own Python (3.12, site-packages off, PYTHONPATH =
#     the build only) on every sample event (events/*.json with "records"), against a real InfluxDB
#     (scripts/local_influxdb.py), with events/env.json pointed at it. msk-*.json and
#     self-managed-*.json need nothing else; events/payload-*.json also get what docs/payloads.md says
#     they need: a Confluent registry (scripts/local_registry.py) with the schema ids they carry, an
#     unframed-Avro schema setting, or AWS Glue in moto's server (plus the boto3 the Lambda runtime
#     provides, on PYTHONPATH after the build). Each response must be an empty batchItemFailures and
#     InfluxDB must hold one point per non-null record value, with the expected fields.
#
# Nothing here talks to AWS: telemetry and the update check are off, no credentials are used (moto's
# server on loopback stands in for Glue, with dummy credentials).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SAM_CLI_PIN="aws-sam-cli==1.170.0"
CFN_LINT_PIN="cfn-lint==1.58.0"

step() { printf '\n== ci_sam: %s\n' "$*"; }
die() { printf 'ci_sam: FAILED: %s\n' "$*" >&2; exit 1; }

# The Lambda runtime's Python: pyenv's 3.12 build, else a python3.12 on PATH.
PY312=""
for cand in "$HOME"/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do
  if [ -x "$cand" ] && "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
    PY312=$cand; break
  fi
done
[ -n "$PY312" ] || die "python3.12 not found (sam build and the runtime check need the Lambda runtime's Python)"
PY312_DIR=$(dirname "$PY312")
export PATH="$PY312_DIR:$PATH"

export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export SAM_CLI_TELEMETRY=0 AWS_EC2_METADATA_DISABLED=true
# sam keeps its settings (and the time of its weekly PyPI version check) here, not in ~/.aws-sam.
export __SAM_CLI_APP_DIR="$ROOT/.tools/sam-home"

[ -x .venv/bin/python ] || bash scripts/bootstrap.sh  # the orchestration below uses the project's .venv

step "tools venv (.tools: $SAM_CLI_PIN, $CFN_LINT_PIN)"
stamp=".tools/.installed-$(printf '%s %s %s' "$SAM_CLI_PIN" "$CFN_LINT_PIN" "$PY312" | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  rm -rf .tools
  "$PY312" -m venv .tools
  .tools/bin/python -m pip install -q --disable-pip-version-check "$SAM_CLI_PIN" "$CFN_LINT_PIN" 2>&1 \
    | grep -v -e '^WARNING: Location' || true
  .tools/bin/sam --version >/dev/null || die "aws-sam-cli did not install"
  .tools/bin/cfn-lint --version >/dev/null || die "cfn-lint did not install"
  touch "$stamp"
fi
mkdir -p "$__SAM_CLI_APP_DIR"
printf '{"telemetryEnabled": false, "lastVersionCheck": %s}\n' "$(date +%s)" > "$__SAM_CLI_APP_DIR/metadata.json"
echo "$(.tools/bin/sam --version); cfn-lint $(.tools/bin/cfn-lint --version | awk '{print $2}'); runtime $("$PY312" -V)"

step "sam validate --lint"
.tools/bin/sam validate --lint --template-file template.yaml || die "sam validate --lint"

work=$(mktemp -d)
cleanup() {
  rm -rf "$work"
}
trap cleanup EXIT

step "SAM translation + cfn-lint on the translated template"
.tools/bin/python - "$work/translated.json" <<'PY' || die "SAM translation"
import json
import sys

from samcli.yamlhelper import yaml_parse
from samtranslator.translator.transform import transform


class NoManagedPolicies:
    """The template names managed policies by ARN only: nothing to look up in IAM."""

    def load(self):
        return {}


with open("template.yaml", encoding="utf-8") as fh:
    template = yaml_parse(fh.read())
for resource in template["Resources"].values():
    if resource["Type"] == "AWS::Serverless::Function":
        resource["Properties"]["CodeUri"] = "s3://placeholder-bucket/influx-sink.zip"  # what sam package puts
translated = transform(template, {}, NoManagedPolicies())
leftover = sorted({r["Type"] for r in translated["Resources"].values() if r["Type"].startswith("AWS::Serverless")})
if leftover:
    sys.exit(f"untranslated resources: {leftover}")
with open(sys.argv[1], "w", encoding="utf-8") as fh:
    json.dump(translated, fh, indent=1)
print(f"{len(translated['Resources'])} resources: {', '.join(sorted(translated['Resources']))}")
PY
.tools/bin/cfn-lint --regions us-east-1 -- "$work/translated.json" || die "cfn-lint on the translated template"
echo "cfn-lint: no findings"

step "samconfig.toml environments"
.tools/bin/python - <<'PY' || die "samconfig.toml"
import sys
import tomllib

from samcli.cli.types import CfnParameterOverridesType
from samcli.yamlhelper import yaml_parse

with open("template.yaml", encoding="utf-8") as fh:
    params = yaml_parse(fh.read())["Parameters"]
with open("samconfig.toml", "rb") as fh:
    config = tomllib.load(fh)
problems = []
for env in ("default", "prod"):
    deploy = config.get(env, {}).get("deploy", {}).get("parameters", {})
    overrides = CfnParameterOverridesType().convert(deploy.get("parameter_overrides", ""), None, None)
    if not overrides:
        problems.append(f"[{env}] has no deploy parameter_overrides")
    for key, value in overrides.items():
        if key not in params:
            problems.append(f"[{env}] {key} is not a template parameter")
        elif "AllowedValues" in params[key] and value not in [str(v) for v in params[key]["AllowedValues"]]:
            problems.append(f"[{env}] {key}={value!r} is not one of {params[key]['AllowedValues']}")
    missing = [k for k, p in params.items() if "Default" not in p and k not in overrides]
    if missing:
        problems.append(f"[{env}] no value for required parameters {missing}")
    print(f"[{env}] {len(overrides)} overrides; stack {config[env]['global']['parameters']['stack_name']}")
if problems:
    sys.exit("\n".join(problems))
PY

step "sam build"
rm -rf .aws-sam/build
.tools/bin/sam build --build-in-source --no-cached --template-file template.yaml || die "sam build"
BUILD="$ROOT/.aws-sam/build/InfluxSinkFunction"
[ -f "$BUILD/handler/app.py" ] && [ -f "$BUILD/kcql/grammar.py" ] || die "the build has no handler/ or kcql/"
for unwanted in tests events docs scripts bench .venv .tools pyproject.toml Makefile template.yaml samconfig.toml; do
  [ ! -e "$BUILD/$unwanted" ] || die "the build contains $unwanted (only handler/, kcql/ and runtime deps belong there)"
done
size_kb=$(du -sk "$BUILD" | cut -f1)
[ "$size_kb" -lt 200000 ] || die "the build is ${size_kb} KB (Lambda allows 250 MB unzipped)"
echo "package: $(ls "$BUILD" | tr '\n' ' ')(${size_kb} KB)"

# The runtime's Python with nothing but the package: no site-packages, no .venv, no user site.
runtime_python() {
  env -i PATH="$PY312_DIR:/usr/bin:/bin" HOME="$HOME" LANG=C.UTF-8 PYTHONPATH="$BUILD" PYTHONNOUSERSITE=1 \
    PYTHONDONTWRITEBYTECODE=1 "$PY312" -S "$@"
}
runtime_python -c '
import fastavro._read, pyparsing, aws_lambda_powertools, handler.app, kcql  # native fastavro for this machine
import sys
bad = [p for p in sys.path if "site-packages" in p or ".venv" in p]
assert not bad, bad
' || die "the package does not import with the runtime's Python alone"

# What the Lambda runtime ships besides the function's package: boto3 and botocore (with jmespath,
# python-dateutil, urllib3, s3transfer and six), on sys.path after the package (/var/runtime comes
# after /var/task). pyenv's 3.12 has none of them, so this folder stands in for the runtime's copy,
# for the one sample event that needs it (AWS Glue framing). The build itself must not carry boto3.
# Installed once with the tools venv's pip (same Python) and kept in .tools/ (gitignored).
RUNTIME_SDK_PINS=("boto3==1.40.4" "botocore==1.40.4")  # about what python3.12 ships (AWS: "Runtime-included SDK versions")
PROVIDED="$ROOT/.tools/runtime-provided"
pstamp="$PROVIDED/.installed-$(printf '%s ' "${RUNTIME_SDK_PINS[@]}" | sha1sum | cut -c1-12)"
if [ ! -f "$pstamp" ]; then
  rm -rf "$PROVIDED"
  .tools/bin/python -m pip install -q --disable-pip-version-check --no-compile --target "$PROVIDED" \
    "${RUNTIME_SDK_PINS[@]}" || die "pip install --target $PROVIDED ${RUNTIME_SDK_PINS[*]} (the runtime-provided SDK)"
  touch "$pstamp"
fi
extra=$(cd "$PROVIDED" && ls -A | grep -v -E '^(boto3|botocore|jmespath|dateutil|urllib3|s3transfer|six)([-_.].*)?$|^python_dateutil-|^bin$|^\.installed-' || true)
[ -z "$extra" ] || die "$PROVIDED holds more than the runtime's SDK: $extra"

runtime_python -c '
import importlib.util
assert importlib.util.find_spec("boto3") is None, "boto3 is in the build (the Lambda runtime provides it)"
' || die "the package bundles boto3"

step "invoke the built artifact on every sample event against a real InfluxDB (and registries)"
# Every events/*.json that is an event (has "records"). msk-*.json and self-managed-*.json run with
# events/env.json alone; events/payload-*.json get what docs/payloads.md's "Sample events" table
# says they need (the table below mirrors it, and is checked against it):
#  - a Confluent Schema Registry (scripts/local_registry.py) serving the schema ids the values carry;
#  - CONNECT_INFLUX_VALUE_AVRO_SCHEMA pointing at events/schemas/*.avsc for unframed Avro;
#  - for AWS Glue framing, moto's server (.venv/bin/moto_server) with the schema registered, the
#    sample's placeholder schema version id replaced by the one moto assigned, AWS_ENDPOINT_URL and
#    dummy credentials, and PYTHONPATH = the build, then $PROVIDED (the runtime's boto3).
# Each response must be an empty batchItemFailures (env.json's error policy is THROW: a record
# that does not decode fails the invocation); InfluxDB must hold one point per non-null value,
# with the fields listed below; the registry must have been asked once per schema id.
.venv/bin/python - "$work" "$PY312" "$BUILD" "$PROVIDED" <<'PY' || die "invoking the built artifact"
import base64
import glob
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from typing import Any

sys.path.insert(0, "scripts")
import local_influxdb  # noqa: E402
import local_registry  # noqa: E402

work, py312, build, provided = sys.argv[1:]
ROOT = os.getcwd()
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


def check_docs_table() -> None:
    """The table above and docs/payloads.md's must agree: the docs are what users run."""
    with open("docs/payloads.md", encoding="utf-8") as fh:
        rows = {line.split("|")[1].strip().strip("`"): line for line in fh if line.startswith("| `payload-")}
    problems = [f"{name}: not in docs/payloads.md's table" for name in PAYLOAD if name not in rows]
    problems += [f"{name}: docs/payloads.md gives another KCQL than `{spec['kcql']}`"
                 for name, spec in PAYLOAD.items() if name in rows and f"`{spec['kcql']}`" not in rows[name]]
    problems += [f"{name}: in docs/payloads.md's table, not in ci_sam.sh's" for name in rows if name not in PAYLOAD]
    if problems:
        sys.exit("ci_sam.sh and docs/payloads.md disagree:\n" + "\n".join(problems))


def parts(event: dict) -> list[bytes]:
    """Every non-null value and key of the event, decoded."""
    return [base64.b64decode(r[k]) for recs in event["records"].values() for r in recs
            for k in ("value", "key") if r.get(k) is not None]


def confluent_ids(event: dict) -> set[int]:
    return {int.from_bytes(b[1:5], "big") for b in parts(event) if len(b) >= 5 and b[0] == 0}


def glue_ids(event: dict) -> set[uuid.UUID]:
    return {uuid.UUID(bytes=b[2:18]) for b in parts(event) if len(b) >= 18 and b[0] == 3}


class Moto:
    """moto's server on a free loopback port, with one Glue registry: started for the Glue event only."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.log = os.path.join(work, "moto.log")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([os.path.join(ROOT, ".venv", "bin", "moto_server"), "-H", "127.0.0.1",
                                          "-p", str(port)], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1).read()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    with open(self.log, encoding="utf-8", errors="replace") as fh:
                        log = fh.read()[-2000:]
                    raise Failed(f"moto_server did not start:\n{log}") from None
                time.sleep(0.1)
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
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


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


def run_one(path: str, event: dict, i: int, server: local_influxdb.InfluxServer, env_doc: dict,
            services: dict) -> str:
    name = os.path.basename(path)
    spec = PAYLOAD.get(name)
    if spec is None and not name.startswith(("msk-", "self-managed-")):
        raise Failed(f"{path}: a new kind of sample event; add what it needs to ci_sam.sh's PAYLOAD table "
                     "(and to docs/payloads.md's), or name it msk-*/self-managed-* if events/env.json suffices")
    spec = spec or {}
    db = f"ci_sam_{i}"
    server.query(f'CREATE DATABASE "{db}"')
    settings = dict(env_doc["InfluxSinkFunction"], CONNECT_INFLUX_URL=server.url, CONNECT_INFLUX_DB=db)
    if "kcql" in spec:
        settings["CONNECT_INFLUX_KCQL"] = spec["kcql"]
    settings.update(spec.get("env", {}))
    proc_env = {"PATH": f"{os.path.dirname(py312)}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/"),
                "LANG": "C.UTF-8", "PYTHONPATH": build, "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1",
                "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}  # Lambda sets the region
    notes = []

    registry = None
    ids = confluent_ids(event)
    if ids:
        files = spec.get("registry", {})
        if not ids <= files.keys():
            raise Failed(f"{path}: carries Confluent schema id(s) {sorted(ids - files.keys())} that ci_sam.sh's "
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
            raise Failed(f"{path}: carries Glue schema version id(s) {sorted(map(str, versions))}; ci_sam.sh "
                         f"expects the placeholder {GLUE_PLACEHOLDER} and a 'glue' schema in its PAYLOAD table")
        if "moto" not in services:
            services["moto"] = Moto()
        moto = services["moto"]
        with open(os.path.join(SCHEMAS, spec["glue"]), encoding="utf-8") as fh:
            version = moto.register(f"{os.path.splitext(spec['glue'])[0]}-{i}", fh.read())
        event = with_glue_version(event, version)
        path = os.path.join(work, name)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(event, fh)
        proc_env.update(AWS_DUMMY, AWS_ENDPOINT_URL=moto.url, PYTHONPATH=f"{build}:{provided}")
        notes.append(f"moto Glue version {version}, runtime-provided boto3")

    env_file = os.path.join(work, f"env-{i}.json")
    with open(env_file, "w", encoding="utf-8") as fh:
        json.dump({"InfluxSinkFunction": settings}, fh)
    try:
        # cwd = the build, as /var/task is in Lambda: nothing may rely on the repository's layout.
        proc = subprocess.run([py312, "-S", "-m", "handler.cli", "invoke", os.path.abspath(path),
                               "--env-vars", env_file], cwd=build, env=proc_env, capture_output=True, text=True,
                              timeout=120, check=False)
    finally:
        if registry is not None:
            registry.stop()
    context = f"\n--- stderr (the function's log) ---\n{proc.stderr[-4000:]}"
    if proc.returncode != 0:
        raise Failed(f"{name}: exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-2000:]}{context}")
    try:
        response = json.loads(proc.stdout)
    except ValueError:
        raise Failed(f"{name}: the response is not JSON: {proc.stdout[-2000:]!r}{context}") from None
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
server = local_influxdb.start(os.path.join(work, "influxd"))
try:
    with open("events/env.json", encoding="utf-8") as fh:
        env_doc = json.load(fh)
    for i, (path, event) in enumerate(events):
        try:
            print(run_one(path, event, i, server, env_doc, services), flush=True)
        except Failed as err:
            print(f"FAILED {err}", flush=True)
            failures.append(os.path.basename(path))
finally:
    if "moto" in services:
        services["moto"].stop()
    server.stop()
if failures:
    sys.exit(f"{len(failures)} of {len(events)} sample event(s) failed: {', '.join(failures)}")
print(f"all {len(events)} sample events: the built artifact wrote what they hold")
PY

printf '\nci_sam: all SAM checks passed\n'
