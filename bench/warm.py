"""Child process of bench/run.py: the warm handler against its floor, for one payload kind.

    python bench/warm.py KIND OUT.json REPS   (settings come from the environment, as in Lambda)

Each repetition (after one warm-up) measures, on a fresh 10,000-record event with its own
timestamps:

- floor decode: base64 + ``json.loads`` (JSON), base64 + fastavro's ``schemaless_reader`` (Avro)
  or base64 + the protobuf package's ``ParseFromString`` (Protobuf, upb) of every record of the event;
- floor ingest: InfluxDB storing the same points, pre-built as line protocol, in one request
  (its own database, same write parameters as the handler's);
- handler: ``handler.app.lambda_handler(event, context)``, warm.

Floor and handler alternate within a repetition, so drift (InfluxDB compactions, the machine)
hits both alike.
"""

from __future__ import annotations

import base64
import gc
import http.client
import io
import json
import os
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workload


class Context:
    """Enough of Lambda's context for the handler: 15 minutes left."""

    function_name = "influx-sink-bench"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:influx-sink-bench"
    aws_request_id = "bench"

    def __init__(self) -> None:
        self.end = time.monotonic() + 900

    def get_remaining_time_in_millis(self) -> int:
        return int((self.end - time.monotonic()) * 1000)


def floor_decoder(kind: str) -> Any:
    """The floor's per-record decode: what any sink must do at least."""
    b64 = base64.b64decode
    if kind == "json":
        loads = json.loads

        def decode_json(value: str) -> Any:
            return loads(b64(value))

        return decode_json
    if kind == "protobuf":
        parse = workload.protobuf_class().FromString  # ParseFromString on a new message

        def decode_protobuf(value: str) -> Any:
            return parse(memoryview(b64(value))[6:])  # the 5-byte header and the message index [0]

        return decode_protobuf
    from fastavro import parse_schema, schemaless_reader

    parsed = parse_schema(workload.AVRO_SCHEMA)

    def decode_avro(value: str) -> Any:
        return schemaless_reader(io.BytesIO(memoryview(b64(value))[5:]), parsed, None)

    return decode_avro


def floor_decode(event: dict[str, Any], decode: Any) -> int:
    n = 0
    for items in event["records"].values():
        for item in items:
            decode(item["value"])
            n += 1
    return n


def main() -> int:
    kind, out_path, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    url = os.environ["CONNECT_INFLUX_URL"]
    floor_db = os.environ["BENCH_FLOOR_DB"]
    from handler import app
    from handler.records import parse_event

    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 8086, timeout=60)
    write_path = "/write?" + urllib.parse.urlencode(
        {"db": floor_db, "precision": "n", "rp": "autogen", "consistency": "all"})
    decode = floor_decoder(kind)
    rows: list[dict[str, float]] = []
    for rep in range(reps + 1):
        event, _docs = workload.make_event(kind, rep)
        # The floor's body: exactly the lines the handler writes (built by the handler's own plan).
        ctx = Context()
        if rep == 0:
            app.lambda_handler(workload.make_event(kind, reps + 1, 10)[0], ctx)  # cold start + registry fetch
        plan = app.get_runtime().plan
        body = ("\n".join(line for r in parse_event(event) for line in plan.lines(r)) + "\n").encode()

        gc.collect()
        t0 = time.perf_counter()
        n = floor_decode(event, decode)
        t1 = time.perf_counter()
        conn.request("POST", write_path, body=body, headers={"Content-Type": "text/plain; charset=utf-8"})
        resp = conn.getresponse()
        resp.read()
        t2 = time.perf_counter()
        if resp.status != 204 or n != workload.BATCH:
            raise SystemExit(f"floor write failed: HTTP {resp.status}")
        del body
        gc.collect()

        t3 = time.perf_counter()
        response = app.lambda_handler(event, ctx)
        t4 = time.perf_counter()
        if response != {"batchItemFailures": []}:
            raise SystemExit(f"handler reported failures: {str(response)[:300]}")
        if rep:
            rows.append({"decode": t1 - t0, "ingest": t2 - t1, "floor": t2 - t0, "handler": t4 - t3})
        del event
    Path(out_path).write_text(json.dumps({"kind": kind, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
