"""Start a throw-away InfluxDB 1.x server on a free loopback port.

Used by the tests, the benchmark and the README's main command, so that every one of them talks
to a real server and nobody needs a system-wide InfluxDB. The Debian package ``influxdb`` is
installed when ``influxd`` is missing (this needs root and the package registry).

    python -m influx_sink_tools.local_influxdb start [--dir DIR] [--auth] [--max-body-size N]   # prints URL
    python -m influx_sink_tools.local_influxdb stop --dir DIR
        # stops influxd only if the pid file's process is still that influxd; removes the pid
        # file, and the folder when start made it (no --dir)
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, ClassVar

from influx_sink_tools.local_process import ServerProcess, free_port, launch, make_temporary_dir, stop_command

INFLUXD = "/usr/bin/influxd"
_UNVERIFIED = ssl._create_unverified_context()  # the test harness talks to its own self-signed server


def ensure_installed() -> str:
    """Return the path of influxd, installing the Debian package if it is missing."""
    found = shutil.which("influxd") or (INFLUXD if os.path.exists(INFLUXD) else None)
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("influxd is missing; install the Debian package 'influxdb' (needs root)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "influxdb"], check=True, env=env)
    return shutil.which("influxd") or INFLUXD



def _config(base: str, root: str, http_port: int, rpc_port: int, auth: bool,
            max_body_size: int | None, tls: tuple[str, str] | None = None) -> str:
    """Rewrite influxd's default config: private data dirs, loopback ports, no side listeners."""
    out: list[str] = []
    section = ""
    for line in base.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped
        key = stripped.split("=", 1)[0].strip() if "=" in stripped else ""
        if "/var/lib/influxdb" in line:
            line = line.replace("/var/lib/influxdb", root)
        elif key == "bind-address" and section == "":
            line = f'bind-address = "127.0.0.1:{rpc_port}"'
        elif key == "bind-address" and section == "[http]":
            line = f'  bind-address = "127.0.0.1:{http_port}"'
        elif key == "bind-address" and section not in ("[http]",):
            line = f'  bind-address = "127.0.0.1:{free_port()}"'
        elif key == "auth-enabled" and section == "[http]":
            line = f"  auth-enabled = {'true' if auth else 'false'}"
        elif key == "max-body-size" and section == "[http]" and max_body_size is not None:
            line = f"  max-body-size = {max_body_size}"
        elif key == "https-enabled" and section == "[http]" and tls:
            line = "  https-enabled = true"
        elif key == "https-certificate" and section == "[http]" and tls:
            line = f'  https-certificate = "{tls[0]}"'
        elif key == "https-private-key" and section == "[http]" and tls:
            line = f'  https-private-key = "{tls[1]}"'
        elif key in ("log-enabled", "query-log-enabled", "logging-enabled"):
            line = line.replace("true", "false")
        elif key == "enabled" and section == "[ifql]":
            line = "  enabled = false"
        out.append(line)
    return "\n".join(out) + "\n"


@dataclass
class InfluxServer(ServerProcess):
    """A running influxd; ``query`` and ``write`` talk to it over plain HTTP."""

    pid_name: ClassVar[str] = "influxd"
    url: str
    root: str
    pid: int
    admin: tuple[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    temporary: bool = False  # root was made by start(): removed by stop()

    def _request(self, path: str, params: dict[str, str], data: bytes | None = None,
                 method: str = "POST") -> tuple[int, bytes]:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        req = urllib.request.Request(url, data=data, method=method)
        if self.admin:
            token = base64.b64encode(f"{self.admin[0]}:{self.admin[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=30, context=_UNVERIFIED) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def query(self, q: str, db: str | None = None, epoch: str | None = "ns") -> dict[str, Any]:
        import json

        params = {"q": q}
        if db:
            params["db"] = db
        if epoch:
            params["epoch"] = epoch
        status, body = self._request("/query", params)
        if status != 200:
            raise RuntimeError(f"query {q!r} failed: {status} {body!r}")
        answer: dict[str, Any] = json.loads(body)
        return answer




def start(root: str | None = None, *, auth: bool = False, admin: tuple[str, str] = ("admin", "admin-secret"),
          max_body_size: int | None = None, port: int | None = None, timeout: float = 30.0,
          tls: tuple[str, str] | None = None) -> InfluxServer:
    """Start influxd under ``root`` and wait for /ping.

    Without ``root`` the data folder is a new temporary one, removed by ``stop()`` (``kill()``, a
    crash, keeps it). ``tls`` = (certificate file, private key file) serves HTTPS instead of HTTP.
    """
    influxd = ensure_installed()
    temporary = root is None
    root = root or make_temporary_dir("influxd-")
    os.makedirs(root, exist_ok=True)
    base = subprocess.run([influxd, "config"], check=True, capture_output=True, text=True).stdout
    http_port = port or free_port()
    conf = os.path.join(root, "influxdb.conf")
    with open(conf, "w", encoding="utf-8") as fh:
        fh.write(_config(base, root, http_port, free_port(), auth, max_body_size, tls))
    proc = launch([influxd, "-config", conf], root, InfluxServer.pid_name, temporary_dir=temporary)
    scheme = "https" if tls else "http"
    server = InfluxServer(url=f"{scheme}://127.0.0.1:{http_port}", root=root, pid=proc.pid, proc=proc,
                          temporary=temporary)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"influxd exited with {proc.returncode}; see {root}/influxd.log")
        try:
            with urllib.request.urlopen(f"{server.url}/ping", timeout=1, context=_UNVERIFIED) as resp:
                if resp.status == 204:
                    break
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"influxd did not answer /ping within {timeout}s; see {root}/influxd.log")
        time.sleep(0.1)
    if auth:
        user, password = admin
        server._request("/query", {"q": f"CREATE USER {user} WITH PASSWORD '{password}' WITH ALL PRIVILEGES"})
        server.admin = admin
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", help="data folder (default: a new temporary one)")
    parser.add_argument("--port", type=int)
    parser.add_argument("--auth", action="store_true")
    parser.add_argument("--max-body-size", type=int)
    parser.add_argument("--db", action="append", default=[], help="database to create (repeatable)")
    args = parser.parse_args(argv)
    if args.action == "stop":
        if not args.dir:
            parser.error("stop needs --dir")
        return stop_command(os.path.join(args.dir, f"{InfluxServer.pid_name}.pid"))
    server = start(args.dir, auth=args.auth, max_body_size=args.max_body_size, port=args.port)
    for db in args.db:
        server.query(f'CREATE DATABASE "{db}"')
    print(server.url)
    print(f"data folder: {server.root} (stop with: python {sys.argv[0]} stop --dir {server.root})",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
