"""The README's main job: the Kafka Connect InfluxDB quickstart, end to end, on this machine.

What that quickstart does with Kafka Connect, done here with the handler:

1. a throw-away InfluxDB 1.x (``influx_sink_tools.local_influxdb``) with the database ``mydb``;
2. a local schema registry (``influx_sink_tools.local_registry``) in which the ``User`` schema is
   registered under ``influx-topic-value``, as ``kafka-avro-console-producer`` does;
3. the quickstart's record (the JSON line typed into the producer) encoded as Avro with that
   schema and framed as the producer frames it (magic byte 0, the schema id, the Avro body), in
   a Kafka event of the MSK event source;
4. ``lambda_handler`` on that event with the quickstart's settings (``connect.influx.kcql``,
   ``connect.influx.url``, ``connect.influx.db``, plus the registry's URL);
5. ``select * from influxMeasure`` printed as the influx shell prints it. Avro ``float`` is 32
   bits, so latitude -49.817964 is stored as -49.817962646484375, as the influx shell shows it.

Everything listens on 127.0.0.1 only and is stopped at the end. ``--dry-run`` starts nothing and
contacts nothing: it prints the line protocol of the same record, decoded with the schema file
instead of the registry (``influx-sink invoke --dry-run --schema``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

TOPIC = "influx-topic"
KCQL = "INSERT INTO influxMeasure SELECT * FROM influx-topic WITHTIMESTAMP sys_time()"
SCHEMA_FILE = ROOT / "events" / "schemas" / "user.avsc"  # the quickstart's User schema
# The line typed into kafka-avro-console-producer, as it is.
RECORD_LINE = '{"company": "DataMountaineer","address": "MontainTop","latitude": -49.817964,"longitude": -141.645812}'


def avro_event(schema_id: int, schema: dict[str, Any]) -> dict[str, Any]:
    """The MSK event holding the quickstart's record, framed as the Avro console producer frames it."""
    from influx_sink_tools.eventgen import Rec, build_event
    from influx_sink_tools.framing import confluent_frame, encode

    value = confluent_frame(schema_id, encode(schema, json.loads(RECORD_LINE)))
    return build_event([Rec(TOPIC, 0, 0, value)])


def shell_table(series: dict[str, Any]) -> str:
    """A /query series as the influx 1.x shell shows it: Go's tabwriter, tab-padded, 8-wide tab stops."""
    rows = [[str(c) for c in series["columns"]]] + [["" if v is None else str(v) for v in row]
                                                    for row in series["values"]]
    widths = [(max(len(r[i]) for r in rows) + 1 + 7) // 8 * 8 for i in range(len(rows[0]))]
    title = f"name: {series['name']}"
    out = [title, "-" * len(title)]
    for row in rows:
        cells = [cell + "\t" * ((w - len(cell) + 7) // 8) for cell, w in zip(row[:-1], widths, strict=False)]
        out.append("".join(cells) + row[-1])
    return "\n".join(out)


def dry_run(schema_id: int, schema: dict[str, Any]) -> int:
    """The line protocol of the same event, through ``influx-sink invoke --dry-run``, offline."""
    from influx_sink_tools import cli

    with tempfile.TemporaryDirectory(prefix="influx-sink-demo-") as work:
        event = Path(work, "event.json")
        event.write_text(json.dumps(avro_event(schema_id, schema)))
        print(f"$ influx-sink invoke EVENT --dry-run --schema {schema_id}=events/schemas/user.avsc", flush=True)
        return cli.main(["invoke", str(event), "--dry-run", "--schema", f"{schema_id}={SCHEMA_FILE}"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true",
                        help="print the line protocol instead; start no server, contact nothing")
    args = parser.parse_args()
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # no EMF lines in the demo's output
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    for name in [k for k in os.environ if k.startswith("CONNECT_")]:
        del os.environ[name]  # the quickstart's settings only, whatever the shell has
    os.environ["CONNECT_INFLUX_KCQL"] = KCQL
    schema_text = SCHEMA_FILE.read_text(encoding="utf-8")
    schema = json.loads(schema_text)
    if args.dry_run:
        return dry_run(1, schema)

    from influx_sink_tools import local_influxdb, local_registry

    server = local_influxdb.start()  # a folder of its own, removed by stop()
    registry = local_registry.start()
    try:
        server.query('CREATE DATABASE "mydb"')
        schema_id = registry.register(f"{TOPIC}-value", schema_text)
        os.environ.update({"CONNECT_INFLUX_URL": server.url, "CONNECT_INFLUX_DB": "mydb",
                           "CONNECT_INFLUX_SCHEMA_REGISTRY_URL": registry.url})
        print(f"InfluxDB 1.x at {server.url}, database mydb")
        print(f"schema registry at {registry.url}: User registered under {TOPIC}-value, id {schema_id}")
        print(f"KCQL: {KCQL}")
        print(f"record (Avro, Confluent framing, schema id {schema_id}): {RECORD_LINE}")

        from handler.app import lambda_handler

        response = lambda_handler(avro_event(schema_id, schema), None)
        print(f"handler response: {json.dumps(response)}")
        result = server.query("select * from influxMeasure", db="mydb", epoch="ns")["results"][0]
        print("\n> select * from influxMeasure;")
        for series in result.get("series", []):
            print(shell_table(series))
        found = sum(len(s["values"]) for s in result.get("series", []))
        if response != {"batchItemFailures": []} or found != 1:
            print(f"expected the record as 1 point, found {found}", file=sys.stderr)
            return 1
    finally:
        registry.stop()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
