"""The README's main job: the seed's quickstart, end to end, on this machine.

Starts a throw-away InfluxDB 1.x, creates ``mydb``, runs ``lambda_handler`` on a Kafka event
holding the seed's record with the seed's KCQL, prints ``select * from influxMeasure`` and stops
the server. ``--dry-run`` prints the line protocol instead (no server).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

KCQL = "INSERT INTO influxMeasure SELECT * FROM influx-topic WITHTIMESTAMP sys_time()"
RECORD = {"company": "DataMountaineer", "address": "MontainTop", "latitude": -49.817964, "longitude": -141.645812}


def event() -> dict:  # type: ignore[type-arg]
    from handler.eventgen import Rec, build_event

    return build_event([Rec("influx-topic", 0, 0, json.dumps(RECORD).encode(), timestamp=1478269679104)])


def table(result: dict) -> str:  # type: ignore[type-arg]
    """Render a /query answer like the influx shell does."""
    out = []
    for series in result["results"][0].get("series", []):
        out.append(f"name: {series['name']}")
        out.append("-" * (6 + len(series["name"])))
        out.append("\t".join(series["columns"]))
        out.extend("\t".join(str(v) for v in row) for row in series["values"])
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="print line protocol, start no server")
    args = parser.parse_args()
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # no EMF lines in the demo's output
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ["CONNECT_INFLUX_KCQL"] = KCQL
    if args.dry_run:
        from handler.delivery import map_records
        from handler.mapping import Plan
        from handler.records import parse_event
        from kcql import parse

        failures: list = []  # type: ignore[type-arg]
        for lines in map_records(parse_event(event()), Plan(parse(KCQL)), failures):
            print("\n".join(lines or []))
        return 1 if failures else 0

    import local_influxdb

    server = local_influxdb.start(tempfile.mkdtemp(prefix="influx-sink-demo-"))
    try:
        server.query('CREATE DATABASE "mydb"')
        os.environ.update({"CONNECT_INFLUX_URL": server.url, "CONNECT_INFLUX_DB": "mydb"})
        from handler.app import lambda_handler

        print(f"InfluxDB 1.x at {server.url}, database mydb")
        print(f"KCQL: {KCQL}")
        print(f"record: {json.dumps(RECORD)}")
        print(f"handler response: {json.dumps(lambda_handler(event(), None))}")
        print("\n> select * from influxMeasure")
        print(table(server.query("select * from influxMeasure", db="mydb", epoch=None)))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
