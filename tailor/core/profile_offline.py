"""The profile store without Redis: what profile_store.lua would hold and read, computed in Python.

`tailor simulate` builds the profile a user's events would produce, offline, in a CI job with no
Redis. The workers' aggregation lives in Redis functions (profile_store.lua); this module is its
twin, step for step — dedup by event id, buckets per size that are written only while some window
can still read them, a per-bucket cap on distinct counters, recent values newest first by event
time, session stats, pruning, and key expiry — so that the same writes at the same `now` read back
as the same `Profile`. tests/integration/test_profile_offline.py holds the two to that on a real
Redis; change both together.

One difference is deliberate: Redis expires keys by its own clock, this model by the `now` it is
given, which is what a replay in real time would see.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import orjson

from tailor.core import profile, profile_store
from tailor.core.profile import Profile
from tailor.core.ruleset import StackConfig

_NEVER = math.inf
PRUNE_AT_MOST_EVERY = 60  # seconds, as profile_store.lua


@dataclass
class _UserState:
    """The user's profile hash and dedup set, as plain Python values (profile_store.lua's layout)."""

    buckets: dict[tuple[int, float], dict[str, int]] = field(default_factory=dict)  # (size, start)
    recent: dict[str, list[tuple[str, float]]] = field(default_factory=dict)  # newest first
    sessions: dict[str, list[float]] = field(default_factory=dict)  # [page views, events, start, last]
    prune_at: float = 0.0
    expires_at: float = _NEVER
    seen: dict[str, float] = field(default_factory=dict)  # event id -> `now` it was counted at
    seen_expires_at: float = _NEVER


class OfflineProfileStore:
    """Every user's profile state for one stack's feature settings, kept in memory."""

    def __init__(self, config: StackConfig, *, max_fields: int = profile_store.MAX_FIELDS_PER_BUCKET) -> None:
        features = config.features
        self.features = features
        self.max_fields = max_fields
        # The same bucket sizes and lifetimes the workers pass to the Lua (ProfileWriter).
        plan = profile_store._bucket_plan(features)
        self.sizes = [size for size, _ in plan]
        self.keeps = dict(plan)
        # Pruning lists the hash's fields, so the Lua does it once per smallest bucket, at most once a minute.
        self.prune_every = max(min(self.sizes), PRUNE_AT_MOST_EVERY) if self.sizes else _NEVER
        self.ttl = max([keep for _, keep in plan] + [features.session_timeout_seconds])
        self._users: dict[str, _UserState] = {}

    def _live(self, user: str, now: float) -> _UserState:
        """The user's state at `now`, with what has expired by then gone (Redis key TTLs)."""
        state = self._users.setdefault(user, _UserState())
        if now >= state.expires_at:
            state.buckets, state.recent, state.sessions = {}, {}, {}
            state.prune_at, state.expires_at = 0.0, _NEVER
        if now >= state.seen_expires_at:
            state.seen, state.seen_expires_at = {}, _NEVER
        return state

    def write(self, occurrences: Sequence[profile_store.Occurrence], now: float) -> tuple[int, int]:
        """Count `occurrences` as one worker write at `now` does; (counted, duplicates)."""
        by_user: dict[str, list[profile_store.Occurrence]] = {}
        for item in occurrences:
            by_user.setdefault(item.user, []).append(item)
        counted = duplicates = 0
        for user, items in by_user.items():
            c, d = self._write_user(self._live(user, now), items, now)
            counted, duplicates = counted + c, duplicates + d
        return counted, duplicates

    def _write_user(
        self, state: _UserState, events: Sequence[profile_store.Occurrence], now: float
    ) -> tuple[int, int]:
        fresh = []
        expired = 0
        oldest = now - self.features.dedup_ttl_seconds
        for event in events:
            if event.at <= oldest:
                expired += 1  # older than the dedup TTL: not counted at all (profile_store.lua)
            elif event.id not in state.seen:
                state.seen[event.id] = now
                fresh.append(event)
        duplicates = len(events) - len(fresh) - expired
        if not fresh:
            return 0, duplicates

        # The buckets these events fall in, those not expired already, and how many counters each has.
        buckets: dict[tuple[int, float], dict[str, int]] = {}
        for event in fresh:
            for size in self.sizes:
                key = (size, math.floor(event.at / size) * size)
                if key not in buckets and key[1] + self.keeps[size] > now:
                    buckets[key] = state.buckets.setdefault(key, {})
        counts = {key: len(bucket) for key, bucket in buckets.items()}

        for event in fresh:
            for size in self.sizes:
                key = (size, math.floor(event.at / size) * size)
                bucket = buckets.get(key)
                if bucket is None:
                    continue
                if event.counter not in bucket:
                    counts[key] += 1
                bucket[event.counter] = bucket.get(event.counter, 0) + 1
                for dimension, value in event.dimensions:
                    name = profile.counter(event.counter, dimension, value)
                    if name in bucket:
                        bucket[name] += 1
                    elif counts[key] < self.max_fields:
                        bucket[name] = 1
                        counts[key] += 1
            for dimension, value in event.dimensions:
                self._remember(state.recent.setdefault(dimension, []), value, event.at)
            if event.session:
                stats = state.sessions.setdefault(event.session, [0, 0, event.at, event.at])
                if event.counter == "views":
                    stats[0] += 1
                stats[1] += 1
                stats[2] = min(stats[2], event.at)
                stats[3] = max(stats[3], event.at)

        if now >= state.prune_at:
            state.prune_at = math.floor(now + self.prune_every)
            timeout = self.features.session_timeout_seconds
            state.sessions = {k: s for k, s in state.sessions.items() if s[3] + timeout > now}
            state.buckets = {
                (size, start): bucket
                for (size, start), bucket in state.buckets.items()
                if size in self.keeps and start + self.keeps[size] > now
            }
            oldest = now - self.features.dedup_ttl_seconds
            state.seen = {event_id: at for event_id, at in state.seen.items() if at >= oldest}
        state.expires_at = now + self.ttl
        state.seen_expires_at = now + self.features.dedup_ttl_seconds
        return len(fresh), duplicates

    def _remember(self, values: list[tuple[str, float]], value: str, at: float) -> None:
        """Keep `value` among the latest distinct values, newest first by event time."""
        newer = False
        for k in range(len(values) - 1, -1, -1):
            if values[k][0] == value:
                if values[k][1] >= at:
                    newer = True
                else:
                    del values[k]
        if newer:
            return
        position = next((k for k, (_, seen_at) in enumerate(values) if seen_at < at), len(values))
        values.insert(position, (value, at))
        if len(values) > self.features.recent_limit:
            values.pop()

    def read(self, user: str, session: str | None, now: float) -> Profile:
        """The profile the content API would read at `now` (one FCALL_RO of profile_store.lua)."""
        state = self._users.get(user)
        if state is None or now >= state.expires_at:
            state = _UserState()
        counts: dict[str, dict[str, int]] = {}
        for window in self.features.windows:
            size = window.bucket_seconds
            newest = math.floor(now / size) * size
            oldest = newest - (math.ceil(window.seconds / size) - 1) * size
            sums: dict[str, int] = {}
            for (bucket_size, start), bucket in state.buckets.items():
                if bucket_size == size and oldest <= start <= newest:
                    for name, n in bucket.items():
                        sums[name] = sums.get(name, 0) + n
            counts[window.name] = sums
        stats = state.sessions.get(session) if session else None
        if stats is not None and not stats[3] + self.features.session_timeout_seconds > now:
            stats = None
        document = {
            "c": counts,
            "r": {dimension: [value for value, _ in values] for dimension, values in state.recent.items()},
            # The Lua answers in JSON, whose numbers Redis writes with 14 significant digits.
            "s": [float(f"{number:.14g}") for number in stats] if stats is not None else False,
        }
        names = [window.name for window in self.features.windows]
        return profile_store.parse_read(orjson.dumps(document), user, session, names)


def replay(config: StackConfig, occurrences: Iterable[profile_store.Occurrence]) -> OfflineProfileStore:
    """A store fed `occurrences` as workers would in real time: in event-time order, each written
    the moment it happened."""
    store = OfflineProfileStore(config)
    for item in sorted(occurrences, key=lambda o: o.at):
        store.write([item], item.at)
    return store
