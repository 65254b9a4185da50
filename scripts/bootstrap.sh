#!/usr/bin/env bash
# Make this checkout ready: the Debian servers the tests use, and .venv with the dev extra.
# Idempotent and quiet when everything is there already. Sourced or run by scripts/test and scripts/demo.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v influxd >/dev/null 2>&1 || [ -x /usr/bin/influxd ] || need_apt+=(influxdb)
command -v victoria-metrics >/dev/null 2>&1 || [ -x /usr/bin/victoria-metrics ] || need_apt+=(victoria-metrics)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing ${need_apt[*]} (Debian)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "bootstrap: please install the Debian packages: ${need_apt[*]}" >&2
  fi
fi

find_python() {
  for cand in python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12 python3.13 \
              "$HOME"/.pyenv/versions/3.13*/bin/python3.13 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
      echo "$cand"; return 0
    fi
  done
  return 1
}

stamp=.venv/.installed-$(cat pyproject.toml | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  if [ ! -x .venv/bin/python ]; then
    py=$(find_python) || { echo "bootstrap: need Python >= 3.11" >&2; exit 1; }
    echo "bootstrap: creating .venv with $py" >&2
    "$py" -m venv .venv
  fi
  echo "bootstrap: installing the project with its dev extra" >&2
  log=.venv/install.log
  if ! { .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip \
         && .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'; } >"$log" 2>&1; then
    cat "$log" >&2; echo "bootstrap: pip install failed" >&2; exit 1
  fi
  .venv/bin/python -c 'import handler, kcql, pytest, hypothesis' 
  rm -f .venv/.installed-*
  touch "$stamp"
fi
