"""The decision hot path on a Redis Cluster: tailor_api.resp's connection, one per primary, by hash slot.

Why not redis-py's asyncio RedisCluster here: it was measured against this in the same run, for the
decision's own commands (docs/content-api.md#redis-cluster); everything off the hot path uses it.

Each command goes to the primary serving its key's hash slot (CRC16 of the key, or of its {hash tag}),
over that primary's multiplexed, pipelined
connection (tailor_api.resp.Connection). A request's commands name one user's keys, which share the
user's tag and so one slot: a decision is still one round trip to one node. A pipeline that mixes
slots (the rate limiter's client and user counters; feedback's click count beside the user's keys)
is split by node, the parts sent at once, and the replies put back in the order of the commands.

The slot map comes from CLUSTER SLOTS, asked of any node that answers, at the first call and again:
- after MOVED (a resharding finished, or a failover): the slot's new owner is taken from the reply at
  once, the command sent there, and the whole map reloaded in the background;
- on ASK (the slot is being migrated and this key has moved already): the command goes to the node
  named, after ASKING, and the map stays as it is (the slot is still the old owner's);
- after TRYAGAIN (a multi-key command whose keys are split mid-migration) and CLUSTERDOWN (a primary
  failed and its replica is not promoted yet): the command is sent again after a pause;
- when a node's connection is lost or refused: the map is reloaded (a failover gave its slots to the
  promoted replica) and the commands it did not answer are sent again.
Retries are bounded (RETRY_PAUSES), then RedisUnavailable: the route's usual 503 with Retry-After.
Only commands without a final reply are sent again; one whose connection was lost after Redis ran
it may run twice (as with redis-py's cluster client): a cap counts one impression more, a round-robin
position advances one more. Writes sent without waiting are watched too: redirected or lost ones are
sent again in the background, so a resharding does not drop session memory.
"""

from __future__ import annotations

import asyncio
import binascii
import collections
import dataclasses
import functools
import logging
import time
from collections.abc import Sequence
from typing import Any, Final

import redis.crc

from tailor.core import logthrottle, redis_target
from tailor_api import metrics, resp

Address = tuple[str, int]
SLOTS: Final = redis.crc.REDIS_CLUSTER_HASH_SLOTS
# Pauses before the rounds that follow a lost node, CLUSTERDOWN or TRYAGAIN (~1.6 s in all: a
# failover with cluster-node-timeout 1 s fits in it; a longer one gets 503s, then recovers by itself).
RETRY_PAUSES: Final = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8)
# Rounds that only follow MOVED or ASK (no pause): a slot moved twice while a call was under way.
REDIRECT_ROUNDS: Final = 5
# A MOVED reloads the whole map in the background at most this often (a resharding answers many).
RELOAD_SECONDS: Final = 0.5
# Commands that name no key go to any primary; scripts and functions name theirs after a count.
_KEYLESS: Final = frozenset({"PING", "CLUSTER", "ASKING", "INFO", "FUNCTION", "SCRIPT", "TIME"})
_SCRIPTS: Final = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})
_RETRIED: Final = ("MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN")

log = logging.getLogger(__name__)
log.addFilter(logthrottle.RepeatThrottle())


def key_slot(key: bytes | str | int | float) -> int:
    """The hash slot of `key`: CRC16/XMODEM of its {hash tag} when it has one, else of all of it,
    modulo 16384. redis.crc.key_slot is the reference (the tests compare); this one takes text without
    encoding it first and remembers recent tags: a request names one user's tag several times, and
    this is on every command of the hot path."""
    if type(key) is not str:
        return redis.crc.key_slot(key if isinstance(key, bytes) else str(key).encode())
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:  # `{}` is no tag: the whole key is hashed
            return _slot_of_tag(key[start + 1 : end])
    return _slot_of_tag(key)


@functools.lru_cache(maxsize=4096)
def _slot_of_tag(text: str) -> int:
    # '{' and '}' are single bytes in UTF-8, never part of another character: finding them in the
    # text finds them in the bytes Redis hashes.
    return binascii.crc_hqx(text.encode(), 0) % SLOTS


def command_keys(command: resp.Command) -> tuple[bytes | str | int | float, ...]:
    """The keys `command` names (none for PING, CLUSTER …)."""
    name = str(command[0]).upper()
    if name in _SCRIPTS:
        count = int(command[2])
        return command[3 : 3 + count]
    if name in _KEYLESS or len(command) < 2:
        return ()
    return (command[1],)


def routing_key(command: resp.Command) -> bytes | str | int | float | None:
    """The key whose slot `command` must run on (its first), or None for a keyless command. Its other
    keys must share the slot (CROSSSLOT otherwise): Tailor's keys keep what one call touches under one
    tag."""
    name = command[0]
    if name in _SCRIPTS:
        return command[3] if int(command[2]) else None
    if name in _KEYLESS or len(command) < 2:
        return None
    return command[1]


def command_slot(command: resp.Command) -> int | None:
    """The slot `command` must run on, or None for a keyless command."""
    key = routing_key(command)
    return None if key is None else key_slot(key)


def tag_prefix(key: str) -> str | None:
    """`key` up to the end of its hash tag, or None without one: a key that starts with it has the
    same tag (its first `{` and the `}` after it are at the same places), so the same slot."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[: end + 1]
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class Redirect:
    """A MOVED or ASK error reply: `slot` is served (MOVED) or, for this key, answered (ASK) by `node`.
    An empty host means the node that sent the reply (Redis 7 sends that when it knows no endpoint)."""

    kind: str
    slot: int
    node: Address


def parse_redirect(reply: object) -> Redirect | None:
    """The redirection in an error reply (`MOVED 3999 10.0.0.7:6379`, `ASK …`), else None."""
    if not isinstance(reply, resp.ReplyError):
        return None
    kind, _, rest = str(reply).partition(" ")
    if kind not in ("MOVED", "ASK"):
        return None
    slot, _, where = rest.partition(" ")
    host, _, port = where.rpartition(":")  # rpartition: an IPv6 host has colons of its own
    return Redirect(kind, int(slot), (host.strip("[]"), int(port)))


def build_slot_map(reply: Sequence[Any], default_host: str) -> tuple[list[Address | None], list[Address]]:
    """From a CLUSTER SLOTS reply: the primary serving each of the 16384 slots (None: none does), and
    every node named (primaries first), to ask for the map next time. A host that is empty or `?`
    (unknown endpoint) is `default_host`, the node that gave the reply."""
    owners: list[Address | None] = [None] * SLOTS
    primaries: list[Address] = []
    replicas: list[Address] = []
    for first, last, primary, *others in reply:
        address = _address(primary, default_host)
        owners[int(first) : int(last) + 1] = [address] * (int(last) - int(first) + 1)
        if address not in primaries:
            primaries.append(address)
        replicas += [node for node in (_address(o, default_host) for o in others) if node not in replicas]
    return owners, primaries + [node for node in replicas if node not in primaries]


def _address(node: Sequence[Any], default_host: str) -> Address:
    host = node[0].decode() if isinstance(node[0], bytes) else str(node[0] or "")
    return (default_host if host in ("", "?") else host, int(node[1]))


class ClusterConnection:
    """tailor_api.resp.Connection's interface (execute, send_nowait, close) on a Redis Cluster, seeded by
    the target's host and port (any node: the others are discovered)."""

    def __init__(self, target: redis_target.RedisTarget, *, timeout_seconds: float = 2.0) -> None:
        self.target = target
        self.timeout_seconds = timeout_seconds
        self.map_loads = 0  # how often the slot map was loaded
        self.redirections: collections.Counter[str] = collections.Counter()  # MOVED, ASK, TRYAGAIN, …
        self._seed: Address = (target.host, target.port)
        self._owners: list[Address | None] | None = None
        self._known: list[Address] = []  # every node of the last map, primaries first
        self._nodes: dict[Address, resp.Connection] = {}
        self._loading: asyncio.Task[None] | None = None
        self._loaded_at = -float("inf")
        self._background: set[asyncio.Task[Any]] = set()
        self._closed = False
        # Nodes whose connection failed last time: asked for the map last (a dead pod's address can
        # take the whole connect timeout to fail, the retries' budget).
        self._suspects: set[Address] = set()

    # --- routing -------------------------------------------------------------------------------

    def node(self, address: Address) -> resp.Connection:
        """The multiplexed connection to one node (made on first use; it connects on its first call)."""
        connection = self._nodes.get(address)
        if connection is None:
            host, port = address
            node_target = dataclasses.replace(self.target, host=host, port=port, db=0)
            connection = resp.Connection(node_target, timeout_seconds=self.timeout_seconds)
            self._nodes[address] = connection
        return connection

    def owner(self, slot: int | None) -> Address | None:
        """The primary serving `slot` in the current map (any primary for None)."""
        if self._owners is None:
            return None
        if slot is None:
            return self._known[0] if self._known else self._seed
        return self._owners[slot]

    def _single_node(self, commands: Sequence[resp.Command]) -> Address | None:
        """The node serving every one of `commands` (the common case: one user's keys, one slot), or
        None when they span nodes or a slot has no owner in the map. Keys under the first key's tag
        are recognised by their prefix, without hashing them again. This runs twice a decision (its
        read, its write): the common case (a plain command naming a tagged key first) is written out
        here rather than through routing_key and key_slot (docs/performance.md#redis-cluster-decide)."""
        first = commands[0]
        name = first[0]
        key = first[1] if len(first) > 1 and name not in _SCRIPTS and name not in _KEYLESS else None
        prefix = None
        if (
            type(key) is str
            and (start := key.find("{")) >= 0
            and (end := key.find("}", start + 1)) > start + 1
        ):
            slot: int | None = _slot_of_tag(key[start + 1 : end])
            prefix = key[: end + 1]
        else:
            key = routing_key(first)
            slot = None if key is None else key_slot(key)
        address = self.owner(slot)
        for command in commands[1:]:
            if prefix is not None and command[0] not in _SCRIPTS and command[0] not in _KEYLESS:
                other = command[1] if len(command) > 1 else None
                if type(other) is str and other.startswith(prefix):
                    continue
            other = routing_key(command)
            other_slot = None if other is None else key_slot(other)
            if other_slot != slot and self.owner(other_slot) != address:
                return None
        return address

    async def execute(self, commands: Sequence[resp.Command]) -> list[Any]:
        """The replies to `commands`, in order; error replies come back as ReplyError, as from
        resp.Connection, but never a redirection: those are followed."""
        if self._owners is None:
            await self.reload()
        address = self._single_node(commands)
        if address is None:
            everything = list(range(len(commands)))
            return await self._settle(commands, [None] * len(commands), everything, {}, wait=False)
        try:
            replies = await self.node(address).execute(commands)
        except resp.RedisUnavailable as error:
            self._suspects.add(address)
            everything = list(range(len(commands)))
            return await self._settle(commands, [None] * len(commands), everything, {}, wait=True,
                                      failure=str(error))  # fmt: skip
        for reply in replies:
            if type(reply) is resp.ReplyError and str(reply).startswith(_RETRIED):
                asks: dict[int, Address] = {}
                todo, wait, failure = self._classify(replies, list(range(len(commands))), asks)
                return await self._settle(commands, replies, todo, asks, wait=wait, failure=failure)
        return replies

    async def _settle(
        self, commands: Sequence[resp.Command], replies: list[Any], todo: list[int],
        asks: dict[int, Address], *, wait: bool, failure: str = "",
    ) -> list[Any]:  # fmt: skip
        """Fill in the replies of `todo` (indexes into `commands`, to send where they belong now, or
        to the node of their ASK), after a pause and a reload of the map when `wait`."""
        pauses = iter(RETRY_PAUSES)
        redirects = 0
        while todo:
            if wait:
                pause = next(pauses, None)
                if pause is None:
                    raise resp.RedisUnavailable(
                        f"Redis Cluster: {failure or 'no answer'} (retried for {sum(RETRY_PAUSES):.1f}s)"
                    )
                await asyncio.sleep(pause)
                try:
                    await self.reload()
                except resp.RedisUnavailable as error:
                    failure = str(error)
                    continue
            else:
                redirects += 1
                if redirects > REDIRECT_ROUNDS:
                    raise resp.RedisUnavailable(
                        f"Redis Cluster: still redirected after {REDIRECT_ROUNDS} rounds"
                    )
            groups: dict[Address, list[int]] = {}
            unserved = []
            for i in todo:
                address = asks.get(i) or self.owner(command_slot(commands[i]))
                if address is None:
                    unserved.append(i)
                else:
                    groups.setdefault(address, []).append(i)
            results = await asyncio.gather(
                *(self._send(address, commands, indexes, asks) for address, indexes in groups.items()),
                return_exceptions=True,
            )
            todo, wait = unserved, bool(unserved)
            if unserved:
                failure = f"no node serves slot {command_slot(commands[unserved[0]])}"
            answered: list[int] = []
            for (address, indexes), result in zip(groups.items(), results, strict=True):
                if isinstance(result, resp.RedisUnavailable):
                    failure, wait = str(result), True
                    self._suspects.add(address)
                    todo += indexes
                elif isinstance(result, BaseException):
                    raise result
                else:
                    for i, reply in zip(indexes, result, strict=True):
                        replies[i] = reply
                    answered += indexes
            again, pause_first, refused = self._classify(replies, answered, asks)
            todo += again
            wait = wait or pause_first
            failure = refused or failure
        return replies

    def _classify(
        self, replies: list[Any], indexes: list[int], asks: dict[int, Address]
    ) -> tuple[list[int], bool, str]:
        """Of `indexes`, those whose reply says to send them again; whether to pause first (TRYAGAIN,
        CLUSTERDOWN), and why. Notes ASK targets (in `asks`) and MOVED owners (in the map)."""
        again: list[int] = []
        wait = False
        why = ""
        for i in indexes:
            reply = replies[i]
            asks.pop(i, None)
            if type(reply) is not resp.ReplyError or not str(reply).startswith(_RETRIED):
                continue
            again.append(i)
            self._count(reply)
            redirect = parse_redirect(reply)
            if redirect is None:  # TRYAGAIN, CLUSTERDOWN: the same node(s), a moment later
                wait, why = True, str(reply)
                continue
            node = redirect.node
            if not node[0]:  # the host of the node that answered: the one our map sent it to
                node = ((self.owner(redirect.slot) or self._seed)[0], node[1])
            if redirect.kind == "ASK":
                asks[i] = node
            else:
                self._moved(redirect.slot, node)
        return again, wait, why

    async def _send(
        self, address: Address, commands: Sequence[resp.Command], indexes: list[int], asks: dict[int, Address]
    ) -> list[Any]:
        """The replies of `commands[indexes]` from one node; an ASK target gets ASKING before each."""
        batch: list[resp.Command] = []
        for i in indexes:
            if i in asks:
                batch.append(("ASKING",))
            batch.append(commands[i])
        replies = await self.node(address).execute(batch)
        if len(batch) == len(indexes):
            return replies
        out, position = [], 0
        for i in indexes:
            position += i in asks  # skip ASKING's OK
            out.append(replies[position])
            position += 1
        return out

    def _count(self, reply: resp.ReplyError) -> None:
        kind = str(reply).partition(" ")[0]
        self.redirections[kind] += 1
        metrics.redis_cluster_redirections.labels(kind).inc()

    # --- writes sent without waiting -----------------------------------------------------------

    async def send_nowait(self, commands: Sequence[resp.Command]) -> None:
        """Send `commands` without waiting for their replies. They go out now, on the connection this
        replica's next read of the same keys uses; a redirected or lost one is sent again in the
        background, and a refused one is logged."""
        if self._owners is None:
            await self.reload()
        address = self._single_node(commands)
        if address is None:
            self._in_background(self._write(commands, list(range(len(commands)))))
            return
        try:
            future = await self.node(address).submit(commands)
        except resp.RedisUnavailable:
            self._in_background(self._write(commands, list(range(len(commands)))))
            return
        future.add_done_callback(functools.partial(self._written, commands))

    def _written(self, commands: Sequence[resp.Command], future: asyncio.Future[list[Any]]) -> None:
        if future.cancelled() or self._closed:  # closing fails what is pending: nothing to send again
            return
        if future.exception() is not None:
            self._in_background(self._write(commands, list(range(len(commands)))))
            return
        again = []
        for i, reply in enumerate(future.result()):
            if type(reply) is resp.ReplyError:
                if str(reply).startswith(_RETRIED):
                    self._count(reply)
                    again.append(i)
                else:
                    log.warning("Redis refused a background write: %s", reply)
        if again:
            self._in_background(self._write(commands, again))

    async def _write(self, commands: Sequence[resp.Command], indexes: list[int]) -> None:
        batch = [commands[i] for i in indexes]
        try:
            replies = await self.execute(batch)
        except resp.RedisUnavailable as error:
            log.warning("a background write was dropped: Redis Cluster did not take it: %s", error)
            return
        for reply in replies:
            if type(reply) is resp.ReplyError:
                log.warning("Redis refused a background write: %s", reply)

    def _in_background(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- the slot map --------------------------------------------------------------------------

    async def reload(self) -> None:
        """Load the slot map from the first node that answers (one load at a time: callers that come
        meanwhile share it); RedisUnavailable when none does."""
        if self._loading is None or self._loading.done():
            self._loading = asyncio.ensure_future(self._load())
        await asyncio.shield(self._loading)

    def _moved(self, slot: int, node: Address) -> None:
        if self._owners is not None:
            self._owners[slot] = node
        if time.monotonic() - self._loaded_at >= RELOAD_SECONDS and (
            self._loading is None or self._loading.done()
        ):
            self._loading = asyncio.ensure_future(self._load())
            self._loading.add_done_callback(_ignore_failure)  # a call that needs the map will reload it

    async def _load(self) -> None:
        self._loaded_at = time.monotonic()
        candidates = [*self._known, self._seed] if self._seed not in self._known else list(self._known)
        candidates.sort(key=lambda address: address in self._suspects)  # stable: primaries first
        failures = []
        for address in candidates:
            try:
                (reply,) = await self.node(address).execute([("CLUSTER", "SLOTS")])
            except resp.RedisUnavailable as error:
                self._suspects.add(address)
                failures.append(str(error))
                continue
            self._suspects.discard(address)
            if isinstance(reply, resp.ReplyError) or not reply:
                failures.append(f"{address[0]}:{address[1]} answered CLUSTER SLOTS with {reply!r}")
                continue
            self._owners, self._known = build_slot_map(reply, address[0])
            self.map_loads += 1
            metrics.redis_cluster_map_loads.inc()
            self._loaded_at = time.monotonic()
            return
        raise resp.RedisUnavailable(
            f"no node of the Redis Cluster gave its slot map (asked {len(candidates)}): {failures[-1]}"
        )

    async def close(self) -> None:
        self._closed = True
        for task in list(self._background):
            task.cancel()
        if self._loading is not None:
            self._loading.cancel()
            self._background.add(self._loading)
        await asyncio.gather(*self._background, return_exceptions=True)
        for connection in list(self._nodes.values()):
            await connection.close()
        self._nodes.clear()


def _ignore_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: the next call that needs the map reloads it and says why
