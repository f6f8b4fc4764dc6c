"""A real Apache Kafka broker (KRaft mode, one node) on loopback, as its own process group.

For development only: the tests (one broker per session, the ``kafka_broker`` fixture), the
stream benchmark and ``make demo-stream`` start this class; a deployment has its own brokers.
The broker's classpath is ``jars/broker/lib`` of the project checkout (``make jars`` copies it
from Maven Central); it never shares Spark's classpath. Outside the import layers, like
``demo.py``: nothing in the package imports it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

from batch_serving.ports import free_port

# the checkout's jars/broker/lib (src/batch_serving/ -> the repository root)
BROKER_LIB = Path(__file__).resolve().parents[2] / "jars" / "broker" / "lib"

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={logs}
num.partitions=2
offsets.topic.replication.factor=1
offsets.topic.num.partitions=2
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=2
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
"""


class BrokerUnavailable(RuntimeError):
    """The broker's jars are missing or it did not come up (its log's tail is in the message)."""


class KafkaBroker:
    """``kafka.Kafka`` in KRaft mode on free loopback ports; ``bootstrap`` once started."""

    def __init__(self, workdir: Path, heap_mb: int = 512) -> None:
        self.workdir = workdir
        self.heap_mb = heap_mb
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "broker.log"

    def _java(self, *args: str) -> list[str]:
        return ["java", f"-Xmx{self.heap_mb}m", "-cp", f"{BROKER_LIB}/*", *args]

    def start(self, timeout_s: float = 120) -> KafkaBroker:
        if not any(BROKER_LIB.glob("kafka_2.13-*.jar")):
            raise BrokerUnavailable(f"no Kafka broker jars in {BROKER_LIB}: run `make jars`")
        self.workdir.mkdir(parents=True, exist_ok=True)
        props = self.workdir / "server.properties"
        props.write_text(
            SERVER_PROPERTIES.format(
                port=self.port, controller=free_port(), logs=self.workdir / "logs"
            )
        )
        cluster_id = uuid.uuid4().hex[:22]
        subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)),
            check=True,
            capture_output=True,
        )
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self._java("kafka.Kafka", str(props)),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        """Until the port takes connections, then until the broker answers a metadata request
        (no client is pointed at a closed port: librdkafka would log each refusal)."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self._running() and not self._listening():
            time.sleep(0.2)
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        while time.monotonic() < deadline and self._running():
            try:
                admin.list_topics(timeout=2)
                return
            except Exception:
                time.sleep(0.5)
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        self.stop()
        raise BrokerUnavailable(f"Kafka broker on {self.bootstrap} did not start:\n{tail}")

    def _running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _listening(self) -> bool:
        import socket

        with socket.socket() as sock:
            sock.settimeout(1)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def create_topic(self, name: str, partitions: int = 2) -> str:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(name, num_partitions=partitions)])
        futures[name].result(timeout=30)
        return name

    def stop(self) -> None:
        """Kill the broker's whole process group (TERM, then KILL after 10 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
