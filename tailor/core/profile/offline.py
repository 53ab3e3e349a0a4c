"""The profile store without Redis: what the workers would hold and the content API read, in memory.

`tailor simulate` builds the profile a user's events would produce, offline, in a CI job with no
Redis. The counting is the workers' own code (tailor.core.profile.state); what this module adds is
what Redis adds around it: the dedup marks (an event id counts once; old marks are dropped on a
pruning write at most once per `Plan.marks_prune_every`), the key's expiry, and the read through the
stored fields, so that the same writes at the same `now` read back as the same `Profile`.
tests/integration/test_profile_offline.py holds the two to that on a real Redis; change both
together.

One difference is deliberate: Redis expires keys by its own clock, this model by the `now` it is
given, which is what a replay in real time would see.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tailor.core.events import occurrence
from tailor.core.profile import state as profile_state
from tailor.core.profile.model import Profile
from tailor.core.rules.ruleset import StackConfig

_NEVER = math.inf


@dataclass
class _Stored:
    """One user's profile hash, as Redis would hold it: the state, its dedup marks, its TTL."""

    state: profile_state.ProfileState = field(default_factory=profile_state.ProfileState)
    seen: dict[str, float] = field(default_factory=dict)  # event id -> `now` it was counted at
    marks_pruned_at: float = 0.0  # when old marks were last dropped (the ' pruned' field)
    expires_at: float = _NEVER


class OfflineProfileStore:
    """Every user's profile state for one stack's feature settings, kept in memory."""

    def __init__(self, config: StackConfig, *, max_fields: int = profile_state.MAX_FIELDS_PER_BUCKET) -> None:
        self.features = config.features
        self.plan = profile_state.Plan.of(config.features, max_fields=max_fields)
        self._users: dict[str, _Stored] = {}

    def _live(self, user: str, now: float) -> _Stored:
        """The user's keys at `now`, with what has expired by then gone (Redis key TTLs)."""
        stored = self._users.get(user)
        if stored is None or now >= stored.expires_at:
            stored = self._users[user] = _Stored()
        return stored

    def write(self, occurrences: Sequence[occurrence.Occurrence], now: float) -> tuple[int, int]:
        """Count `occurrences` as one worker write at `now` does; (counted, duplicates)."""
        by_user: dict[str, list[occurrence.Occurrence]] = {}
        for item in occurrences:
            by_user.setdefault(item.user, []).append(item)
        counted = duplicates = 0
        for user, items in by_user.items():
            c, d = self._write_user(self._live(user, now), items, now)
            counted, duplicates = counted + c, duplicates + d
        return counted, duplicates

    def _write_user(
        self, stored: _Stored, events: Sequence[occurrence.Occurrence], now: float
    ) -> tuple[int, int]:
        fresh = []
        expired = 0
        oldest = now - self.plan.dedup_ttl
        for event in events:
            if event.at <= oldest:
                expired += 1  # older than the dedup TTL: not counted at all (as the workers)
            elif event.id not in stored.seen:
                stored.seen[event.id] = now
                fresh.append(event)
        duplicates = len(events) - len(fresh) - expired
        if not fresh:
            return 0, duplicates
        # As the workers' guard: the TTL is renewed when a write prunes, and a new profile gets one.
        if profile_state.apply(self.plan, stored.state, fresh, now):
            if now - self.plan.marks_prune_every >= stored.marks_pruned_at:
                stored.seen = {event_id: at for event_id, at in stored.seen.items() if at >= oldest}
                stored.marks_pruned_at = now
            stored.expires_at = now + self.plan.ttl
        elif stored.expires_at == _NEVER:
            stored.expires_at = now + self.plan.ttl
        return len(fresh), duplicates

    def read(self, user: str, session: str | None, now: float) -> Profile:
        """The profile the content API would read at `now` (its HMGET of the stored fields)."""
        stored = self._users.get(user)
        if stored is None or now >= stored.expires_at:
            return profile_state.read_profile(self.plan, None, user, session, now)
        return profile_state.read_profile(self.plan, profile_state.fields(stored.state), user, session, now)


def replay(config: StackConfig, occurrences: Iterable[occurrence.Occurrence]) -> OfflineProfileStore:
    """A store fed `occurrences` as workers would in real time: in event-time order, each written
    the moment it happened."""
    store = OfflineProfileStore(config)
    for item in sorted(occurrences, key=lambda o: o.at):
        store.write([item], item.at)
    return store
