"""Cold start as Lambda runs it: part 2 of bench/run.py; runs alone too (``.venv/bin/python bench/cold.py``).

Each run is a fresh execution environment, started as the python3.12 runtime starts one
(influx_sink_tools/lambda_sandbox.py): ``python3.12 -S -m awslambdaric <handler>`` with the task root and the
/var/runtime stand-in (awslambdaric, boto3) read-only, so no bytecode cache can be written, and a
Runtime API on loopback (influx_sink_tools/lambda_runtime_api.py) that already holds the event. A run is timed
from just before the process is spawned to the moment its first response reaches the Runtime API,
and split at the process's first ``GET /invocation/next``: *init* (interpreter, runtime client,
handler module import) and *invoke* (the event handed out until its response arrived).

Functions, run the same way, in rotating order within each repetition (paired):

- ``hello-boto3``: ``import boto3`` at module level, a handler that returns: the target;
- ``handler``: the package as ``make build-InfluxSinkFunction`` builds it (with its bytecode), mapping
  and writing a 1-record JSON batch into the real InfluxDB;
- ``handler-no-bytecode``: the same package without ``__pycache__`` (every module compiled from
  source on every cold start: what a package without bytecode costs in a read-only task root).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for p in (BENCH, ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import workload  # noqa: E402

from influx_sink_tools import lambda_sandbox as sandbox  # noqa: E402
from influx_sink_tools import local_influxdb  # noqa: E402
from influx_sink_tools.lambda_runtime_api import OutcomeKind, RuntimeAPI  # noqa: E402

KINDS = ("hello-boto3", "handler", "handler-no-bytecode")
HELLO = '''"""Hello world: what a function that only imports boto3 costs at cold start."""

import boto3  # noqa: F401


def lambda_handler(event, context):
    return {"batchItemFailures": []}
'''


class Functions:
    """The three task roots, the runtime folder and the runtime's Python, set up once."""

    def __init__(self, tmp: Path) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.python = sandbox.python312()
        self.runtime_dir = sandbox.ensure_runtime_dir(sandbox.DEFAULT_RUNTIME_DIR, self.python)
        build = sandbox.build_artifact(tmp / "handler", self.python)
        problems = sandbox.bytecode_problems(build)
        if problems:
            raise SystemExit("the package's bytecode: " + "; ".join(problems[:5]))
        bare = tmp / "handler-no-bytecode"
        shutil.copytree(build, bare, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        hello = tmp / "hello-boto3"
        hello.mkdir()
        (hello / "app.py").write_text(HELLO)
        subprocess.run([self.python, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", str(hello)],
                       check=True)
        self.roots = {"hello-boto3": hello, "handler": build, "handler-no-bytecode": bare}
        self.handlers = {"hello-boto3": "app.lambda_handler", "handler": "handler.app.lambda_handler",
                         "handler-no-bytecode": "handler.app.lambda_handler"}
        self.logs = tmp / "logs"

    def run(self, kind: str, env: dict[str, str], event: dict[str, Any], flags: tuple[str, ...] = ()) -> dict[str, Any]:
        """One cold start: seconds to the first response, split at the first GET /next."""
        with RuntimeAPI() as api:
            inv = api.invoke(event, timeout_s=60)
            t0 = time.time()
            fn = sandbox.FunctionProcess(self.roots[kind], self.handlers[kind], api.address,
                                         runtime_dir=self.runtime_dir, python=self.python, function_env=env,
                                         log_dir=self.logs / kind, python_flags=flags)
            try:
                outcome = api.wait(inv, timeout=60, process=fn)
            finally:
                fn.stop()
            if outcome.kind is not OutcomeKind.RESPONSE or outcome.json() != {"batchItemFailures": []}:
                raise SystemExit(f"{kind}: unexpected answer {outcome.body[:2000]!r}\n{fn.output()}")
            first_next = api.next_calls[0]
        return {"total": outcome.received_at - t0, "init": first_next - t0, "invoke": outcome.received_at - first_next,
                "stderr": fn.output()[1]}


def measure(server: local_influxdb.InfluxServer, reps: int, tmp: Path) -> dict[str, Any]:
    """``reps`` paired repetitions of every kind (one warm-up round first, not counted)."""
    server.query('CREATE DATABASE "cold"')
    env = {"CONNECT_INFLUX_URL": server.url, "CONNECT_INFLUX_DB": "cold", "CONNECT_INFLUX_KCQL": workload.KCQL}
    event = workload.make_event("json", 0, 1)[0]
    fns = Functions(tmp)
    out: dict[str, Any] = {k: {"total": [], "init": [], "invoke": []} for k in KINDS}
    for rep in range(reps + 1):
        order = KINDS[rep % len(KINDS):] + KINDS[:rep % len(KINDS)]
        for kind in order:
            r = fns.run(kind, env, event)
            if rep:
                for k in ("total", "init", "invoke"):
                    out[kind][k].append(r[k])
    out["info"] = {"python": subprocess.run([fns.python, "-V"], capture_output=True, text=True).stdout.strip(),
                   "ric": next(p.split("==")[1] for p in sandbox.RUNTIME_PINS if p.startswith("awslambdaric")),
                   "boto3": next(p.split("==")[1] for p in sandbox.RUNTIME_PINS if p.startswith("boto3")),
                   "readonly": sandbox.readonly_mode().value}
    return out


def import_profile(server: local_influxdb.InfluxServer, tmp: Path) -> list[str]:
    """``-X importtime`` of the package's cold start under awslambdaric, largest first."""
    server.query('CREATE DATABASE "cold"')
    env = {"CONNECT_INFLUX_URL": server.url, "CONNECT_INFLUX_DB": "cold", "CONNECT_INFLUX_KCQL": workload.KCQL}
    r = Functions(tmp).run("handler", env, workload.make_event("json", 0, 1)[0], ("-X", "importtime"))
    rows = []
    for line in r["stderr"].splitlines():
        if line.startswith("import time:") and "|" in line:
            self_us, cum_us, name = (p.strip() for p in line.removeprefix("import time:").split("|", 2))
            if self_us.isdigit():
                rows.append((int(cum_us), int(self_us), name))
    rows.sort(reverse=True)
    return [f"{cum / 1000:8.1f} ms cumulative {self_us / 1000:7.1f} ms self  {name}"
            for cum, self_us, name in rows[:60]]


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def report(res: dict[str, Any], reps: int, target: float) -> list[str]:
    """The cold-start section of bench/RESULTS.md's generated block."""
    def ms(x: float) -> str:
        return f"{x * 1000:.0f} ms"

    info = res["info"]
    hello = med(res["hello-boto3"]["total"])
    out = ["### 2. Cold start as Lambda runs it (fresh process; read-only task root; 1-record batch into InfluxDB 1.x)",
           "",
           f"{info['python']} -S -m awslambdaric {info['ric']}, boto3 {info['boto3']} from the /var/runtime stand-in, "
           f"task root: {info['readonly']}; a Runtime API on loopback holds the event. Median (min) of {reps} paired "
           "runs; *first response* = process spawned → its response at the Runtime API; *init* = until its first "
           "`GET /next`; *invoke* = the rest.", "",
           "| function | first response | init | invoke | × hello-world | target | met |",
           "|---|---|---|---|---|---|---|"]
    for kind in KINDS:
        r = res[kind]
        ratio = med(r["total"]) / hello
        judged = kind == "handler"  # the others are the yardstick and the before
        met = ("yes" if ratio <= target else "**no**") if judged else ""
        tgt = f"≤ {target}×" if judged else ""
        label = {"hello-boto3": "hello world: `import boto3`", "handler": "the package (with its bytecode)",
                 "handler-no-bytecode": "the package without bytecode (before)"}[kind]
        out.append(f"| {label} | {ms(med(r['total']))} ({ms(min(r['total']))}) | {ms(med(r['init']))} | "
                   f"{ms(med(r['invoke']))} | **{ratio:.2f}×** | {tgt} | {met} |")
    return [*out, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=9, help="paired repetitions (default 9)")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="influx-sink-cold-"))
    server = local_influxdb.start(str(tmp / "influxd"))
    try:
        res = measure(server, args.reps, tmp)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n".join(report(res, args.reps, 1.0)))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
