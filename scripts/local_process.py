"""What the local-service scripts share: a free loopback port, and stopping a server process."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """Mixin for a dataclass with ``pid`` and ``proc``: stop (SIGTERM) and kill (SIGKILL, as a crash)."""

    pid: int
    proc: subprocess.Popen[bytes] | None

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()


def stop_pidfile(path: str) -> None:
    """SIGTERM the process whose pid a server script wrote to ``path`` (its CLI ``stop``)."""
    with open(path, encoding="utf-8") as fh:
        pid = int(fh.read())
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
