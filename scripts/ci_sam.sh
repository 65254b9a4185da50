#!/usr/bin/env bash
# CI checks of the SAM application (called by scripts/test; runs alone too: bash scripts/ci_sam.sh).
#
#  1. a tools virtualenv .tools/ with aws-sam-cli and cfn-lint (they pin boto3 & co: never in .venv)
#  2. sam validate --lint
#  3. the template translated by SAM's own translator, then cfn-lint on the result
#  4. samconfig.toml: every parameter override of every environment is a template parameter
#  5. sam build (the Makefile), then a look at the package: handler/, kcql/, runtime deps, nothing else,
#     and every .py with its unchecked-hash bytecode for Python 3.12
#  6. the built artifact run as the python3.12 runtime runs it: AWS's runtime interface client
#     (awslambdaric, with boto3, from a stand-in for /var/runtime), a read-only task root and a Lambda
#     Runtime API on loopback, on every sample event (events/*.json with "records"), against a real
#     InfluxDB (influx_sink_tools.local_influxdb), with events/env.json pointed at it, plus what each
#     events/payload-*.json needs (influx_sink_tools/ci_sam_events.py says what). Each response must be an
#     empty batchItemFailures and InfluxDB must hold one point per non-null record value, with the
#     expected fields.
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
.tools/bin/python -m influx_sink_tools.sam_checks translate "$work/translated.json" || die "SAM translation"
.tools/bin/cfn-lint --regions us-east-1 -- "$work/translated.json" || die "cfn-lint on the translated template"
echo "cfn-lint: no findings"

step "samconfig.toml environments"
.tools/bin/python -m influx_sink_tools.sam_checks samconfig || die "samconfig.toml"

step "sam build"
rm -rf .aws-sam/build
.tools/bin/sam build --build-in-source --no-cached --template-file template.yaml || die "sam build"
BUILD="$ROOT/.aws-sam/build/InfluxSinkFunction"
[ -f "$BUILD/handler/app.py" ] && [ -f "$BUILD/kcql/grammar.py" ] || die "the build has no handler/ or kcql/"
for unwanted in influx_sink_tools tests events docs scripts bench .venv .tools pyproject.toml Makefile template.yaml samconfig.toml; do
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

# What the Lambda runtime ships besides the function's package: its runtime interface client
# (awslambdaric) and boto3/botocore (with jmespath, python-dateutil, urllib3, s3transfer and six), on
# sys.path after the package (/var/runtime comes after /var/task). pyenv's 3.12 has none of them, so
# this folder stands in for the runtime's copy (influx_sink_tools/lambda_sandbox.py pins the versions); the build
# itself must not carry boto3. Installed once by the runtime's Python and kept in .tools/ (gitignored).
PROVIDED="$ROOT/.tools/runtime-provided"
.venv/bin/python -m influx_sink_tools.lambda_sandbox runtime-dir "$PROVIDED" --python "$PY312" \
  || die "the runtime-provided folder $PROVIDED (awslambdaric, boto3)"

.venv/bin/python -m influx_sink_tools.lambda_sandbox check-bytecode "$BUILD" || die "the package's bytecode"

runtime_python -c '
import importlib.util
assert importlib.util.find_spec("boto3") is None, "boto3 is in the build (the Lambda runtime provides it)"
' || die "the package bundles boto3"

step "the built artifact under awslambdaric ($(.venv/bin/python -m influx_sink_tools.lambda_sandbox readonly-mode)) on every sample event"
.venv/bin/python -m influx_sink_tools.ci_sam_events "$work" "$PY312" "$BUILD" "$PROVIDED" || die "the built artifact on the sample events"

printf '\nci_sam: all SAM checks passed\n'
