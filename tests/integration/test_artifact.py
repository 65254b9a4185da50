"""What ``sam build`` packages: the function's package, kcql/ and the runtime dependencies, nothing else.

The artifact is built by the Makefile as sam runs it (influx_sink_tools/lambda_sandbox.py's ``build_artifact``,
or the build named by INFLUX_SINK_ARTIFACT). Every top-level entry besides handler/ and kcql/ must
belong to a distribution that pip installed for pyproject.toml's ``dependencies`` (by the
distributions' own Requires-Dist). No module of handler/ or kcql/ may import the developer tools:
argparse (command lines), the local runner's Kafka clients (kafka, confluent_kafka) and MSK IAM
signer, or influx_sink_tools — checked on the sources with ``ast``, in the artifact and in this tree,
so that an import added anywhere, even one that only runs in a rarely taken branch, is found without
running it.
"""

from __future__ import annotations

import ast
import os
import re
import tomllib
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path

import pytest

from influx_sink_tools import lambda_sandbox as sandbox
from tests.conftest import ROOT

FUNCTION_PACKAGES = ("handler", "kcql")
FORBIDDEN = ("argparse", "kafka", "confluent_kafka", "aws_msk_iam_sasl_signer", "influx_sink_tools")
# Old module paths of the tools, which must not come back into the function's package as real code.
MOVED = ("handler.cli", "handler.consume", "handler.eventgen", "handler.decode.frame")
# transition shim: removed when the redesign lands (these re-export the moved modules; none runs in Lambda)
TRANSITION_SHIMS: set[str] = set()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``make build-InfluxSinkFunction`` into a fresh folder (or INFLUX_SINK_ARTIFACT: a build)."""
    if os.environ.get("INFLUX_SINK_ARTIFACT"):
        return Path(os.environ["INFLUX_SINK_ARTIFACT"]).resolve()
    try:
        python = sandbox.python312()
    except sandbox.SandboxError as err:
        pytest.skip(str(err))
    return sandbox.build_artifact(tmp_path_factory.mktemp("sam-build") / "InfluxSinkFunction", python)


def _dist_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert found, requirement
    return _dist_name(found.group(1))


def _distributions(root: Path) -> dict[str, Path]:
    """Each distribution pip installed into ``root``: its normalized name → its .dist-info folder."""
    out = {}
    for info in root.glob("*.dist-info"):
        meta = Parser().parsestr((info / "METADATA").read_text(encoding="utf-8"), headersonly=True)
        out[_dist_name(meta["Name"])] = info
    return out


def _requires(info: Path) -> set[str]:
    """A distribution's unconditional requirements (those needed only by an extra are left out)."""
    meta = Parser().parsestr((info / "METADATA").read_text(encoding="utf-8"), headersonly=True)
    return {_requirement_name(r) for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r}


def _installed_top_levels(info: Path) -> set[str]:
    """The top-level names a distribution's RECORD says pip put there."""
    names = set()
    for line in (info / "RECORD").read_text(encoding="utf-8").splitlines():
        path = line.rsplit(",", 2)[0]
        names.add(path.split("/", 1)[0])
    return names


def test_the_artifact_holds_only_the_function_kcql_and_runtime_dependencies(artifact: Path) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {_requirement_name(r) for r in project["dependencies"]}
    dists = _distributions(artifact)
    assert declared <= dists.keys(), f"runtime dependencies missing from the build: {sorted(declared - dists.keys())}"
    needed, todo = set(), list(declared)
    while todo:
        name = todo.pop()
        if name in needed or name not in dists:
            continue  # not installed: a requirement for another Python or platform
        needed.add(name)
        todo.extend(_requires(dists[name]))
    assert dists.keys() <= needed, f"distributions no runtime dependency needs: {sorted(dists.keys() - needed)}"
    by_pip = set().union(*(_installed_top_levels(info) for info in dists.values()))
    extra = {p.name for p in artifact.iterdir()} - by_pip - set(FUNCTION_PACKAGES) - {"__pycache__"}
    assert extra == set(), f"the build holds what is neither the function, kcql/ nor a runtime dependency: {extra}"
    assert not (artifact / "influx_sink_tools").exists()


def _imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Every absolute module a source imports: import statements and importlib.import_module("...") calls."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            yield node.lineno, node.args[0].value


def tool_imports(root: Path) -> list[str]:
    """``path:line: module`` for each import of a developer tool by the function's package under ``root``."""
    found = []
    for package in FUNCTION_PACKAGES:
        for src in sorted((root / package).rglob("*.py")):
            rel = src.relative_to(root).as_posix()
            if rel in TRANSITION_SHIMS:
                continue
            for line, module in sorted(_imported_modules(ast.parse(src.read_text(encoding="utf-8"), rel))):
                if module.split(".")[0] in FORBIDDEN or any(module == m or module.startswith(m + ".") for m in MOVED):
                    found.append(f"{rel}:{line}: {module}")
    return found


def test_the_function_in_the_artifact_imports_no_tool(artifact: Path) -> None:
    assert (artifact / "handler" / "app.py").is_file() and (artifact / "kcql").is_dir()
    assert tool_imports(artifact) == []


def test_the_function_in_this_tree_imports_no_tool() -> None:
    assert tool_imports(ROOT) == []


def test_the_import_check_sees_every_form(tmp_path: Path) -> None:
    """The scan itself: each way of importing a tool is reported, a look-alike name is not."""
    (tmp_path / "kcql").mkdir()
    (tmp_path / "handler" / "decode").mkdir(parents=True)
    (tmp_path / "handler" / "decode" / "x.py").write_text(
        "import argparse\n"
        "def f():\n    from kafka.errors import KafkaError\n"
        "import importlib\nimportlib.import_module('influx_sink_tools.cli')\n"
        "from handler import consume\n"
        "import kafkaesque\nfrom handler import app\n", encoding="utf-8")
    assert tool_imports(tmp_path) == ["handler/decode/x.py:1: argparse", "handler/decode/x.py:3: kafka.errors",
                                      "handler/decode/x.py:3: kafka.errors.KafkaError",
                                      "handler/decode/x.py:5: influx_sink_tools.cli",
                                      "handler/decode/x.py:6: handler.consume"]


def test_protobuf_runs_on_upb_in_the_artifact_on_both_architectures(artifact: Path) -> None:
    """protobuf's stable-ABI extension has one file name on both architectures; the build gives each
    architecture's copy its own interpreter's suffix, and the runtime's Python loads upb from it."""
    upb = artifact / "google" / "_upb"
    names = sorted(p.name for p in upb.glob("_message*.so"))
    assert names == ["_message.cpython-312-aarch64-linux-gnu.so", "_message.cpython-312-x86_64-linux-gnu.so"]
    assert not list(artifact.rglob("*.abi3.so"))
    import subprocess

    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from google.protobuf.internal import api_implementation; import handler.decode.protobuf; "
            "print(api_implementation.Type())")
    out = subprocess.run([sandbox.python312(), "-S", "-c", code, str(artifact)], capture_output=True, text=True,
                         check=True, cwd=artifact)
    assert out.stdout.strip() == "upb"
