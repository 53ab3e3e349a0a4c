"""Apache Kafka: one KRaft node in combined broker+controller mode, jars from Maven Central."""

from __future__ import annotations

import base64
import os
import shutil
import uuid
from pathlib import Path

from tailor.devstack import nodenet, probes, procs
from tailor.devstack.components.base import Component
from tailor.devstack.errors import ComponentFailed

HEAP = "-Xmx512m"

#: log4j2 configuration: INFO to stdout (our log file); request logs and the full config
#: dumps (hundreds of lines per client the broker creates) only from WARN up.
LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = OUT
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.state.name = state.change.logger
logger.state.level = warn
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = warn
"""


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding.

    Kafka's own generator never returns an id starting with '-' (it would read as a
    command-line flag), so neither do we.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text


def server_properties(
    port: int, controller_port: int, log_dir: Path, pods_listener: str | None = None
) -> str:
    """server.properties of a single combined-mode node on loopback.

    ``pods_listener`` (host:port, the real node's address) adds a listener named PODS that
    advertises that address, so clients in pods are sent back to it, not to 127.0.0.1.
    """
    listeners = [f"PLAINTEXT://127.0.0.1:{port}", f"CONTROLLER://127.0.0.1:{controller_port}"]
    protocols = ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
    if pods_listener is not None:
        listeners.append(f"PODS://{pods_listener}")
        protocols.append("PODS:PLAINTEXT")
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}",
            f"listeners={','.join(listeners)}",
            f"advertised.listeners={','.join(listeners)}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            f"listener.security.protocol.map={','.join(protocols)}",
            f"log.dirs={log_dir}",
            # One broker: every internal topic has a single replica.
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            # Fewer consumer-offsets partitions: the first consumer group joins in
            # milliseconds instead of waiting for 50 partitions to be created.
            "offsets.topic.num.partitions=4",
            # Consumers in tests join at once; do not wait 3 s for more members.
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "num.partitions=1",
            "",
        ]
    )


class Kafka(Component):
    name = "kafka"
    #: kafka-pods: the listener pods on the real node use (unused without one).
    port_keys = ("kafka", "kafka-controller", "kafka-pods")
    start_timeout = 90.0
    stop_timeout = 30.0  # a clean shutdown lets the next start skip log recovery

    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.context.port('kafka')}"

    def pod_bootstrap(self) -> str:
        """Where pods on the real node reach the broker (the node's address)."""
        return f"{nodenet.GATEWAY}:{self.context.port('kafka-pods')}"

    def endpoint(self) -> str:
        return self.bootstrap()

    @property
    def config(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            str(self.context.tools.java),
            HEAP,
            "-Xms128m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            f"{self.context.tools.kafka_libs}{os.sep}*",
            main,
            *args,
        ]

    def argv(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.config))

    def prepare(self) -> None:
        port, controller_port = self.context.port("kafka"), self.context.port("kafka-controller")
        marker = self.data_dir / "formatted-controller-port"
        # The standalone controller's address is written into the metadata log when it is
        # formatted; a stack whose controller port had to change is formatted afresh.
        if marker.exists() and marker.read_text().strip() != str(controller_port):
            shutil.rmtree(self.log_dir, ignore_errors=True)
            marker.unlink()
        (self.data_dir / "log4j2.properties").write_text(LOG4J2)
        pods = self.pod_bootstrap() if self.context.real_node else None
        self.config.write_text(server_properties(port, controller_port, self.log_dir, pods))
        if (self.log_dir / "meta.properties").exists():
            return
        record = procs.spawn(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                new_cluster_id(),
                "-c",
                str(self.config),
            ),
            log=self.log,
        )
        probes.wait_until(
            lambda: procs.exited(record),
            what="formatting Kafka storage",
            timeout=60,
            log=self.log,
        )
        if not (self.log_dir / "meta.properties").exists():
            raise ComponentFailed(f"formatting Kafka storage failed; log: {self.log}")
        marker.write_text(str(controller_port))

    def healthy(self) -> bool:
        return probes.kafka_metadata(self.bootstrap())
