"""The local runner's throughput: records/s from a Kafka topic into InfluxDB, once assigned.

``measure()`` starts its own broker (Tansu, influx_sink_tools.local_kafka) and InfluxDB 1.x
(influx_sink_tools.local_influxdb), produces ``records`` plain-JSON readings (bench/workload.py's
shape, ~230 bytes, 8 fields and 2 tags each) round-robin over ``partitions`` partitions, then
runs ``influx-sink consume`` as a user would (its own process, the handler's settings in its
environment). The clock starts when the runner logs its partition assignment (joining the group
is Tansu's fixed delay, not the runner's work) and stops when InfluxDB holds every record: the
count is read back with ``SELECT count(*)``, so a lost or unwritten record fails the run instead
of flattering it.

Beside it, ``handler_records_per_s``: the handler's pipeline alone (``consume.handle_records``, the
runner's direct path) on the same records in batches of the same size, written to the same
InfluxDB, in a fresh process: the ceiling the runner's rate is to be read against, since on a
shared machine both move with the load.

    .venv/bin/python bench/runner_rate.py [--records N] [--partitions P] [--backend kafka-python|confluent]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

import workload  # noqa: E402

from influx_sink_tools import local_influxdb, local_kafka  # noqa: E402

DB = "runner_rate"
TOPIC = "runner-rate"
KCQL = (f"INSERT INTO sensors SELECT * FROM {TOPIC} IGNORE device, site "
        "WITHTIMESTAMP ts WITHTAG(device, site)")
ASSIGNED = re.compile(r"partitions assigned: (?!none)")


class RunnerRateError(RuntimeError):
    """The run did not get every record into InfluxDB (or the runner exited early)."""


def _produce(bootstrap: str, payloads: list[bytes], partitions: int) -> None:
    """Produce with librdkafka (fast, batched, lz4-free plain batches): not part of the figure."""
    from confluent_kafka import KafkaException, Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10_000,
                         "queue.buffering.max.messages": 1_000_000, "acks": "all"})
    errors: list[str] = []

    def done(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    for i, value in enumerate(payloads):
        while True:
            try:
                producer.produce(TOPIC, value=value, partition=i % partitions, on_delivery=done)
                break
            except BufferError:
                producer.poll(0.05)
    left = producer.flush(120)
    if left or errors:
        raise KafkaException(f"{left} record(s) not delivered; errors: {errors[:3]}")


def _count(server: local_influxdb.InfluxServer) -> int:
    res = server.query("SELECT count(battery) FROM sensors", db=DB)["results"][0]
    series = res.get("series")
    return int(series[0]["values"][0][1]) if series else 0


def measure(records: int = 200_000, partitions: int = 3, *, backend: str | None = None,
            batch_size: int = 10_000, extra: tuple[str, ...] = (), profile: str | None = None,
            runners: int = 1) -> dict[str, float]:
    """Run the runner over ``records`` fresh records; its rate once assigned.

    Returns ``records_per_s``, ``seconds`` (assignment → the last record in InfluxDB), ``records``,
    ``join_s`` (runner start → assignment), ``produce_s`` and ``handler_records_per_s`` (the
    handler's pipeline alone on the same records: see the module's docstring). ``profile``: write a pyinstrument
    text profile of the runner process to that file. ``runners``: that many runner processes in
    the one consumer group, sharing the partitions (the clock starts at the first assignment, so
    the rebalances as the others join are part of the figure).
    """
    broker = local_kafka.start(partitions=partitions)
    influx = local_influxdb.start()
    try:
        influx.query(f'CREATE DATABASE "{DB}"')
        broker.create_topics([TOPIC], partitions)
        payloads = workload.json_payloads(workload.readings(0, records))
        t = time.perf_counter()
        _produce(broker.bootstrap, payloads, partitions)
        produce_s = time.perf_counter() - t
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECT_", "POWERTOOLS_"))}
        env.update(CONNECT_INFLUX_URL=influx.url, CONNECT_INFLUX_DB=DB, CONNECT_INFLUX_KCQL=KCQL,
                   CONNECT_INFLUX_ERROR_POLICY="RETRY", PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        python = [sys.executable, "-m", "pyinstrument", "-r", "text", "-o", profile] if profile else [sys.executable]
        argv = [*python, "-m", "influx_sink_tools.consume", "--bootstrap-servers", broker.bootstrap,
                "--topics", TOPIC, "--group-id", "runner-rate", "--batch-size", str(batch_size),
                "--session-timeout-ms", "2000", "--batch-window-ms", "100", "--no-progress", *extra]
        if backend:
            argv += ["--backend", backend]
        with tempfile.TemporaryDirectory(prefix="runner-rate-") as tmp:
            logs = [Path(tmp) / f"runner{i}.err" for i in range(runners)]
            procs = []
            started = time.perf_counter()
            for log_path in logs:
                with open(log_path, "wb") as err:
                    procs.append(subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
                                                  stdin=subprocess.DEVNULL))
            try:
                assigned = _wait(lambda: any(ASSIGNED.search(p.read_text(errors="replace")) for p in logs),
                                 procs, logs, 60.0, 0.005)
                done = _wait(lambda: _count(influx) >= records, procs, logs, 600.0, 0.1)
            finally:
                for proc in procs:
                    proc.send_signal(signal.SIGTERM)
                for proc in procs:
                    try:
                        proc.wait(30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
        stored = _count(influx)
        if stored != records:
            raise RunnerRateError(f"InfluxDB holds {stored} of {records} records")
        seconds = done - assigned
        ceiling = _handler_only(env, influx, records, partitions, batch_size)
        return {"records_per_s": records / seconds, "seconds": seconds, "records": float(records),
                "join_s": assigned - started, "produce_s": produce_s, "handler_records_per_s": ceiling}
    finally:
        broker.stop()
        influx.stop()


HANDLER_DB = "runner_rate_handler"


def _handler_only(env: dict[str, str], influx: local_influxdb.InfluxServer, records: int, partitions: int,
                  batch_size: int) -> float:
    """The handler's pipeline alone on the same records, in a fresh process (its rate, records/s)."""
    influx.query(f'CREATE DATABASE "{HANDLER_DB}"')
    out = subprocess.run([sys.executable, str(Path(__file__)), "--handler-only", "--records", str(records),
                          "--partitions", str(partitions), "--batch-size", str(batch_size)],
                         env={**env, "CONNECT_INFLUX_DB": HANDLER_DB, "POWERTOOLS_METRICS_DISABLED": "true"},
                         cwd=ROOT, capture_output=True, text=True, check=True)
    res = influx.query("SELECT count(battery) FROM sensors", db=HANDLER_DB)["results"][0]
    stored = int(res["series"][0]["values"][0][1]) if res.get("series") else 0
    if stored != records:
        raise RunnerRateError(f"the handler alone stored {stored} of {records} records")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["handler_records_per_s"])


def _run_handler_only(records: int, partitions: int, batch_size: int) -> float:
    from influx_sink_tools.consume import handle_records
    from influx_sink_tools.kafka_clients import Message
    from influx_sink_tools.local_context import LocalContext

    payloads = workload.json_payloads(workload.readings(0, records))
    msgs = [Message(TOPIC, i % partitions, i // partitions, workload.T0_MS + i, "CREATE_TIME", None, p, [])
            for i, p in enumerate(payloads)]
    handle_records(msgs[:1], LocalContext(60))  # the cold start is not part of the rate
    t = time.perf_counter()
    for i in range(1, len(msgs), batch_size):
        answer = handle_records(msgs[i:i + batch_size], LocalContext(60))
        if answer.get("batchItemFailures"):
            raise RunnerRateError(f"the handler reported failures: {answer['batchItemFailures'][:3]}")
    return (records - 1) / (time.perf_counter() - t)


def _wait(predicate: Any, procs: list[subprocess.Popen[bytes]], logs: list[Path], timeout: float,
          every: float) -> float:
    """Poll until ``predicate()`` holds; the ``perf_counter`` of that moment."""
    deadline = time.perf_counter() + timeout
    while True:
        if predicate():
            return time.perf_counter()
        for proc, log_path in zip(procs, logs, strict=True):
            if proc.poll() is not None:
                raise RunnerRateError(f"runner exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        if time.perf_counter() > deadline:
            raise RunnerRateError(f"timed out after {timeout}s:\n{logs[0].read_text()[-3000:]}")
        time.sleep(every)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--backend", help="the runner's --backend (default: the runner's default)")
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--runner-flag", action="append", default=[], metavar="FLAG",
                        help="pass this flag to the runner (repeatable), e.g. --runner-flag=--no-prefetch")
    parser.add_argument("--profile", metavar="FILE", help="write a pyinstrument profile of the runner here")
    parser.add_argument("--runners", type=int, default=1, help="runner processes in the one group (default 1)")
    parser.add_argument("--handler-only", action="store_true", help=argparse.SUPPRESS)  # measure()'s ceiling
    args = parser.parse_args(argv)
    if args.handler_only:
        rate = _run_handler_only(args.records, args.partitions, args.batch_size)
        print(json.dumps({"handler_records_per_s": rate}))
        return 0
    result = measure(args.records, args.partitions, backend=args.backend, batch_size=args.batch_size,
                     extra=tuple(args.runner_flag), profile=args.profile, runners=args.runners)
    print(json.dumps({k: round(v, 3) for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
