"""The README's main job run through Kafka instead of Lambda: ``scripts/demo-kafka``.

1. a Kafka-compatible broker (Tansu, ``influx_sink_tools.local_kafka``) with the topic
   ``influx-topic`` (3 partitions), and a throw-away InfluxDB (``influx_sink_tools.local_influxdb``)
   with the database ``mydb``;
2. the ``User`` schema (events/schemas/user.avsc) registered under ``influx-topic-value`` in a
   local Confluent-compatible registry (``influx_sink_tools.local_registry``), and the record
   produced framed as ``kafka-avro-console-producer`` frames it (magic byte 0, schema id, Avro body);
3. ``influx-sink consume --until-idle`` with the same settings as ``scripts/demo``
   (``connect.influx.kcql``, ``connect.influx.url``, ``connect.influx.db``, the registry's URL);
4. ``select * from influxMeasure`` printed as the influx shell prints it, then everything stopped.

Everything listens on 127.0.0.1 only, on free ports; nothing is left running or on disk.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

from influx_sink_tools.demo import KCQL, RECORD_LINE, SCHEMA_FILE, TOPIC, shell_table

PARTITIONS = 3
GROUP = "influx-sink-demo"


def consume_command(bootstrap: str) -> list[str]:
    """``influx-sink consume`` as a user runs it: the console script when installed, else the module."""
    cli = os.path.join(os.path.dirname(sys.executable), "influx-sink")
    command = [cli] if os.access(cli, os.X_OK) else [sys.executable, "-m", "influx_sink_tools.cli"]
    return [*command, "consume", "--bootstrap-servers", bootstrap, "--topics", TOPIC, "--group-id", GROUP,
            "--until-idle", "2", "--session-timeout-ms", "3000"]


def main() -> int:
    from kafka import KafkaProducer

    from influx_sink_tools import local_influxdb, local_kafka, local_registry
    from influx_sink_tools.framing import confluent_frame, encode

    work = tempfile.mkdtemp(prefix="demo-kafka-")
    broker = influx = registry = None
    try:
        broker = local_kafka.start(os.path.join(work, "tansu"), topics=[TOPIC], partitions=PARTITIONS)
        print(f"broker:   {broker.bootstrap} (topic {TOPIC}, {PARTITIONS} partitions)")
        influx = local_influxdb.start(os.path.join(work, "influxd"))
        influx.query('CREATE DATABASE "mydb"')
        print(f"influxdb: {influx.url} (database mydb)")
        registry = local_registry.start()
        schema_text = SCHEMA_FILE.read_text(encoding="utf-8")
        schema_id = registry.register(f"{TOPIC}-value", schema_text)
        print(f"registry: {registry.url} (User registered under {TOPIC}-value, id {schema_id})")

        record = json.loads(RECORD_LINE)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        value = confluent_frame(schema_id, encode(json.loads(schema_text), record))
        md = producer.send(TOPIC, value=value).get(timeout=30)
        print(f"produced: {json.dumps(record)} -> {TOPIC}-{md.partition}@{md.offset}")
        producer.close()

        env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECT_")}
        env.update(CONNECT_INFLUX_URL=influx.url, CONNECT_INFLUX_DB="mydb", CONNECT_INFLUX_KCQL=KCQL,
                   CONNECT_INFLUX_SCHEMA_REGISTRY_URL=registry.url, CONNECT_PROGRESS_ENABLED="true")
        command = consume_command(broker.bootstrap)
        print("\n$ influx-sink " + " ".join(command[command.index("consume"):]), flush=True)
        code = subprocess.run(command, env=env).returncode
        if code != 0:
            print(f"influx-sink consume exited with {code}", file=sys.stderr)
            return code
        result = influx.query("select * from influxMeasure", db="mydb", epoch="ns")["results"][0]
        print("\n> select * from influxMeasure;")
        for series in result.get("series", []):
            print(shell_table(series))
        found = sum(len(s["values"]) for s in result.get("series", []))
        if found != 1:
            print(f"expected the record as 1 point, found {found}", file=sys.stderr)
            return 1
        return 0
    finally:
        if registry is not None:
            registry.stop()
        if broker is not None:
            broker.stop()
        if influx is not None:
            influx.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
