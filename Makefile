# Build of the Lambda package for `sam build` (template.yaml: Metadata BuildMethod makefile).
#
# sam runs `make build-InfluxSinkFunction` with ARTIFACTS_DIR set. The package holds only what
# runs in Lambda: handler/, kcql/ and the runtime dependencies listed in pyproject.toml's
# `dependencies` (boto3 is already in the Lambda runtime). No tests, events, docs or dev tools.
#
# Native wheels (fastavro, protobuf's upb) are installed for both Lambda architectures, x86_64 and
# arm64: their extension modules have different file names (…-x86_64-linux-gnu.so,
# …-aarch64-linux-gnu.so), so one package runs on either, whatever the template's Architecture
# parameter says (sam does not tell make which one it is building for). A stable-ABI module
# (…abi3.so, as protobuf ships google/_upb/_message.abi3.so) has one name on both, so each
# architecture's copy is renamed to that architecture's own suffix, which only its interpreter
# looks for (importlib.machinery.EXTENSION_SUFFIXES).
#
# Bytecode: Lambda's task root (/var/task) is read-only, so a package without bytecode is compiled
# from source on every cold start and the result thrown away. Every .py is therefore compiled here,
# by the runtime's own Python version (the magic number must match), into __pycache__ as
# unchecked-hash .pyc: the importer then loads it without looking at the source's mtime (zip
# extraction does not keep it) or hashing the source. The code objects name /var/task/... rather
# than this machine's build directory. A .py edited inside the package after the build would not
# be noticed: rebuild instead.

PYTHON ?= python3.12
LAMBDA_PYTHON_VERSION ?= 3.12
LAMBDA_TASK_ROOT ?= /var/task
PLATFORMS ?= manylinux2014_x86_64 manylinux2014_aarch64
PIP_FLAGS ?= --quiet --disable-pip-version-check --no-compile

.PHONY: build-InfluxSinkFunction check-artifacts-dir check-python

check-artifacts-dir:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (run through sam build)" >&2; exit 1; }

check-python:
	@v=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])') && test "$$v" = "$(LAMBDA_PYTHON_VERSION)" || \
	  { echo "$(PYTHON) is Python $$v; the bytecode must be compiled by the runtime's Python $(LAMBDA_PYTHON_VERSION)" >&2; exit 1; }

build-InfluxSinkFunction: check-artifacts-dir check-python
	@set -e; \
	work=$$(mktemp -d); trap 'rm -rf "$$work"' EXIT; \
	$(PYTHON) -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
	  > "$$work/requirements.txt"; \
	for plat in $(PLATFORMS); do \
	  $(PYTHON) -m pip install $(PIP_FLAGS) --only-binary=:all: --implementation cp \
	    --python-version $(LAMBDA_PYTHON_VERSION) --platform $$plat \
	    --target "$$work/$$plat" -r "$$work/requirements.txt"; \
	  case $$plat in *x86_64) arch=x86_64;; *aarch64) arch=aarch64;; *) echo "unknown platform $$plat" >&2; exit 1;; esac; \
	  find "$$work/$$plat" -name '*.abi3.so' | while read -r so; do \
	    mv "$$so" "$${so%.abi3.so}.cpython-$(subst .,,$(LAMBDA_PYTHON_VERSION))-$$arch-linux-gnu.so"; \
	  done; \
	done; \
	mkdir -p "$(ARTIFACTS_DIR)"; \
	first=1; for plat in $(PLATFORMS); do \
	  if [ $$first = 1 ]; then cp -R "$$work/$$plat/." "$(ARTIFACTS_DIR)/"; first=0; \
	  else cp -R -n "$$work/$$plat/." "$(ARTIFACTS_DIR)/"; fi; \
	done; \
	rm -rf "$(ARTIFACTS_DIR)/bin"; \
	cp -R handler kcql "$(ARTIFACTS_DIR)/"; \
	find "$(ARTIFACTS_DIR)" -name __pycache__ -type d -prune -exec rm -rf {} +; \
	root=$$(cd "$(ARTIFACTS_DIR)" && pwd -P); \
	$(PYTHON) -m compileall -q -j 0 --invalidation-mode unchecked-hash -s "$$root" -p "$(LAMBDA_TASK_ROOT)" "$$root"
