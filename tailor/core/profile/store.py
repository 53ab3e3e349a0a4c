"""The Redis side of per-user profile state: workers write it, the content API reads it.

Keys of one user share the prefix `tailor:<ns>/<name>:{<user>}:` — the stack is plain text and the
user is the hash tag, so a user's keys live in one Redis Cluster slot and one function call can
update them atomically. The stack-wide keys of `tailor.core.rules.versions` use the stack as their hash tag
instead; the two never meet in one call.

    …:{u}:profile  hash: three JSON fields, split by how often they change (w, c, b:
                   tailor.core.profile.state); ' version' -> the profile's version; the dedup
                   record, '#<event id>' -> when it was counted (at most `dedup_marks_per_user`);
                   ' pruned' -> when the last pass of dropping old marks ended, ' cursor' -> where
                   the pass under way goes on. One key per user: the guard reads and writes it in
                   two calls (and an HLEN when it checks the marks' cap).

Write side (workers): Redis does not scale out per stack the way workers do, so the counting happens in
the worker. Kafka gives each user to one worker, which keeps its users' state in memory
(`ProfileWriter`, an LRU cache), counts a batch's events into it (tailor.core.profile.counting:
compiled, or the Python reference in tailor.core.profile.state) and writes each changed profile
back through the guard function in store.lua: per user, one
atomic step that checks the version (a worker that lost the partition cannot clobber the new owner's
writes) and the dedup marks (an event is never counted twice), then sets the changed fields, the
version and the events' marks. A refused user is reloaded and counted again; a worker killed at
any point leaves each event either counted and marked, or neither.

One user id cannot take Redis down (docs/operating.md, "Per-user caps"): the writer counts at most
`events_per_user_per_minute` of a user's events per minute of event time, and the guard refuses a
write that would take a user past `dedup_marks_per_user` marks; events beyond either are
acknowledged and counted as over the cap (`Written.over_cap`), never written. Old marks are dropped
a bounded step per call, never by reading a whole hash.

Read side (content API): `ProfileReader.queue_read` adds one HMGET to the caller's pipeline (which may
carry its own commands too) and `parse_read` turns the reply into a `tailor.core.profile.Profile`,
correcting the stored window sums by the few buckets that moved since the write.

Time is always passed in (`now`, event times): tests move it, and replays decide the same way.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, NamedTuple, overload

import redis
import redis.asyncio as aioredis
import redis.cluster as rediscluster

from tailor.core.events.occurrence import Occurrence
from tailor.core.profile import counting as profile_counting
from tailor.core.profile import state as profile_state
from tailor.core.profile import traits as profile_traits
from tailor.core.profile import wires
from tailor.core.profile.model import Profile
from tailor.core.rules.ruleset import StackConfig

log = logging.getLogger(__name__)

MAX_FIELDS_PER_BUCKET: Final = profile_state.MAX_FIELDS_PER_BUCKET

_SOURCE = resources.files("tailor.core.profile").joinpath("store.lua").read_text()
# The function is named after its code, so workers of different versions can share one Redis during
# a rolling upgrade without replacing each other's function.
CODE_VERSION: Final = hashlib.sha256(_SOURCE.encode()).hexdigest()[:10]
LIBRARY: Final = f"tailor_profile_{CODE_VERSION}"
WRITE_FUNCTION: Final = f"tailor_profile_write_{CODE_VERSION}"
LIBRARY_CODE: Final = _SOURCE.replace("__LIBRARY__", LIBRARY).replace("__WRITE__", WRITE_FUNCTION)

# A user refused this many times in one write (other writers keep changing it) fails the write; the
# worker then retries the batch, which is always safe.
MAX_ATTEMPTS: Final = 8

# Per-user caps (docs/operating.md, "Per-user caps"): far above what a shopper's browser sends (a page
# view every few seconds all day is ~10,000 a day), far below what stalls Redis.
EVENTS_PER_USER_PER_MINUTE: Final = 300
DEDUP_MARKS_PER_USER: Final = 10_000
# Hash entries one pruning step visits (HSCAN COUNT): a bounded cost per call whatever the hash holds.
MARKS_PRUNE_STEP: Final = 256
# The guard checks a user's marks against the cap (an HLEN) on its first write after a load and then
# once per this many marks written: the cap holds within that many, and most writes skip the call.
MARKS_CHECK_EVERY: Final = 32


def user_prefix(stack: str, user: str) -> str:
    """`stack` is `namespace/name`. Only the user is in braces: it is the hash tag."""
    return f"tailor:{stack}:{{{user}}}:"


def profile_key(stack: str, user: str) -> str:
    """The user's profile hash: windows, recent values and sessions."""
    return f"{user_prefix(stack, user)}profile"


# The profile hash's other fields, beside its JSON fields (profile_state.FIELDS): the profile's
# version, and a dedup mark per event counted ('#' + its id -> when it was counted).
VERSION_FIELD: Final = " version"
MARK_PREFIX: Final = "#"


def mark(event_id: str) -> str:
    """The profile field that marks the event counted: never one of the JSON fields (single
    letters) nor a reserved one (a leading space, which ids never have)."""
    return MARK_PREFIX + event_id


@overload
def install(client: aioredis.Redis) -> Awaitable[Any]: ...
@overload
def install(client: redis.Redis) -> Any: ...
def install(client: redis.Redis | aioredis.Redis) -> Any:
    """Load the guard function (idempotent). Call at start, and again when a call says it is missing.
    With an asyncio client, await what it returns (redis-py's commands serve both kinds of client)."""
    return client.function_load(LIBRARY_CODE, replace=True)


async def installed(client: aioredis.Redis) -> bool:
    """Whether Redis holds this version's functions (a full Redis refuses to load them again)."""
    return bool(await client.function_list(library=LIBRARY))


def is_missing_function(error: BaseException) -> bool:
    """True when Redis lost the function (a restart without persistence, FUNCTION FLUSH): install again."""
    return isinstance(error, redis.ResponseError) and "function not found" in str(error).lower()


class Written(NamedTuple):
    """What a write did: events counted, already counted (duplicates), too old to count safely
    (older than the dedup TTL, so a duplicate could no longer be recognised), and over a per-user cap
    (acknowledged, not written)."""

    counted: int
    duplicates: int
    expired: int
    over_cap: int = 0


class ProfileConflict(redis.RedisError):
    """Users kept changing under the write (several writers at once); retrying later is safe."""


@dataclass(slots=True)
class _Cached:
    """A cached user: the counting's state, the version Redis holds, its key, and the partition (and
    its generation) it came from."""

    state: Any
    version: str  # the version the store last saw or wrote ("" for none)
    key: str  # the profile's
    partition: int | None
    generation: int
    unchecked: int = MARKS_CHECK_EVERY  # marks written since the cap was last checked (loaded: due)


class ProfileWriter:
    """Counts batches of users' events into their profiles: an LRU cache of the users' state, the
    counting (tailor.core.profile.counting: compiled, or the Python reference), and one guarded write
    per user (a few dozen users per function call).

    One writer per worker and stack settings; `write` is not re-entrant (one batch at a time: asyncio
    callers run it in a thread), `forget_partitions` may be called from any thread.
    """

    def __init__(
        self, config: StackConfig, *, users_per_call: int = 32, cache_users: int = 20_000,
        events_per_user_per_minute: int = EVENTS_PER_USER_PER_MINUTE,
        dedup_marks_per_user: int = DEDUP_MARKS_PER_USER, wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
    ) -> None:  # fmt: skip
        # Several users per call spread the call's overhead; a call blocks Redis while it runs, so they
        # stay a few dozen. On a Redis Cluster each call holds users of one node (store.lua: KEYS).
        self.stack = config.key
        self.plan = profile_state.Plan.of(config.features)
        self.counting = profile_counting.counting(self.plan)
        self.users_per_call = users_per_call
        self.cache_users = cache_users
        self.dedup_marks_per_user = dedup_marks_per_user
        # A batch is written once this many replicas of each primary hold it (WAIT; 0: once the
        # primaries do). tailor.core.profile.wires says what it protects against.
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.rate = UserRate(events_per_user_per_minute)
        self._cache: collections.OrderedDict[str, _Cached] = collections.OrderedDict()
        self._generations: dict[int, int] = {}
        # Versions: random 16-digit integers, unique across writers and writes, so a profile changed
        # and changed back is never mistaken for unchanged.
        self._random = random.Random(secrets.randbits(128))
        self._sweep = False
        self.conflicts = 0  # users refused because another writer changed them (rebalances)
        self.loads = 0  # users read from Redis (not in the cache)
        self.resets = 0  # users whose stored profile could not be read, started afresh
        # Users a Redis Cluster node refused as not its own (their slot moved, or is migrating) and
        # written again in a call of their own.
        self.rerouted = 0
        self._refresh_slots = False  # a write to a Redis Cluster failed: read its slot map first
        self._nodes: dict[str, str] = {}  # a cluster's users' keys -> their primaries' names

    def forget_partitions(self, partitions: Sequence[int]) -> None:
        """The users of these partitions are another worker's now (revoked or lost): never trust their
        cached state again (at once), and drop it from the cache (at the next write). Safe from the
        consumer's rebalance callback while a write runs."""
        for partition in partitions:
            self._generations[partition] = self._generations.get(partition, 0) + 1
        self._sweep = True

    def _drop_forgotten(self) -> None:
        self._sweep = False
        generations = self._generations
        stale = [
            user for user, entry in self._cache.items()
            if entry.partition is not None and entry.generation != generations.get(entry.partition, 0)
        ]  # fmt: skip
        for user in stale:
            del self._cache[user]

    @property
    def cached_users(self) -> int:
        return len(self._cache)

    def write(
        self, client: redis.Redis, batch: Mapping[str, Sequence[Occurrence]], now: float,
        partitions: Mapping[str, int] | None = None,
    ) -> Written:  # fmt: skip
        """Count `batch` (user -> occurrences) at `now`. `partitions` (user -> Kafka partition) lets
        `forget_partitions` invalidate cached users. Raises redis errors (nothing is then trusted from
        the cache for these users: retrying the batch is safe).

        Commands stream out on one connection as they are ready (the users' loads first, then each
        few dozen users' guarded writes) and the replies are read last, so Redis executes one chunk
        while the worker counts the next. On a Redis Cluster (`client` is a RedisCluster) the same
        goes on one connection per primary, each guarded call gathering users of one primary
        (tailor.core.profile.wires)."""
        wire: wires.Wire | wires.ClusterWire
        if isinstance(client, rediscluster.RedisCluster):
            if self._refresh_slots:
                wires.ClusterWire.refresh(client, self._nodes)
                self._refresh_slots = False
            if len(self._nodes) > 4 * self.cache_users:
                self._nodes.clear()
            wire = wires.ClusterWire(client, self._nodes)
        else:
            pool = client.connection_pool
            wire = wires.Wire(pool.get_connection())
        work = _Batch(self, batch, now, partitions or {}, wire)
        healthy = False
        try:
            work.run()
            if self.wait_replicas:
                wire.confirm(self.wait_replicas, self.wait_timeout_ms)
            healthy = True
            return work.written
        except BaseException:
            work.abandon()
            self._refresh_slots = True
            raise
        finally:
            wire.close(healthy)
            if isinstance(wire, wires.Wire):
                client.connection_pool.release(wire.connection)


# A user's write in a guarded call: user, entry, new version, counted, duplicates, expired, over the
# per-minute cap, the minute its events count in, and the marks unchecked after it.
_Write = tuple[str, _Cached, str, int, int, int, int, int, int]

# The route of the calls that hold one user each: users a Redis Cluster node refused as not its own,
# sent again where their own key routes them (MOVED, ASK).
_ALONE: Final = "\0alone"


# The guard's answer for each user of a call that was not run (wires.ASKED): "not here" (store.lua).
_NOT_HERE: Final = (3,)


class _Call:
    """A guarded call being gathered for one route (a node, or `_ALONE`): the users' writes in it, and
    the key it declares (its first user's: what routes it on a Redis Cluster)."""

    __slots__ = ("call", "key", "writes")

    def __init__(self, call: profile_counting.GuardedCall[Any]) -> None:
        self.call = call
        self.key = ""
        self.writes: list[_Write] = []


class _Batch:
    """One batch's write on one connection (one per primary on a Redis Cluster). Users not cached are
    loaded (their version and the batch's ids checked against their marks, then their document) while
    the cached ones are counted and written; users refused by the guard go round again."""

    def __init__(
        self, writer: ProfileWriter, batch: Mapping[str, Sequence[Occurrence]], now: float,
        partitions: Mapping[str, int], wire: wires.Wire | wires.ClusterWire,
    ) -> None:  # fmt: skip
        self.writer = writer
        self.now = now
        self.partitions = partitions
        self.wire = wire
        self.todo = batch
        self.counted = self.duplicates = self.expired = self.over_cap = 0
        self._in_flight: list[str] = []
        self._alone: set[str] = set()  # users sent in calls of their own (`_ALONE`)
        self._head: list[str] = []
        self._open: dict[str, _Call] = {}  # route -> the call being gathered for it
        self._sent: list[list[_Write]] = []  # the calls sent this round, in order: their users' writes

    @property
    def written(self) -> Written:
        return Written(self.counted, self.duplicates, self.expired, self.over_cap)

    def abandon(self) -> None:
        """A step failed midway: what Redis holds for these users is unknown, so forget them."""
        for user in self._in_flight:
            self.writer._cache.pop(user, None)

    def _send(self, packed: bytes, key: str, follow_ask: bool = True) -> None:
        """Queue a command touching `key` (the cluster's route); `follow_ask`: wires.ClusterWire.send."""
        self.wire.send(packed, key, follow_ask)

    def _read(self, count: int) -> list[Any]:
        self.wire.flush()
        read = self.wire.read
        return [read() for _ in range(count)]

    def run(self) -> None:
        writer, plan, stack, now = self.writer, self.writer.plan, self.writer.stack, self.now
        if writer._sweep:
            writer._drop_forgotten()
        cache, generations, partitions = writer._cache, writer._generations, self.partitions
        oldest = now - plan.dedup_ttl
        self._head = [
            repr(now),
            str(plan.ttl),
            repr(oldest),
            repr(now - plan.marks_prune_every),
            str(writer.dedup_marks_per_user),
            str(MARKS_PRUNE_STEP),
        ]
        writer.rate.advance(now)
        for _ in range(MAX_ATTEMPTS):
            todo = self.todo
            if not todo:
                return
            self._in_flight = list(todo)
            hits: list[tuple[str, _Cached]] = []
            misses: list[tuple[str, _Cached]] = []
            for user in todo:
                partition = partitions.get(user)
                generation = generations.get(partition, 0) if partition is not None else 0
                entry = cache.get(user)
                if entry is not None and entry.partition == partition and entry.generation == generation:
                    cache.move_to_end(user)
                    hits.append((user, entry))
                else:
                    misses.append(
                        (user, _Cached(_UNLOADED, "", profile_key(stack, user), partition, generation))
                    )
            # The version, the fields and the batch's marks in one read: what one write left.
            read = (VERSION_FIELD, *profile_state.FIELDS)
            for user, entry in misses:
                self._send(
                    profile_counting.pack_command(
                        ("HMGET", entry.key, *read, *[mark(o.id) for o in todo[user]])
                    ),
                    entry.key,
                )

            self._sent = []
            for user, entry in hits:
                self._count(user, todo[user], entry, None, False)
            if misses:
                replies = self._read(len(misses))
                writer.loads += len(misses)
                fields = len(profile_state.FIELDS)
                for (user, entry), (version, *rest) in zip(misses, replies, strict=True):
                    entry.state = _decoded(writer, user, rest[:fields])
                    marks = rest[fields:]
                    renew = version is None  # a new profile (or an expired one): give it its TTL
                    if not renew:
                        entry.version = version.decode()
                    known = {o.id for o, found in zip(todo[user], marks, strict=True) if found is not None}
                    self._count(user, todo[user], entry, known, renew)
            for gathering in self._open.values():
                if gathering.writes:
                    self._send_call(gathering)
            if not self._sent:
                self.todo = {}
                return

            replies = self._read(len(self._sent))
            refused: dict[str, Sequence[Occurrence]] = {}
            for (
                user,
                entry,
                version,
                fresh_count,
                duplicates,
                expired,
                over,
                minute,
                unchecked,
            ), outcome in (pair for writes, reply in zip(self._sent, replies, strict=True)
                           for pair in zip(writes, _NOT_HERE * len(writes) if reply is wires.ASKED else reply,
                                           strict=True)):  # fmt: skip
                if outcome == 1:
                    entry.version = version
                    entry.unchecked = unchecked
                    self.counted += fresh_count
                    self.duplicates += duplicates
                    self.expired += expired
                    self.over_cap += over
                    writer.rate.commit(user, minute, fresh_count)
                    _keep(writer, user, entry)
                elif outcome == 2:
                    # Over the user's marks cap: nothing written; its state in the cache has these
                    # events counted in, so it is dropped (reloaded when the user comes back).
                    cache.pop(user, None)
                    self.over_cap += fresh_count + over
                    self.duplicates += duplicates
                    self.expired += expired
                elif outcome == 3:
                    # Not the node's (a Redis Cluster's slot moved or is migrating): nothing written;
                    # its cached state has these events counted in, so it is reloaded, and sent on
                    # its own, where Redis's MOVED or ASK for its key routes it.
                    cache.pop(user, None)
                    writer.rerouted += 1
                    self._alone.add(user)
                    refused[user] = todo[user]
                else:
                    # Changed by another writer (0), or some events counted already: what Redis holds
                    # is the truth; reload and count again.
                    cache.pop(user, None)
                    if outcome == 0:
                        writer.conflicts += 1
                    refused[user] = todo[user]
            self.todo = refused
        if self.todo:
            self.abandon()
            raise ProfileConflict(f"{len(self.todo)} users kept changing during the write; retry the batch")

    def _count(
        self, user: str, events: Sequence[Occurrence], entry: _Cached, known: set[str] | None, renew: bool
    ) -> None:
        """Count the user's new events into its state and queue its guarded write. `known`: the ids
        found marked when it was just loaded (None: cached, the guard checks them)."""
        writer, now = self.writer, self.now
        oldest = now - writer.plan.dedup_ttl
        if known is None and len(events) == 1 and events[0].at > oldest:
            fresh: Sequence[Occurrence] = events  # the common case: one new event
            duplicates = expired = 0
        else:
            fresh = []
            taken: set[str] = set(known or ())
            expired = 0
            for o in events:
                if o.at <= oldest:
                    expired += 1  # its first count's mark may be gone: never count it again
                elif o.id not in taken:
                    taken.add(o.id)
                    fresh.append(o)
            duplicates = len(events) - len(fresh) - expired
        fresh, over, minute = writer.rate.split(user, fresh)
        if not fresh:
            self.duplicates += duplicates
            self.expired += expired
            self.over_cap += over
            _keep(writer, user, entry)
            return
        state = entry.state
        counting = writer.counting
        try:
            prunes = counting.apply(state, fresh, now)
        except _UNREADABLE as error:
            if known is None:
                raise  # a state this writer built itself: a bug, not damaged data
            state = entry.state = _afresh(writer, user, error)  # read, but not countable
            prunes = counting.apply(state, fresh, now)
        version = str(writer._random.getrandbits(52) + 2**52)
        # A user just loaded had its ids checked with the version: if that still holds, so does the
        # check. A cached user's ids are checked by the guard (a resend of an event counted before the
        # user was cached).
        flags = "" if known is not None else "d"
        if prunes:
            flags += "p"
        if renew:
            flags += "x"
        unchecked = entry.unchecked + len(fresh)
        if unchecked >= MARKS_CHECK_EVERY:
            flags += "c"
            unchecked = 0
        alone = user in self._alone
        route = _ALONE if alone else self.wire.node(entry.key)
        gathering = self._open.get(route)
        if gathering is None:
            gathering = self._open[route] = _Call(
                writer.counting.guarded_call(WRITE_FUNCTION, self._head, MARK_PREFIX)
            )
        if not gathering.writes:
            gathering.key = entry.key
        gathering.call.add(state, entry.key, entry.version, version, flags, [o.id for o in fresh])
        write = (user, entry, version, len(fresh), duplicates, expired, over, minute, unchecked)
        gathering.writes.append(write)
        if alone or len(gathering.writes) >= writer.users_per_call:
            self._send_call(gathering)

    def _send_call(self, gathering: _Call) -> None:
        # A call of several users is not followed through ASK: ASKING would let the new owner serve
        # every key of the migrating slot, also those still at the old owner; its users go on their own.
        self._send(gathering.call.take(), gathering.key, follow_ask=len(gathering.writes) == 1)
        self._sent.append(gathering.writes)
        gathering.writes = []


_UNLOADED: Final = profile_state.ProfileState()  # a placeholder, never counted into


class UserRate:
    """The per-user cap on events per minute of event time, kept in the worker's memory: Kafka gives
    each user to one worker, so its counts are the user's (a rebalance or restart starts them afresh:
    at most one more minute's cap). A user's count is of its newest minute; its events of earlier
    minutes (late ones) count against that minute too, so a flood cannot spread over past minutes.
    Counts are taken on a write's success only (`commit`), so a write refused and retried counts its
    events once. Event time, not the worker's clock: a backlog after an outage is processed at full
    speed without capping its users."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._counts: dict[str, list[int]] = {}  # user -> [its newest minute, events counted in it]
        self._minute = 0

    def advance(self, now: float) -> None:
        """Forget users whose newest minute has passed (once a minute)."""
        minute = int(now // 60)
        if minute != self._minute:
            self._minute = minute
            self._counts = {user: slot for user, slot in self._counts.items() if slot[0] >= minute - 1}

    def split(self, user: str, events: Sequence[Occurrence]) -> tuple[Sequence[Occurrence], int, int]:
        """(the events within the cap, how many are over it, the minute they count in)."""
        slot = self._counts.get(user)
        if len(events) == 1:  # the common case
            minute = int(events[0].at // 60)
            if slot is None or minute > slot[0]:
                return events, 0, minute
            return (events, 0, slot[0]) if slot[1] < self.per_minute else ((), 1, slot[0])
        if not events:
            return events, 0, 0
        minute = int(max(o.at for o in events) // 60)
        used = 0
        if slot is not None and slot[0] >= minute:
            minute, used = slot[0], slot[1]
        room = max(0, self.per_minute - used)
        if room >= len(events):
            return events, 0, minute
        return events[:room], len(events) - room, minute

    def commit(self, user: str, minute: int, events: int) -> None:
        slot = self._counts.get(user)
        if slot is None or minute > slot[0]:
            self._counts[user] = [minute, events]
        else:
            slot[1] += events


# What decoding or counting a damaged stored profile raises (both implementations).
_UNREADABLE: Final = (ValueError, KeyError, TypeError, IndexError, AttributeError)


def _decoded(writer: ProfileWriter, user: str, raw: Any) -> Any:
    """The user's stored profile as state; afresh when it cannot be read (damaged by hand, or written
    by an incompatible version). Nobody can read it — the content API neither — so counting on from
    nothing restores the user instead of failing every batch of the partition; the version and the
    dedup marks still guard the write."""
    try:
        return writer.counting.decode(raw)
    except _UNREADABLE as error:
        return _afresh(writer, user, error)


def _afresh(writer: ProfileWriter, user: str, error: Exception) -> Any:
    writer.resets += 1
    log.error("the stored profile of %r in %s cannot be read (%s: %s); counting it afresh",
              user, writer.stack, type(error).__name__, error)  # fmt: skip
    return writer.counting.decode(None)


def _keep(writer: ProfileWriter, user: str, entry: _Cached) -> None:
    cache = writer._cache
    if cache.get(user) is not entry:
        cache[user] = entry
        while len(cache) > writer.cache_users:
            cache.popitem(last=False)


# -- reading --------------------------------------------------------------------------------------------


class ProfileReader:
    """Queues the one read command that fetches a user's profile, and parses its answer."""

    def __init__(self, config: StackConfig) -> None:
        self.stack = config.key
        self.plan = profile_state.Plan.of(config.features)
        self.window_names = tuple(window.name for window in config.features.windows)
        self.dimensions = config.features.dimensions
        self.traits = profile_traits.declared(config.features.traits)
        # Commands queue_read adds: the profile's HMGET, and the traits' HGETALL when the stack
        # declares traits (none read, and no cost, otherwise).
        self.commands = 2 if self.traits else 1

    def queue_read(self, pipe: Any, user: str, session: str | None, now: float) -> None:
        """Add the profile read to `pipe` (sync or asyncio pipeline, or any object with
        `execute_command`): one HMGET, one of the cheapest commands Redis has, and one HGETALL of the
        user's traits when the stack declares any (`self.commands` says how many; their replies go to
        parse_read in order)."""
        pipe.execute_command("HMGET", profile_key(self.stack, user), *profile_state.FIELDS)
        if self.traits:
            pipe.execute_command(*profile_traits.read_command(self.stack, user))

    def parse_reads(
        self, replies: Sequence[Any], user: str, session: str | None, now: float | None = None
    ) -> Profile:
        """The Profile from the replies of queue_read's `self.commands` commands."""
        profile = self.parse_read(replies[0], user, session, now)
        if not self.traits:
            return profile
        at = time.time() if now is None else now
        found = profile_traits.parse(replies[1], self.traits, at)
        return dataclasses.replace(profile, traits=found) if found else profile

    def parse_read(self, raw: Any, user: str, session: str | None, now: float | None = None) -> Profile:
        """The Profile from the read's reply (a list of three values, bytes or text, None where
        absent), as it stands at `now` (default: the current time; pass the `now` given to
        queue_read when there is one — tests and replays move time). A stored profile that cannot
        be read reads as empty (and is logged): the user is decided for as a newcomer, not failed,
        until the worker counts it afresh."""
        at = time.time() if now is None else now
        try:
            return profile_state.read_profile(self.plan, raw, user, session, at)
        except _UNREADABLE as error:
            log.warning("the stored profile of %r in %s cannot be read (%s: %s); reading it as empty",
                        user, self.stack, type(error).__name__, error)  # fmt: skip
            return profile_state.read_profile(self.plan, None, user, session, at)


def read(client: redis.Redis, config: StackConfig, user: str, session: str | None, now: float) -> Profile:
    """One profile, for callers that have nothing else to pipeline (tools, tests; asyncio callers run
    it in a thread). The content API queues the same read among its own commands (`ProfileReader`)."""
    reader = ProfileReader(config)
    pipe = client.pipeline(transaction=False)
    reader.queue_read(pipe, user, session, now)
    return reader.parse_reads(pipe.execute(), user, session, now)
