"""A Redis Cluster on 127.0.0.1 (3 primaries, 3 replicas), for the tests and benchmarks of cluster mode.

The dev stack's Redis (components/redis.py) is one node. This is what a production Redis Cluster is
in miniature: Debian's redis-server 7.0 with `cluster-enabled yes` on six free ports, the 16384 slots
split in three ranges over the primaries, each primary with one replica. Two users: the tests and
benchmarks that ask for one (the `redis_cluster` fixture in tests/conftest.py; `RedisCluster` below,
whose nodes are children of the creating process), and `tailor dev up --redis cluster`, whose nodes
are daemonized components of the stack (components/redis_cluster.py). Both form the cluster with
`form` here. docs/devstack.md#redis-cluster says how to use it.

The cluster is assembled by hand rather than with `redis-cli --cluster create`, so which node is a
primary and which its replica is fixed (nodes 0-2 primaries, node 3+i the replica of node i): a
test can name the primary it kills and the replica that takes over. The nodes persist like the dev
stack's Redis (an AOF fsynced on every write), so a single-Redis run and a cluster run of the same
benchmark compare alike; replication to the replicas is asynchronous, as in every Redis Cluster
(docs/operating.md#durability says what that can lose).

Each node is a plain child process with its own directory (redis.conf, nodes.conf, AOF, log): a test
can SIGKILL one, restart it (it rejoins with its identity from nodes.conf, as a replica when its
replica was promoted meanwhile), and move a slot live (`migrate_slot`) to see MOVED and ASK.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis
import redis.crc

from tailor.core import redis_target
from tailor.devstack import ports, probes
from tailor.devstack.errors import ComponentFailed

PRIMARIES = 3
SLOTS = 16384
#: How long a node may be silent before the others call it failed and its replica takes over. Redis's
#: default is 15 s; tests that kill a primary want the failover in about two seconds.
NODE_TIMEOUT_MS = 1000


def node_conf(
    port: int, bus_port: int, directory: Path, extra: tuple[str, ...] = (), *, log_to_stdout: bool = False
) -> str:
    """redis.conf of one cluster node; its log in `directory`, or on stdout for a stack's component
    (whose stdout is its log)."""
    logfile = '""' if log_to_stdout else str(directory / "redis.log")
    return "\n".join(
        [
            "bind 127.0.0.1",
            f"port {port}",
            # A free port of its own for the cluster bus (by default port + 10000, which may be taken,
            # or above 65535 for the kernel's high ephemeral ports).
            f"cluster-port {bus_port}",
            f"dir {directory}",
            "daemonize no",
            f"logfile {logfile}",
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",
            f"cluster-node-timeout {NODE_TIMEOUT_MS}",
            # A replica takes over however long it was cut off from its primary (the default refuses a
            # replica whose link was down for long: a test's restarted node would never be promoted).
            "cluster-replica-validity-factor 0",
            # The same persistence as the dev stack's Redis (components/redis.py): benchmarks of one
            # node and of the cluster then differ only by the cluster.
            "appendonly yes",
            "appendfsync always",
            'save ""',
            *extra,
            "",
        ]
    )


@dataclass
class Node:
    """One redis-server of the cluster: its port, directory and process (None while stopped)."""

    index: int
    port: int
    bus_port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    def client(self, **options: object) -> redis.Redis:
        """A plain client of this one node (no redirections followed): for cluster administration."""
        return redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=5, **options)  # type: ignore[arg-type]

    def node_id(self) -> str:
        with self.client() as client:
            return str(client.execute_command("CLUSTER MYID").decode())

    def info(self, section: str) -> dict[str, str]:
        """INFO `section`, or CLUSTER INFO for "cluster", as text fields."""
        with self.client(decode_responses=True) as client:
            fields = client.execute_command("CLUSTER INFO") if section == "cluster" else client.info(section)
        return {str(key): str(value) for key, value in fields.items()}

    def cluster_nodes(self) -> dict[str, dict[str, object]]:
        """CLUSTER NODES as this node sees it, by address (redis-py parses the lines)."""
        with self.client(decode_responses=True) as client:
            nodes: dict[str, dict[str, object]] = client.execute_command("CLUSTER NODES")
        return nodes

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cpu_seconds(self) -> float:
        """CPU this node has used, from /proc (the benchmarks' per-core figures)."""
        if self.process is None:
            return 0.0
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RedisCluster:
    """Six cluster nodes under `directory` on free ports. `start()` returns once the cluster is ok."""

    def __init__(self, directory: Path, *, extra: tuple[str, ...] = ()) -> None:
        self.directory = directory
        self.extra = extra
        taken: list[int] = []
        for _ in range(2 * 2 * PRIMARIES):  # a client port and a bus port for each node
            taken.append(ports.pick(None, taken))
        self.nodes = tuple(
            Node(index, port, bus_port, directory / f"node-{index}")
            for index, (port, bus_port) in enumerate(zip(taken[::2], taken[1::2], strict=True))
        )

    # --- what clients are given -------------------------------------------------------------------

    @property
    def url(self) -> str:
        """A seed node's URL: cluster clients discover the others from it."""
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def target(self) -> redis_target.RedisTarget:
        """The RedisTarget of this cluster (cluster mode on), as a stack would configure it."""
        return redis_target.RedisTarget.parse(self.url, mode=redis_target.CLUSTER)

    def environment(self) -> dict[str, str]:
        """TAILOR_REDIS_* for a `tailor` process (worker, API, operator) using this cluster."""
        return self.target().environment()

    # --- life cycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> float:
        """Start the six nodes, assign the slots, attach the replicas and wait for `cluster_state:ok`
        everywhere; the seconds it took."""
        began = time.monotonic()
        for node in self.nodes:
            self._spawn(node)
        for node in self.nodes:
            probes.wait_until(
                lambda node=node: probes.redis_ping(node.port),  # type: ignore[misc]
                what=f"Redis cluster node {node.index} on port {node.port}",
                timeout=timeout,
                log=node.log,
                alive=node.running,
            )
        form(self.nodes, timeout)
        self.wait_ok(timeout)
        return time.monotonic() - began

    def wait_ok(self, timeout: float = 60.0) -> None:
        """Until every running node says `cluster_state:ok` and every replica is in sync with a primary."""
        probes.wait_until(
            lambda: settled([node for node in self.nodes if node.running()]),
            what="the Redis cluster to be ok",
            timeout=timeout,
            log=self.nodes[0].log,
        )

    def _spawn(self, node: Node) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise ComponentFailed("redis-server is not installed (scripts/apt-packages.sh installs it)")
        node.directory.mkdir(parents=True, exist_ok=True)
        config = node.directory / "redis.conf"
        config.write_text(node_conf(node.port, node.bus_port, node.directory, self.extra))
        node.process = subprocess.Popen(
            [server, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGCONT)  # a paused node would not hear SIGTERM
                node.process.terminate()
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(10)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait(10)

    # --- faults --------------------------------------------------------------------------------

    def kill(self, node: Node) -> None:
        """SIGKILL one node: a crash. Its replica is promoted after NODE_TIMEOUT_MS and an election."""
        if node.process is None or node.process.poll() is not None:
            raise ComponentFailed(f"Redis cluster node {node.index} is not running")
        node.process.send_signal(signal.SIGKILL)
        node.process.wait(10)

    def pause(self, node: Node) -> None:
        """SIGSTOP one node: alive to its sockets, silent to everyone (a replica falling behind)."""
        if node.process is None or node.process.poll() is not None:
            raise ComponentFailed(f"Redis cluster node {node.index} is not running")
        node.process.send_signal(signal.SIGSTOP)

    def resume(self, node: Node) -> None:
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGCONT)

    def restart(self, node: Node, timeout: float = 60.0) -> None:
        """Start a stopped node again with its nodes.conf (it rejoins as the replica of whoever holds
        its slots now) and wait until the cluster is ok."""
        if node.running():
            raise ComponentFailed(f"Redis cluster node {node.index} is still running")
        self._spawn(node)
        probes.wait_until(
            lambda: probes.redis_ping(node.port),
            what=f"Redis cluster node {node.index} to restart",
            timeout=timeout,
            log=node.log,
            alive=node.running,
        )
        self.wait_ok(timeout)

    def wait_promoted(self, node: Node, timeout: float = 30.0) -> None:
        """Until `node` (a replica whose primary failed) is a primary serving its slots."""
        probes.wait_until(
            lambda: self.role(node) == "master" and node.info("cluster").get("cluster_state") == "ok",
            what=f"Redis cluster node {node.index} to be promoted",
            timeout=timeout,
            log=node.log,
        )

    # --- topology ------------------------------------------------------------------------------

    def role(self, node: Node) -> str:
        """'master' or 'slave', as the node itself says."""
        return role(node)

    def primary(self, index: int) -> Node:
        return self.nodes[index]

    def replica_of(self, primary: Node) -> Node:
        """The replica attached to `primary` (node index+3 as started; whichever replicates it now)."""
        primary_id = primary.node_id()
        for node in self.nodes:
            if node is primary or not node.running():
                continue
            for seen in node.cluster_nodes().values():
                if "myself" in str(seen["flags"]) and seen["master_id"] == primary_id:
                    return node
        raise ComponentFailed(f"Redis cluster node {primary.index} has no replica")

    def owner(self, slot: int) -> Node:
        """The running primary that serves `slot` now, as a running node's CLUSTER SLOTS says."""
        by_port = {node.port: node for node in self.nodes}
        for node in self.nodes:
            if not node.running():
                continue
            with node.client() as client:
                for first, last, primary, *_ in client.execute_command("CLUSTER SLOTS"):
                    if first <= slot <= last:
                        return by_port[int(primary[1])]
        raise ComponentFailed(f"no running node knows who serves slot {slot}")

    @staticmethod
    def slot_of(key: str | bytes) -> int:
        """The hash slot of `key` (its {hash tag} when it has one)."""
        return int(redis.crc.key_slot(key.encode() if isinstance(key, str) else key))

    def migrate_slot(
        self,
        slot: int,
        destination: Node,
        *,
        batch: int = 100,
        between: Callable[[], None] | None = None,
    ) -> int:
        """Move `slot` live to the primary `destination`, the way `redis-cli --cluster reshard` does:
        mark it IMPORTING there and MIGRATING at its owner, MIGRATE its keys `batch` at a time (clients
        meanwhile get ASK for keys already moved), then give the slot to `destination` on every
        primary. `between` runs once the slot is marked and before any key moves (a test's moment to
        see ASK). Returns the number of keys moved."""
        source = self.owner(slot)
        if source is destination:
            return 0
        source_id, destination_id = source.node_id(), destination.node_id()
        moved = 0
        with source.client() as source_client, destination.client() as destination_client:
            destination_client.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
            source_client.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", destination_id)
            if between is not None:
                between()
            while True:
                keys = source_client.execute_command("CLUSTER GETKEYSINSLOT", slot, batch)
                if not keys:
                    break
                source_client.execute_command(
                    "MIGRATE", "127.0.0.1", destination.port, "", 0, 5000, "KEYS", *keys
                )
                moved += len(keys)
            # The destination first: once the source lets go, clients it redirects must find an owner.
            destination_client.execute_command("CLUSTER SETSLOT", slot, "NODE", destination_id)
            source_client.execute_command("CLUSTER SETSLOT", slot, "NODE", destination_id)
        for node in self.nodes:
            if node.running() and node not in (source, destination) and self.role(node) == "master":
                with node.client() as client:
                    client.execute_command("CLUSTER SETSLOT", slot, "NODE", destination_id)
        return moved

    def logs(self, tail: int = 2000) -> str:
        return "\n".join(
            f"--- node {node.index} ({node.log}) ---\n{node.log.read_text(errors='replace')[-tail:]}"
            for node in self.nodes
            if node.log.exists()
        )


def role(node: Node) -> str:
    """'master' or 'slave', as the node itself says."""
    return node.info("replication").get("role", "")


def formed(nodes: Sequence[Node]) -> bool:
    """True when the nodes were made a cluster before (nodes.conf already knows the others or
    slots), False when each still stands alone, as redis-server starts without a nodes.conf."""
    return any(
        int(node.info("cluster").get("cluster_known_nodes", "1")) > 1
        or int(node.info("cluster").get("cluster_slots_assigned", "0")) > 0
        for node in nodes
    )


def form(nodes: Sequence[Node], timeout: float = 60.0) -> None:
    """Make six fresh, running nodes one cluster: the slots split in ranges over the first
    PRIMARIES, every node MEETs the first, node PRIMARIES+i REPLICATEs node i. The layout is fixed so
    a test can name the primary it kills and the replica that takes over (why not `redis-cli
    --cluster create`). Returns before the replicas are in sync: `settled` says when they are."""
    primaries, replicas = nodes[:PRIMARIES], nodes[PRIMARIES:]
    bounds = [SLOTS * i // PRIMARIES for i in range(PRIMARIES + 1)]
    for epoch, node in enumerate(nodes, start=1):
        with node.client() as client:
            # Distinct epochs from the start, so no two primaries ever claim a slot with the same.
            client.execute_command("CLUSTER SET-CONFIG-EPOCH", epoch)
    for node, first, end in zip(primaries, bounds, bounds[1:], strict=False):
        with node.client() as client:
            client.execute_command("CLUSTER ADDSLOTSRANGE", first, end - 1)
    with nodes[0].client() as client:
        for node in nodes[1:]:
            client.execute_command("CLUSTER MEET", "127.0.0.1", node.port, node.bus_port)
    probes.wait_until(
        lambda: all(len(node.cluster_nodes()) == len(nodes) for node in nodes),
        what=f"every Redis cluster node to know the other {len(nodes) - 1}",
        timeout=timeout,
        log=nodes[0].log,
    )
    for primary, replica in zip(primaries, replicas, strict=True):
        primary_id = primary.node_id()
        with replica.client() as client:
            client.execute_command("CLUSTER REPLICATE", primary_id)


def settled(nodes: Sequence[Node]) -> bool:
    """True when every node of `nodes` (the running ones) says `cluster_state:ok`, every replica
    among them is in sync with its primary, and PRIMARIES of them are primaries."""
    for node in nodes:
        if node.info("cluster").get("cluster_state") != "ok":
            return False
        replication = node.info("replication")
        if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
            return False
    return sum(role(node) == "master" for node in nodes) >= PRIMARIES


def start(directory: Path, *, extra: tuple[str, ...] = (), timeout: float = 60.0) -> RedisCluster:
    """A started cluster under `directory`; stopped again (and ComponentFailed) if it does not settle."""
    cluster = RedisCluster(directory, extra=extra)
    try:
        cluster.start(timeout)
    except Exception as error:
        logs = cluster.logs()
        cluster.stop()
        raise ComponentFailed(f"the Redis cluster did not start: {error}\n{logs}") from error
    return cluster


def main(argv: list[str] | None = None) -> None:
    """`python -m tailor.devstack.redis_cluster DIR`: start a cluster under DIR, print the variables
    that point Tailor at it, and stop it on Ctrl-C."""
    import sys

    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 1:
        raise SystemExit("usage: python -m tailor.devstack.redis_cluster DIR")
    cluster = start(Path(arguments[0]).resolve())
    try:
        for name, value in cluster.environment().items():
            print(f"export {name}={value}")
        print("# nodes: " + " ".join(f"{node.index}=127.0.0.1:{node.port}" for node in cluster.nodes))
        print("# Ctrl-C stops the cluster", flush=True)
        stopping = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
        signal.sigwait(stopping)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
