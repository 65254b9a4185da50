"""Run a built function the way the Lambda python3.12 runtime does, on this machine.

- The interpreter is the runtime's Python version (3.12; pyenv's build or a python3.12 on PATH),
  started with ``-S`` so this machine's site-packages (not the runtime's) stay out of ``sys.path``.
- The runtime interface client is AWS's ``awslambdaric`` (``python -m awslambdaric <handler>``,
  its documented entry point), loaded with boto3 and botocore from a folder standing for the
  runtime's ``/var/runtime`` (:func:`ensure_runtime_dir`): never from the development virtualenv,
  so a dependency missing from the package fails here as it would in Lambda.
- The working directory and ``LAMBDA_TASK_ROOT`` are the package; the environment is the one Lambda
  defines (``_HANDLER``, ``AWS_LAMBDA_RUNTIME_API``, ``AWS_EXECUTION_ENV``, ...) plus the function's.
- The task root (and the runtime folder) are read-only, as ``/var/task`` is: a read-only bind mount
  in a private mount namespace (``unshare``), so writing a ``.pyc`` fails with EROFS exactly as in
  Lambda, also for root, whom file modes do not stop. Where no mount namespace can be made, the
  fallback is ``PYTHONDONTWRITEBYTECODE=1`` (no cache is written either way); :data:`READONLY`
  says which one is in use.

Command line (used by scripts/ci_sam.sh)::

    python -m influx_sink_tools.lambda_sandbox runtime-dir DIR     # create or check the /var/runtime stand-in
    python -m influx_sink_tools.lambda_sandbox check-bytecode DIR  # every .py has its unchecked-hash .pyc
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import fcntl
import functools
import glob
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_VERSION = (3, 12)
TAG = f"cpython-{RUNTIME_VERSION[0]}{RUNTIME_VERSION[1]}"
# What the python3.12 runtime ships in /var/runtime besides the standard library: its runtime interface
# client and the SDK (about the versions AWS lists as "Runtime-included SDK versions").
RUNTIME_PINS = ("awslambdaric==4.2.2", "boto3==1.40.4", "botocore==1.40.4")
RUNTIME_TOP_LEVEL = ("awslambdaric", "runtime_client", "simplejson", "snapshot_restore_py", "boto3", "botocore",
                     "jmespath", "dateutil", "urllib3", "s3transfer", "six")
DEFAULT_RUNTIME_DIR = ROOT / ".tools" / "runtime-provided"
FUNCTION_NAME = "influx-sink"


class ReadOnly(enum.Enum):
    """How the task root is kept from being written."""

    BIND_MOUNT = "read-only bind mount (mount namespace)"
    USERNS_BIND_MOUNT = "read-only bind mount (user + mount namespace)"
    DONT_WRITE_BYTECODE = "PYTHONDONTWRITEBYTECODE=1 (no mount namespace available)"


class SandboxError(RuntimeError):
    """The runtime's Python, its runtime folder or the package cannot be set up."""


def python312() -> str:
    """The Lambda runtime's Python: pyenv's 3.12 build, else a python3.12 on PATH."""
    home = os.path.expanduser("~")
    for cand in [*sorted(glob.glob(f"{home}/.pyenv/versions/3.12*/bin/python3.12")), "/usr/local/bin/python3.12",
                 "/usr/bin/python3.12", shutil.which("python3.12") or ""]:
        if cand and os.access(cand, os.X_OK):
            out = subprocess.run([cand, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                                 capture_output=True, text=True, check=False).stdout.strip()
            if out == "True":
                return cand
    raise SandboxError("python3.12 not found (the Lambda runtime's Python)")


def ensure_runtime_dir(path: Path = DEFAULT_RUNTIME_DIR, python: str | None = None) -> Path:
    """The /var/runtime stand-in: awslambdaric, boto3 and botocore, installed once (stamped by the pins).

    Installed by the runtime's Python itself, with its bytecode (the runtime image ships it compiled);
    a lock keeps concurrent test sessions and ci_sam.sh from installing over each other.
    """
    python = python or python312()
    stamp = path / f".installed-{hashlib.sha1(' '.join(RUNTIME_PINS).encode()).hexdigest()[:12]}"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            shutil.rmtree(path, ignore_errors=True)
            proc = subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                   "--no-warn-script-location", "--only-binary=:all:", "--target", str(path),
                                   *RUNTIME_PINS], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise SandboxError(f"pip install --target {path} {' '.join(RUNTIME_PINS)}:\n{proc.stderr[-3000:]}")
            shutil.rmtree(path / "bin", ignore_errors=True)
            stamp.touch()
    extra = [n for n in os.listdir(path) if not n.startswith((".installed-", "__pycache__"))
             and not n.endswith((".dist-info", ".so")) and n.split(".")[0] not in RUNTIME_TOP_LEVEL]
    if extra:
        raise SandboxError(f"{path} holds more than the runtime provides: {sorted(extra)}")
    return path


def build_artifact(dest: Path, python: str | None = None) -> Path:
    """``make build-InfluxSinkFunction`` as sam runs it, into ``dest``."""
    python = python or python312()
    env = dict(os.environ, PATH=f"{os.path.dirname(python)}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    proc = subprocess.run(["make", "--no-print-directory", "build-InfluxSinkFunction", f"ARTIFACTS_DIR={dest}",
                           f"PYTHON={python}"], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SandboxError(f"make build-InfluxSinkFunction failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return dest


def bytecode_problems(root: Path) -> list[str]:
    """Every .py under ``root`` must have a current unchecked-hash .pyc for the runtime's Python.

    The source hash is keyed by the interpreter's magic number, so this runs under the runtime's Python.
    """
    if sys.version_info[:2] != RUNTIME_VERSION:
        code = ("import sys, pathlib; from influx_sink_tools.lambda_sandbox import bytecode_problems; "
                "print('\\n'.join(bytecode_problems(pathlib.Path(sys.argv[1]))))")
        proc = subprocess.run([python312(), "-S", "-c", code, str(root)], cwd=ROOT, capture_output=True, text=True,
                              check=True)
        return [ln for ln in proc.stdout.splitlines() if ln]
    problems = []
    for src in sorted(root.rglob("*.py")):
        pyc = src.parent / "__pycache__" / f"{src.stem}.{TAG}.pyc"
        rel = src.relative_to(root)
        try:
            head = pyc.read_bytes()[:16]
        except OSError:
            problems.append(f"{rel}: no {pyc.relative_to(root)}")
            continue
        flags = int.from_bytes(head[4:8], "little")
        if flags != 0b01:  # PEP 552: bit 0 hash-based, bit 1 check_source
            problems.append(f"{rel}: {pyc.name} is not an unchecked-hash pyc (flags {flags:#04b})")
        elif head[8:16] != importlib.util.source_hash(src.read_bytes()):
            problems.append(f"{rel}: {pyc.name} was compiled from another version of the source")
    if not any(root.rglob("*.py")):
        problems.append(f"{root}: no .py files at all")
    return problems


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its (size, mtime_ns): compared before and after a run."""
    return {str(p.relative_to(root)): (st.st_size, st.st_mtime_ns)
            for p in root.rglob("*") if p.is_file() for st in [p.stat()]}


_MOUNT_RO = 'for d; do [ "$d" = -- ] && break; mount --bind "$d" "$d" && mount -o remount,bind,ro "$d" || exit 97; ' \
            'done; while [ "$1" != -- ]; do shift; done; shift; exec "$@"'


@functools.cache
def readonly_mode() -> ReadOnly:
    """The strongest way of making a folder read-only that works on this machine (probed once)."""
    with tempfile.TemporaryDirectory() as probe:
        for mode, prefix in ((ReadOnly.BIND_MOUNT, ["unshare", "--mount", "--propagation", "private"]),
                             (ReadOnly.USERNS_BIND_MOUNT, ["unshare", "--map-root-user", "--mount", "--propagation",
                                                           "private"])):
            cmd = [*prefix, "sh", "-c", _MOUNT_RO, "sh", probe, "--", "sh", "-c", 'touch "$0/x" 2>/dev/null', probe]
            with contextlib.suppress(OSError):
                # The probe succeeds when the mounts work (exit 1 from touch, not 97 from mount).
                if subprocess.run(cmd, capture_output=True, check=False).returncode == 1:
                    return mode
    return ReadOnly.DONT_WRITE_BYTECODE


def readonly_command(dirs: Sequence[Path], cmd: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """``cmd`` wrapped so ``dirs`` are read-only for it, and the environment that wrapping needs."""
    mode = readonly_mode()
    if mode is ReadOnly.DONT_WRITE_BYTECODE:
        return list(cmd), {"PYTHONDONTWRITEBYTECODE": "1"}
    prefix = ["unshare", "--mount", "--propagation", "private"]
    if mode is ReadOnly.USERNS_BIND_MOUNT:
        prefix.insert(1, "--map-root-user")
    return [*prefix, "sh", "-c", _MOUNT_RO, "sh", *(str(d) for d in dirs), "--", *cmd], {}


def lambda_env(task_root: Path, handler: str, api_address: str, runtime_dir: Path, python: str,
               function_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment Lambda gives a python3.12 function (reserved variables), plus the function's own."""
    env = {
        "PATH": f"{os.path.dirname(python)}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "PYTHONPATH": str(runtime_dir),
        "LAMBDA_TASK_ROOT": str(task_root),
        "LAMBDA_RUNTIME_DIR": str(runtime_dir),
        "_HANDLER": handler,
        "AWS_LAMBDA_RUNTIME_API": api_address,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{FUNCTION_NAME}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]0123456789abcdef0123456789abcdef",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.update(function_env or {})
    return env


class FunctionProcess:
    """One execution environment: ``python3.12 -S -m awslambdaric <handler>`` in a read-only task root.

    stdout and stderr go to files (a pipe nobody reads could block the function); ``output()`` reads them.
    """

    def __init__(self, task_root: Path, handler: str, api_address: str, *, runtime_dir: Path, python: str,
                 function_env: Mapping[str, str] | None = None, log_dir: Path, python_flags: Sequence[str] = ()):
        task_root, runtime_dir = task_root.resolve(), runtime_dir.resolve()  # the mounts run in the task root
        self.task_root = task_root
        env = lambda_env(task_root, handler, api_address, runtime_dir, python, function_env)
        cmd, extra = readonly_command([task_root, runtime_dir],
                                      [python, "-S", *python_flags, "-m", "awslambdaric", handler])
        env.update(extra)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path, self.stderr_path = log_dir / "stdout", log_dir / "stderr"
        self._files: list[IO[bytes]] = [open(self.stdout_path, "wb"), open(self.stderr_path, "wb")]  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, cwd=task_root, env=env, stdin=subprocess.DEVNULL, stdout=self._files[0],
                                     stderr=self._files[1])

    def poll(self) -> int | None:
        return self.proc.poll()

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def stop(self) -> None:
        """End the process (awslambdaric waits for the next event forever, as Lambda freezes it)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in self._files:
            f.close()

    def output(self) -> tuple[str, str]:
        return (self.stdout_path.read_text(errors="replace"), self.stderr_path.read_text(errors="replace"))

    def lines(self) -> list[str]:
        """Every non-empty line the function wrote, stdout then stderr."""
        out, err = self.output()
        return [ln for ln in (out + "\n" + err).splitlines() if ln.strip()]

    def __enter__(self) -> FunctionProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def started(task_root: Path, handler: str, api_address: str, **kw: object) -> Iterator[FunctionProcess]:
    fn = FunctionProcess(task_root, handler, api_address, **kw)  # type: ignore[arg-type]
    try:
        yield fn
    finally:
        fn.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    rd = sub.add_parser("runtime-dir", help="create (once) and check the /var/runtime stand-in")
    rd.add_argument("dir", type=Path)
    rd.add_argument("--python", help="the runtime's Python (default: found like python312())")
    cb = sub.add_parser("check-bytecode", help="every .py under DIR has a current unchecked-hash .pyc")
    cb.add_argument("dir", type=Path)
    sub.add_parser("readonly-mode", help="print how task roots are made read-only here")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "runtime-dir":
            path = ensure_runtime_dir(args.dir.resolve(), args.python)
            print(f"{path}: {', '.join(RUNTIME_PINS)}")
        elif args.cmd == "check-bytecode":
            problems = bytecode_problems(args.dir.resolve())
            if problems:
                print("\n".join(problems[:50]), file=sys.stderr)
                return 1
            print(f"{args.dir}: every .py has its unchecked-hash .pyc ({sum(1 for _ in args.dir.rglob('*.py'))} files)")
        else:
            print(readonly_mode().value)
    except SandboxError as err:
        print(f"lambda_sandbox: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
