"""Three Kafka nodes in one KRaft cluster on 127.0.0.1, for the fault tests (docs/operating.md#durability).

The dev stack's broker (components/kafka.py) is a single node: replication factor 1, nothing to fail
over to. This cluster is what a production Kafka is in miniature: three combined broker+controller
nodes with a static controller quorum (`controller.quorum.voters`), internal topics replicated three
times with `min.insync.replicas=2`, unclean leader election off. It is started only by the tests
that need it (a module fixture), never by `tailor dev up`, so the rest of the suite does not pay for
three JVMs.

Each node is a component of its own (pid file, log, data dir under the cluster's directory), so a
test can SIGKILL, pause or restart one node while the others serve.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tailor.devstack import certs, paths, ports, probes, procs
from tailor.devstack.artifacts import Toolbox
from tailor.devstack.components.base import StackContext
from tailor.devstack.components.kafka import LOG4J2, Kafka, new_cluster_id
from tailor.devstack.errors import ComponentFailed

SIZE = 3
#: Three JVMs share the test machine: each gets less than the single broker's 512 MiB.
NODE_HEAP = "-Xmx320m"


def node_properties(node_id: int, port: int, controller_port: int, voters: str, log_dir: Path) -> str:
    """server.properties of node `node_id` of the cluster whose quorum is `voters` (id@host:port,...)."""
    return "\n".join(
        [
            "process.roles=broker,controller",
            f"node.id={node_id}",
            f"controller.quorum.voters={voters}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={log_dir}",
            # What a production cluster of three has: every internal topic (the consumer groups'
            # committed offsets above all) on all three nodes, written to two before it counts.
            "offsets.topic.replication.factor=3",
            "transaction.state.log.replication.factor=3",
            "transaction.state.log.min.isr=2",
            "share.coordinator.state.topic.replication.factor=3",
            "share.coordinator.state.topic.min.isr=2",
            "default.replication.factor=3",
            "min.insync.replicas=2",
            # Kafka's default, said aloud: a replica that was not in sync never becomes leader.
            "unclean.leader.election.enable=false",
            "offsets.topic.num.partitions=4",
            "group.initial.rebalance.delay.ms=0",
            # Topics are made by whoever tests them, with their replication and settings.
            "auto.create.topics.enable=false",
            "",
        ]
    )


class ClusterNode(Kafka):
    """Node `node_id` of the cluster: the dev stack's broker recipe with a quorum of three."""

    heap = NODE_HEAP
    secure_listeners = False  # plaintext only: the fault tests are about replicas, not security
    start_timeout = 120.0  # three JVMs starting at once on two cores
    #: Every node of the cluster (set by KafkaCluster): prepare writes the quorum from their ports.
    cluster_nodes: tuple[ClusterNode, ...] = ()

    def __init__(self, context: StackContext, node_id: int, cluster_id: str) -> None:
        super().__init__(context)
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.name = f"kafka-{node_id}"
        self.port_keys = (self.name, f"{self.name}-controller")

    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.context.port(self.name)}"

    def voter(self) -> str:
        return f"{self.node_id}@127.0.0.1:{self.context.port(f'{self.name}-controller')}"

    def prepare(self) -> None:
        voters = ",".join(node.voter() for node in self.cluster_nodes)
        (self.data_dir / "log4j2.properties").write_text(LOG4J2)
        self.config.write_text(
            node_properties(
                self.node_id,
                self.context.port(self.name),
                self.context.port(f"{self.name}-controller"),
                voters,
                self.log_dir,
            )
        )
        if (self.log_dir / "meta.properties").exists():
            return  # a restart: the node recovers its logs
        # With a static quorum every node is formatted alike, with the cluster's one id.
        record = procs.spawn(
            self._java("kafka.tools.StorageTool", "format", "-t", self.cluster_id, "-c", str(self.config)),
            log=self.log,
        )
        probes.wait_until(
            lambda: procs.exited(record), what=f"formatting {self.name}", timeout=60, log=self.log
        )
        if not (self.log_dir / "meta.properties").exists():
            raise ComponentFailed(f"formatting the storage of {self.name} failed; log: {self.log}")


class KafkaCluster:
    """Three KRaft nodes under `directory` on free ports; `start()` returns once all three are brokers."""

    def __init__(self, directory: Path, tools: Toolbox | None = None) -> None:
        stack_paths = paths.StackPaths(directory)
        taken: list[int] = []
        for _ in range(2 * SIZE):
            taken.append(ports.pick(None, taken))
        self.context = StackContext(
            paths=stack_paths, certs=certs.CertPaths(stack_paths.certs), tools=tools or Toolbox()
        )
        cluster_id = new_cluster_id()
        self.nodes = tuple(ClusterNode(self.context, node_id, cluster_id) for node_id in range(1, SIZE + 1))
        for node, (port, controller_port) in zip(
            self.nodes, zip(taken[::2], taken[1::2], strict=True), strict=True
        ):
            self.context.ports[node.name] = port
            self.context.ports[f"{node.name}-controller"] = controller_port
            node.cluster_nodes = self.nodes

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap() for node in self.nodes)

    def node(self, node_id: int) -> ClusterNode:
        return self.nodes[node_id - 1]

    def start(self, timeout: float = 120.0) -> float:
        """Start every node that is not running (in parallel: a node waits for a quorum of controllers
        before it serves), then wait until the cluster lists all of them; the seconds it took."""
        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=SIZE) as pool:
            list(pool.map(lambda node: node.start(), self.nodes))
        self.wait_brokers(SIZE, timeout)
        return time.monotonic() - began

    def wait_brokers(self, count: int, timeout: float = 60.0) -> None:
        """Until the cluster's metadata lists `count` brokers."""
        probes.wait_until(
            lambda: len(self.brokers()) == count,
            what=f"{count} brokers in the Kafka cluster at {self.bootstrap}",
            timeout=timeout,
            log=self.nodes[0].log,
        )

    def brokers(self) -> set[int]:
        from confluent_kafka.admin import AdminClient  # heavy import, only when asked

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        return set(admin.list_topics(timeout=5).brokers)

    def leader(self, topic: str, partition: int = 0, timeout: float = 10.0) -> int:
        """The node id leading `topic`'s `partition` now (-1 while it has none), from the metadata."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        metadata = admin.list_topics(topic, timeout=timeout)
        leader: int = metadata.topics[topic].partitions[partition].leader
        return leader

    def kill(self, node_id: int) -> None:
        """SIGKILL one node: a crash, nothing flushed beyond what the OS already has."""
        self.node(node_id).kill()

    def pause(self, node_id: int) -> None:
        """SIGSTOP one node: alive to its sockets, silent to everyone (a stalled disk or a long GC)."""
        self._signal(node_id, signal.SIGSTOP)

    def resume(self, node_id: int) -> None:
        self._signal(node_id, signal.SIGCONT)

    def _signal(self, node_id: int, sig: int) -> None:
        pid = self.node(node_id).pid()
        if pid is None:
            raise ComponentFailed(f"kafka-{node_id} is not running")
        os.kill(pid, sig)

    def stop(self) -> None:
        for node in self.nodes:  # a paused node would not hear SIGTERM
            pid = node.pid()
            if pid is not None:
                os.kill(pid, signal.SIGCONT)
        with ThreadPoolExecutor(max_workers=SIZE) as pool:
            list(pool.map(lambda node: node.stop(), self.nodes))

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(
            f"--- {node.name} ({node.log}) ---\n{node.log.read_text(errors='replace')[-tail:]}"
            for node in self.nodes
            if node.log.exists()
        )
