"""The six redis-server nodes of `tailor dev up --redis cluster`: a Redis Cluster as stack components.

Each node is a component like the single Redis (components/redis.py): daemonized with a pid file,
its log in the stack's logs, its client and cluster-bus ports kept in the stack's state. They start
as six standalone cluster nodes; the stack forms them into one cluster the first time
(`redis_cluster.form`: 3 primaries, node 3+i the replica of node i) and on a later `up` each node
comes back with its identity, role and peers from the nodes.conf in its data directory.
"""

from __future__ import annotations

from pathlib import Path

from tailor.devstack import probes, redis_cluster
from tailor.devstack.components.base import Component

NODES = 2 * redis_cluster.PRIMARIES


class RedisClusterNode(Component):
    """One node; the concrete classes (one per index) are `NODE_CLASSES`."""

    index: int = 0
    start_timeout = 30.0

    @property
    def port(self) -> int:
        return self.context.port(self.port_keys[0])

    @property
    def bus_port(self) -> int:
        return self.context.port(self.port_keys[1])

    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port} (bus {self.bus_port})"

    def node(self) -> redis_cluster.Node:
        """This node as redis_cluster's formation and checks see it."""
        return redis_cluster.Node(self.index, self.port, self.bus_port, self.data_dir)

    @property
    def nodes_conf(self) -> Path:
        """Written by redis-server once the node is part of a cluster: its identity and peers."""
        return self.data_dir / "nodes.conf"

    def recorded_ports(self) -> dict[str, int]:
        """The ports of a node that was part of a cluster (it has a nodes.conf), from the redis.conf
        it ran with; {} for a new node."""
        if not self.nodes_conf.exists() or not self.config.exists():
            return {}
        settings = dict(line.split(" ", 1) for line in self.config.read_text().splitlines() if " " in line)
        try:
            return {
                self.port_keys[0]: int(settings["port"]),
                self.port_keys[1]: int(settings["cluster-port"]),
            }
        except (KeyError, ValueError):
            return {}

    @property
    def config(self) -> Path:
        return self.data_dir / "redis.conf"

    def prepare(self) -> None:
        self.config.write_text(
            redis_cluster.node_conf(self.port, self.bus_port, self.data_dir, log_to_stdout=True)
        )

    def argv(self) -> list[str]:
        return [str(self.context.tools.redis_server), str(self.config)]

    def healthy(self) -> bool:
        return probes.redis_ping(self.port)


def _node_class(index: int) -> type[RedisClusterNode]:
    name = f"redis-cluster-{index}"
    attributes = {"index": index, "name": name, "port_keys": (name, f"{name}-bus")}
    return type(f"RedisClusterNode{index}", (RedisClusterNode,), attributes)


#: The six nodes in redis_cluster's order: 0-2 primaries, 3+i the replica of i.
NODE_CLASSES: tuple[type[RedisClusterNode], ...] = tuple(_node_class(index) for index in range(NODES))
