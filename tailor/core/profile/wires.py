"""How the profile writer's packed commands reach Redis: one connection, or one per Redis Cluster primary.

The writer (tailor.core.profile.store) streams packed commands out and reads their replies back in
the order sent, without redis-py's per-command parsing (docs/pipeline.md). A wire does the routing:

- `Wire`: one connection to one Redis (standalone). Commands are joined into one send.
- `ClusterWire`: a Redis Cluster. Each command names the key it touches (the one key of an HMGET, or
  the key a guard call declares: its first user's profile; the writer gathers the users of one node
  into each call, `node`), goes to the primary of that key's slot on a connection of its own per node,
  and the replies are read back in the global order sent (each node answers its own commands in
  order). A guard call may reach a node that no longer serves some of its users (a slot moved since
  the map was read, or is migrating): the guard answers those users "not here" and writes the others,
  and the writer sends each refused user again in a call of its own. A call of several users that
  meets ASK (the key it declares already left a migrating slot) is not followed: ASKING would let the
  new owner serve every key of that slot, also those still at the old owner; `read` gives `ASKED` and
  the writer sends each of its users on its own. A MOVED reply
  (the slot has a new owner: a finished resharding or failover) refreshes the slot map and sends the
  command again to the new owner; ASK (the slot is migrating and the key already moved) sends it once
  to the node named, after ASKING. Both go on a connection of their own, so the replies still pending
  on the batch's connections stay in order. A dead node (a connection error) fails the write like on
  one Redis; the next write starts from a refreshed slot map (`ClusterWire.refresh`), so once a replica
  took over, the retried batch reaches it.

`confirm(replicas, timeout_ms)` ends a batch with WAIT on every connection used: Redis replicates
asynchronously, so a primary that dies can take the last writes it acknowledged with it (its replica
never saw them), and the worker would have stored their offsets. With WAIT the batch only counts as
written (and its offsets are stored) once `replicas` replicas of each primary written hold it; else the
write fails and the batch is retried (docs/operating.md#redis-cluster).
"""

from __future__ import annotations

import collections
from typing import Any, Final

import redis
import redis.cluster as rediscluster
import redis.crc

from tailor.core.profile import counting as profile_counting

#: Redirections followed for one command before the write fails (and the batch is retried).
MAX_REDIRECTS: Final = 5
#: A connection's commands go out in writes of about this size (a send is a system call: not one per few
#: dozen users), so Redis works on one while the worker counts the next.
SEND_BYTES: Final = 64 * 1024


class _Asked:
    """The reply `ClusterWire.read` gives for a command sent with `follow_ask=False` that met ASK."""


ASKED: Final = _Asked()


class NotReplicated(redis.exceptions.RedisError):
    """WAIT returned before enough replicas held the batch's writes: retry the batch (dedup makes the
    users already written harmless)."""


def _wait(connections: list[Any], replicas: int, timeout_ms: int) -> None:
    packed = profile_counting.pack_command(("WAIT", replicas, timeout_ms))
    for connection in connections:
        connection.send_packed_command([packed])
    for connection in connections:
        acknowledged = int(connection.read_response())
        if acknowledged < replicas:
            raise NotReplicated(
                f"the batch reached {acknowledged} of {replicas} replica(s) of "
                f"{connection.host}:{connection.port} in {timeout_ms} ms; retrying it"
            )


class Wire:
    """One connection to a standalone Redis."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self._outgoing: list[bytes] = []
        self._size = 0

    def node(self, key: str) -> str:
        return ""  # one Redis serves every key

    def send(self, packed: bytes, key: str, follow_ask: bool = True) -> None:
        self._outgoing.append(packed)
        self._size += len(packed)
        if self._size >= SEND_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._outgoing:
            # Joined: redis-py makes one system call per item (two per user not cached).
            self.connection.send_packed_command([b"".join(self._outgoing)])
            self._outgoing = []
            self._size = 0

    def read(self) -> Any:
        # Undecoded replies (bytes): redis-py's per-command parsing costs as much as the counting.
        return self.connection.read_response(disable_decoding=True)

    def confirm(self, replicas: int, timeout_ms: int) -> None:
        _wait([self.connection], replicas, timeout_ms)

    def close(self, healthy: bool) -> None:
        if not healthy:
            self.connection.disconnect()  # replies may be pending: never reuse


class ClusterWire:
    """Connections to the primaries of a Redis Cluster, for one batch (module docstring)."""

    def __init__(self, client: rediscluster.RedisCluster, nodes: dict[str, str]) -> None:
        self.client = client
        # key -> the name of the primary serving its slot, kept by the caller across batches (a batch
        # holds thousands of users, mostly of different slots: a lookup in the client's slot map per
        # user and batch cost more than the guard calls saved); emptied when the slot map is read again.
        self._nodes = nodes
        self._connections: dict[str, tuple[Any, Any]] = {}  # node name -> (pool, connection)
        # node name -> (pool, connection) for redirected commands: apart from the batch's connection to
        # the node, whose replies may be pending, and held to the end of the batch so that `confirm`
        # WAITs on the connection that wrote (WAIT counts the replicas of its own client's writes).
        self._redirects: dict[str, tuple[Any, Any]] = {}
        self._outgoing: dict[str, list[bytes]] = collections.defaultdict(list)  # node name -> commands
        self._sizes: dict[str, int] = collections.defaultdict(int)  # node name -> their bytes
        # (connection, command, whether an ASK reply is followed), in the order sent
        self._sent: collections.deque[tuple[Any, bytes, bool]] = collections.deque()

    @staticmethod
    def refresh(client: rediscluster.RedisCluster, nodes: dict[str, str]) -> None:
        """Read the slot map again (after a failed write: a node died, a replica may own its slots;
        after MOVED), and forget the keys' nodes read from the old one."""
        client.nodes_manager.initialize()
        nodes.clear()

    def node(self, key: str) -> str:
        """The name of the primary that serves `key`'s slot, as the slot map read last says (the
        guard calls of its users are gathered into one)."""
        name = self._nodes.get(key)
        if name is None:
            slot = redis.crc.key_slot(key.encode())
            name = self._nodes[key] = self.client.nodes_manager.get_node_from_slot(slot).name
        return name

    def _connection(self, name: str) -> Any:
        held = self._connections.get(name)
        if held is None:
            node = self.client.get_node(node_name=name)  # type: ignore[no-untyped-call]
            if node is None:  # gone from the map since the key's node was looked up
                raise redis.exceptions.ClusterError(f"no node {name} in the slot map any more")
            pool = node.redis_connection.connection_pool
            held = self._connections[name] = (pool, pool.get_connection())
        return held[1]

    def send(self, packed: bytes, key: str, follow_ask: bool = True) -> None:
        """Queue `packed`, a command that declares `key`. `follow_ask=False`: an ASK reply is not
        followed, and `read` gives `ASKED` for it instead."""
        name = self.node(key)
        connection = self._connection(name)
        self._outgoing[name].append(packed)
        self._sent.append((connection, packed, follow_ask))
        self._sizes[name] += len(packed)
        if self._sizes[name] >= SEND_BYTES:  # per node: sends as large as on one Redis
            connection.send_packed_command([b"".join(self._outgoing.pop(name))])
            del self._sizes[name]

    def flush(self) -> None:
        for name, parts in self._outgoing.items():
            if parts:
                self._connections[name][1].send_packed_command([b"".join(parts)])
        self._outgoing.clear()
        self._sizes.clear()

    def read(self) -> Any:
        connection, packed, follow_ask = self._sent.popleft()
        try:
            return connection.read_response(disable_decoding=True)
        except redis.exceptions.AskError as asked:
            return self._redirected(packed, asked) if follow_ask else ASKED
        except redis.exceptions.MovedError as moved:
            return self._redirected(packed, moved, follow_ask)

    def confirm(self, replicas: int, timeout_ms: int) -> None:
        """WAIT on every connection that wrote: each primary's, and those of redirected commands."""
        held = [*self._connections.values(), *self._redirects.values()]
        _wait([connection for _, connection in held], replicas, timeout_ms)

    def _redirected(
        self, packed: bytes, error: redis.exceptions.ResponseError, follow_ask: bool = True
    ) -> Any:
        for _ in range(MAX_REDIRECTS):
            asking = isinstance(error, redis.exceptions.AskError)
            if asking and not follow_ask:
                return ASKED
            if not asking:
                self.refresh(self.client, self._nodes)
            node = self.client.get_node(host=error.host, port=error.port)  # type: ignore[attr-defined,no-untyped-call]
            if node is None:
                self.refresh(self.client, self._nodes)
                node = self.client.get_node(host=error.host, port=error.port)  # type: ignore[attr-defined,no-untyped-call]
            if node is None:
                raise redis.exceptions.ClusterError(f"redirected to an unknown node: {error}")
            held = self._redirects.get(node.name)
            if held is None:
                pool = node.redis_connection.connection_pool
                held = self._redirects[node.name] = (pool, pool.get_connection())
            connection = held[1]
            try:
                if asking:
                    connection.send_packed_command([b"*1\r\n$6\r\nASKING\r\n" + packed])
                    connection.read_response()
                else:
                    connection.send_packed_command([packed])
                return connection.read_response(disable_decoding=True)
            except (redis.exceptions.AskError, redis.exceptions.MovedError) as again:
                error = again  # its reply is read: the connection is clean for the next try
        raise redis.exceptions.ClusterError(f"still redirected after {MAX_REDIRECTS} tries: {error}")

    def close(self, healthy: bool) -> None:
        """Give the connections back (a failed batch's are closed: replies may be pending)."""
        for pool, connection in [*self._connections.values(), *self._redirects.values()]:
            if not healthy:
                connection.disconnect()
            pool.release(connection)
        self._connections.clear()
        self._redirects.clear()
