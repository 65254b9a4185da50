"""moto's server on a free loopback port: the real SSM and Glue HTTP APIs for boto3, without AWS.

The tests (the ``moto_server`` fixture) and CI's run of the built artifact on the Glue sample event
start it through ``start``; nothing else launches moto. The server is the child of the caller and
``stop`` ends it: no pid file, since nothing outside that process ever needs to find it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from influx_sink_tools.local_process import free_port, terminate


class MotoStartError(RuntimeError):
    """moto_server exited or did not answer in time; the message ends with its log when there is one."""


@dataclass
class MotoServer:
    """A running moto_server: ``url`` is its endpoint (``AWS_ENDPOINT_URL``)."""

    url: str
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        terminate(self.proc)


def start(log_path: str | None = None, timeout: float = 30.0) -> MotoServer:
    """Start the ``moto_server`` next to this Python and wait until its API answers.

    Its output goes to ``log_path`` (quoted in the error when it does not start), else nowhere.
    """
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    argv = [str(exe), "-H", "127.0.0.1", "-p", str(port)]
    if log_path is None:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    server = MotoServer(f"http://127.0.0.1:{port}", proc)
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{server.url}/moto-api/", timeout=1).read()
            return server
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise MotoStartError(f"moto_server did not start{_log_tail(log_path)}") from None
            time.sleep(0.1)


def _log_tail(log_path: str | None) -> str:
    if log_path is None or not os.path.exists(log_path):
        return ""
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        return ":\n" + fh.read()[-2000:]
