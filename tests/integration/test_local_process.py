"""The local server scripts' ``stop``: only the server they started is signalled, and nothing is left.

A pid reused by an unrelated process is the case to guard against; the kernel cannot be made to
hand a chosen pid to a new process, so the tests write the pid file as it would read then: the
pid of a live ``sleep`` (the unrelated process) with the identity recorded for the server. The
servers themselves are the real ones (influxd, Tansu), started and stopped through the scripts'
own command lines.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from influx_sink_tools import local_influxdb, local_kafka, local_process
from influx_sink_tools.local_process import StopOutcome, process_identity, stop_pidfile, write_pidfile

# The server commands (python -m influx_sink_tools.X), each with the marker of the real server it starts.
SERVER_SCRIPTS = [pytest.param("local_influxdb", marks=pytest.mark.influx),
                  pytest.param("local_kafka", marks=pytest.mark.e2e)]


def _command(script: str) -> list[str]:
    return [sys.executable, "-m", f"influx_sink_tools.{script}"]


def _started(argv: list[str]) -> subprocess.Popen[bytes]:
    """``argv`` started, returned once the kernel shows it running that program (between fork and
    exec a child's command line is its parent's, or empty)."""
    proc = subprocess.Popen(argv)
    for _ in range(500):
        ident = process_identity(proc.pid)
        if ident is not None and ident.argv == tuple(argv):
            return proc
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"{argv} did not start within 5 s")


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process that must never be signalled (it would die of SIGTERM)."""
    proc = _started(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary directory of the test's own, for this process and the scripts it runs."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setenv("TMPDIR", str(tmp))
    return tmp


def _server_identity(pid: int) -> dict[str, object]:
    """What a pid file said about a server that has exited since: its start time and command line."""
    return {"pid": pid, "start_time": "1", "argv": ["/usr/bin/influxd", "-config", "/tmp/influxd-x/influxdb.conf"],
            "temporary_dir": False}


def _alive(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None and process_identity(proc.pid) is not None


def test_identity_names_the_process_and_its_command_line(bystander: subprocess.Popen[bytes]) -> None:
    ident = process_identity(bystander.pid)
    assert ident is not None
    assert ident.argv == ("sleep", "300")
    assert ident == process_identity(bystander.pid)  # stable while the process lives
    other = _started(["sleep", "300"])
    try:
        assert process_identity(other.pid) != ident
    finally:
        other.kill()
        other.wait()
    assert process_identity(other.pid) is None  # reaped: no such process


def test_stop_does_not_signal_a_process_that_reused_the_pid(tmp_path: Path,
                                                            bystander: subprocess.Popen[bytes]) -> None:
    pidfile = tmp_path / "influxd.pid"
    pidfile.write_text(json.dumps(_server_identity(bystander.pid)))
    outcome, message = stop_pidfile(str(pidfile), timeout=1)
    assert outcome is StopOutcome.NOT_OURS
    assert f"pid {bystander.pid} is now another process" in message and "sleep 300" in message
    assert _alive(bystander)
    assert not pidfile.exists()
    assert tmp_path.exists()  # a folder the user named is never removed


def test_stop_does_not_signal_the_pid_of_an_old_bare_pid_file(tmp_path: Path,
                                                              bystander: subprocess.Popen[bytes]) -> None:
    pidfile = tmp_path / "tansu.pid"
    pidfile.write_text(str(bystander.pid))  # what these scripts used to write: no way to tell who it was
    outcome, message = stop_pidfile(str(pidfile), timeout=1)
    assert outcome is StopOutcome.NOT_OURS
    assert "not which process it was" in message and "no process was signalled" in message
    assert _alive(bystander)
    assert not pidfile.exists()


@pytest.mark.parametrize("script", ["local_influxdb", "local_kafka"])
def test_cli_stop_leaves_a_reused_pid_alone(script: str, tmp_path: Path,
                                            bystander: subprocess.Popen[bytes]) -> None:
    name = "influxd" if script == "local_influxdb" else "tansu"
    (tmp_path / f"{name}.pid").write_text(json.dumps(_server_identity(bystander.pid)))
    done = subprocess.run([*_command(script), "stop", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "not signalled" in done.stderr
    assert _alive(bystander)
    assert not (tmp_path / f"{name}.pid").exists()


def test_cli_stop_without_a_pid_file_says_so(tmp_path: Path) -> None:
    done = subprocess.run([*_command("local_kafka"), "stop", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "no pid file" in done.stderr


def test_stop_signals_the_recorded_process_and_removes_its_pid_file(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "300"])
    try:
        write_pidfile(str(tmp_path / "x.pid"), proc.pid)
        outcome, _ = stop_pidfile(str(tmp_path / "x.pid"), timeout=5)
        assert outcome is StopOutcome.STOPPED
        assert proc.wait(10) == -signal.SIGTERM
        assert not (tmp_path / "x.pid").exists()
    finally:
        proc.kill()
        proc.wait()


def test_a_process_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import signal, time\n"
                             "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n"
                             "time.sleep(300)"], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        write_pidfile(str(tmp_path / "x.pid"), proc.pid)
        outcome, _ = stop_pidfile(str(tmp_path / "x.pid"), timeout=0.5)
        assert outcome is StopOutcome.STOPPED
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()


def test_a_temporary_folder_is_removed_only_under_the_temporary_directory(private_tmp: Path,
                                                                          tmp_path: Path) -> None:
    outside = tmp_path / "mine"
    outside.mkdir()
    proc = subprocess.Popen(["sleep", "300"])
    try:
        write_pidfile(str(outside / "x.pid"), proc.pid, temporary_dir=True)  # a claim these scripts never make
        assert stop_pidfile(str(outside / "x.pid"), timeout=5)[0] is StopOutcome.STOPPED
    finally:
        proc.kill()
        proc.wait()
    assert outside.is_dir()


@pytest.mark.influx
@pytest.mark.e2e
def test_in_process_servers_started_without_a_folder_leave_none(private_tmp: Path) -> None:
    influx = local_influxdb.start()
    broker = local_kafka.start()
    assert {Path(influx.root).parent, Path(broker.root).parent} == {private_tmp}
    assert Path(influx.pidfile).exists() and Path(broker.pidfile).exists()
    influx.stop()
    broker.stop()
    assert influx.proc is not None and influx.proc.poll() is not None
    assert broker.proc is not None and broker.proc.poll() is not None
    assert os.listdir(private_tmp) == []


@pytest.mark.influx
def test_a_named_folder_is_kept_after_stop(tmp_path: Path) -> None:
    influx = local_influxdb.start(str(tmp_path / "data"))
    influx.stop()
    assert (tmp_path / "data" / "influxdb.conf").exists()  # the user's data folder, kept
    assert not Path(influx.pidfile).exists()


@pytest.mark.parametrize("script", SERVER_SCRIPTS)
def test_cli_start_and_stop_leave_no_folder_behind(script: str, private_tmp: Path) -> None:
    env = dict(os.environ, TMPDIR=str(private_tmp))
    started = subprocess.run([*_command(script), "start"], capture_output=True, text=True,
                             timeout=120, check=False, env=env)
    assert started.returncode == 0, started.stderr
    (folder,) = os.listdir(private_tmp)
    root = private_tmp / folder
    name = "influxd" if script == "local_influxdb" else "tansu"
    record = local_process.read_pidfile(str(root / f"{name}.pid"))
    assert process_identity(record.identity.pid) == record.identity  # the server runs on, detached
    assert record.temporary_dir
    stopped = subprocess.run([*_command(script), "stop", "--dir", str(root)],
                             capture_output=True, text=True, timeout=60, check=False, env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped pid {record.identity.pid}" in stopped.stderr
    assert process_identity(record.identity.pid) != record.identity
    assert os.listdir(private_tmp) == []
