"""What the local-service scripts share: a free loopback port, and starting and stopping a server.

A pid file alone cannot say which process it meant: once the server has exited, its pid may be
handed to any later process, and ``kill $(cat pid)`` would signal that one. So the pid file
written here records the process's identity as well — the kernel's start time of that pid and
its command line — and ``stop`` signals only a process that still has both. A folder the start
created itself (no ``--dir``) is marked as temporary in the pid file and removed once the server
is gone, so repeated runs leave nothing behind in the temporary directory.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import ClassVar


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ProcessIdentity:
    """Who a pid is right now: its start time (a reused pid has a later one) and command line."""

    pid: int
    start_time: str
    argv: tuple[str, ...]


def process_identity(pid: int) -> ProcessIdentity | None:
    """The identity of the live process ``pid``, or None when there is none (or only a zombie)."""
    if pid <= 0:
        return None
    proc_dir = f"/proc/{pid}"
    if os.path.isdir("/proc/self"):
        try:
            with open(f"{proc_dir}/stat", encoding="utf-8", errors="replace") as fh:
                stat = fh.read()
            with open(f"{proc_dir}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except OSError:  # gone, or never was
            return None
        # The command name in parentheses may hold spaces or ')': the fields follow the last ')'.
        fields = stat.rpartition(")")[2].split()
        if not fields or fields[0] in ("Z", "X"):  # exited, not yet reaped: nothing left to stop
            return None
        argv = tuple(part.decode(errors="replace") for part in cmdline.split(b"\0") if part)
        return ProcessIdentity(pid, fields[19], argv)  # field 22 of stat: start time in clock ticks
    return _ps_identity(pid)


def _ps_identity(pid: int) -> ProcessIdentity | None:
    """``process_identity`` where there is no /proc (macOS): ``ps`` gives the same two facts."""
    try:
        out = subprocess.run(["ps", "-ww", "-o", "stat=", "-o", "lstart=", "-o", "command=", "-p", str(pid)],
                             capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    if not out:
        return None
    state, _, rest = out.partition(" ")
    if state.startswith("Z"):
        return None
    rest = rest.strip()
    start, command = rest[:24], rest[24:].strip()  # lstart is fixed width: "Mon Jan  1 00:00:00 2024"
    return ProcessIdentity(pid, start, tuple(command.split()))


class StopOutcome(enum.Enum):
    """What ``stop_pidfile`` did."""

    STOPPED = "stopped"
    NOT_RUNNING = "not running"  # the recorded process has exited already
    NOT_OURS = "not ours"        # the pid now belongs to another process, or the file cannot say: not signalled
    NO_PIDFILE = "no pid file"


class PidFileError(ValueError):
    """A pid file that is not one these scripts wrote."""


@dataclass(frozen=True)
class PidFile:
    """The contents of a server's pid file: who to signal, and whether its folder is temporary."""

    identity: ProcessIdentity
    temporary_dir: bool = False

    def dump(self) -> str:
        return json.dumps({"pid": self.identity.pid, "start_time": self.identity.start_time,
                           "argv": list(self.identity.argv), "temporary_dir": self.temporary_dir})

    @classmethod
    def parse(cls, text: str) -> PidFile:
        try:
            doc = json.loads(text)
        except ValueError as err:
            raise PidFileError(f"not JSON ({err})") from None
        if isinstance(doc, int):
            raise PidFileError(f"holds only the pid {doc}, not which process it was")
        if not (isinstance(doc, dict) and isinstance(doc.get("pid"), int) and isinstance(doc.get("start_time"), str)
                and isinstance(doc.get("argv"), list)):
            raise PidFileError("lacks pid, start_time or argv")
        identity = ProcessIdentity(doc["pid"], doc["start_time"], tuple(str(a) for a in doc["argv"]))
        return cls(identity, bool(doc.get("temporary_dir", False)))


def read_pidfile(path: str) -> PidFile:
    """Parse a pid file (OSError when it cannot be read, PidFileError when it is not ours)."""
    with open(path, encoding="utf-8") as fh:
        return PidFile.parse(fh.read())


def write_pidfile(path: str, pid: int, *, temporary_dir: bool = False) -> PidFile:
    """Record ``pid`` with its identity (call it once the child has exec'd: after ``Popen``).

    ``Popen`` returns as the exec closes its descriptors, a moment before the kernel has set the
    new program's arguments: /proc then shows an empty command line, which would never match the
    running server again. So the identity is read once the command line is there (2 s at most).
    """
    identity = process_identity(pid)
    for _ in range(200):
        if identity is None or identity.argv:
            break
        time.sleep(0.01)
        identity = process_identity(pid)
    if identity is None:
        raise RuntimeError(f"process {pid} exited before its pid file could be written")
    record = PidFile(identity, temporary_dir)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(record.dump())
    os.replace(tmp, path)
    return record


def make_temporary_dir(prefix: str) -> str:
    """A new folder in the temporary directory for a server started without ``--dir``."""
    return tempfile.mkdtemp(prefix=prefix)


def _remove_temporary_dir(path: str) -> None:
    """Remove a folder ``make_temporary_dir`` made — and refuse any other, whatever a file claims."""
    real = os.path.realpath(path)
    if os.path.dirname(real) == os.path.realpath(tempfile.gettempdir()):
        shutil.rmtree(real, ignore_errors=True)


def _wait_gone(identity: ProcessIdentity, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process_identity(identity.pid) == identity:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _signal_if_same(identity: ProcessIdentity, signum: int) -> bool:
    """Signal the process only while ``identity`` still names it; False when it is gone or another."""
    if process_identity(identity.pid) != identity:
        return False
    try:
        os.kill(identity.pid, signum)
    except ProcessLookupError:
        return False
    return True


def stop_pidfile(path: str, timeout: float = 10.0) -> tuple[StopOutcome, str]:
    """Stop the server a pid file names, if that pid is still that server; a sentence saying what happened.

    SIGTERM, then SIGKILL after ``timeout`` seconds. Whatever the outcome the pid file is removed
    (it no longer names a running server), and a temporary folder with it once the server is gone.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return StopOutcome.NO_PIDFILE, f"no pid file at {path}: nothing to stop"
    folder = os.path.dirname(os.path.abspath(path))
    try:
        record = PidFile.parse(text)
    except PidFileError as err:
        os.remove(path)
        return StopOutcome.NOT_OURS, (f"{path} {err}; no process was signalled (stop the server yourself if it "
                                      "still runs); pid file removed")
    identity = record.identity
    current = process_identity(identity.pid)
    if current is None:
        outcome, message = StopOutcome.NOT_RUNNING, f"pid {identity.pid} has exited already"
    elif current != identity:
        outcome = StopOutcome.NOT_OURS
        message = (f"pid {identity.pid} is now another process ({' '.join(current.argv)[:200]!r}), not the server "
                   f"started from {folder}; not signalled")
    else:
        _signal_if_same(identity, signal.SIGTERM)
        if not _wait_gone(identity, timeout) and _signal_if_same(identity, signal.SIGKILL):
            _wait_gone(identity, timeout)
        outcome, message = StopOutcome.STOPPED, f"stopped pid {identity.pid}"
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
    if record.temporary_dir and process_identity(identity.pid) != identity:
        _remove_temporary_dir(folder)
        message += f"; removed {folder}"
    return outcome, message


def launch(argv: list[str], root: str, name: str, *, temporary_dir: bool) -> subprocess.Popen[bytes]:
    """Start a server in its own session, its output in ``root/<name>.log``, its pid file ``root/<name>.pid``."""
    log = open(os.path.join(root, f"{name}.log"), "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        log.close()
    try:
        write_pidfile(os.path.join(root, f"{name}.pid"), proc.pid, temporary_dir=temporary_dir)
    except RuntimeError:
        proc.wait()
        raise RuntimeError(f"{argv[0]} exited at once with {proc.returncode}; see {root}/{name}.log") from None
    return proc


def terminate(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """End a child of ours: SIGTERM, then SIGKILL if it is still there after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ServerProcess:
    """Mixin for a dataclass with ``root``, ``pid``, ``proc`` and ``temporary``: stop (SIGTERM) and
    kill (SIGKILL, as a crash). ``pid_name`` is the base name of its pid and log files."""

    pid_name: ClassVar[str]
    root: str
    pid: int
    proc: subprocess.Popen[bytes] | None
    temporary: bool

    @property
    def pidfile(self) -> str:
        return os.path.join(self.root, f"{self.pid_name}.pid")

    def stop(self) -> None:
        """Stop the server, remove its pid file, and its folder when the start made it."""
        if self.proc is None:  # not our child: only the pid file can say whether the pid is still it
            stop_pidfile(self.pidfile)
            return
        terminate(self.proc)  # our child, not yet reaped: its pid cannot have been reused
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.pidfile)
        if self.temporary:
            _remove_temporary_dir(self.root)

    def kill(self) -> None:
        """SIGKILL, as a crash: the folder and pid file stay (a restart on the same folder reuses them)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            return
        with contextlib.suppress(OSError, PidFileError):
            _signal_if_same(read_pidfile(self.pidfile).identity, signal.SIGKILL)


def stop_command(path: str) -> int:
    """The ``stop`` action of a server script: say what happened on stderr; exit code 1 without a pid file."""
    outcome, message = stop_pidfile(path)
    print(message, file=sys.stderr)
    return 1 if outcome is StopOutcome.NO_PIDFILE else 0
