"""One user's profile state and the arithmetic on it, in Python: counting, window sums, reading.

The workers own their users (Kafka partitions give each user one worker), so they keep this state in
memory, count a batch's events into it here, and write back what changed (tailor.core.profile.store
does the Redis side). The content API reads it with one HMGET and turns it into a `Profile` with
`read_profile`. `tailor simulate`'s offline store (tailor.core.profile.offline) runs the very same
code without Redis.

The user's profile is a hash of three JSON fields, split by how often they change, because every byte
written also goes to Redis's append-only file:

    c   written on every write (a few hundred bytes):
        {"n": {"<size>": [newest start, {counter: n} | null]},  the newest bucket of each size
         "r": {dimension: [value, ...]},  recent values, newest first
         "t": {dimension: [at, ...]},     their event times
         "s": {session: [page views, events, started, last seen]},
         "p": when stale buckets and ended sessions are next pruned}
    w   written when a window moves on (about once per bucket of its size), for late events and for
        ones ahead of the writer's clock:
        {"<seconds>/<size>": [oldest, newest, top, {counter: n}]}
        per window, the sum of its buckets from `oldest` up to, not including, `newest` (bucket
        starts); `top`, the newest start of that size holding anything
    b   written when a bucket other than the newest changes (it ages, a late event, a prune):
        {"<size>:<start>": {counter: n}}

A window's count at the moment of the write is its stored sum plus its newest bucket: an event of the
moment changes only `c`. A reader at `now` corrects that by the few buckets that left the window since
(or entered it, when events were stamped ahead of the writer's clock), and needs `b` only then,
instead of summing up to a day of buckets in Python.

Counting rules: a window of `W` seconds sums the `ceil(W / bucket)` buckets ending with the current
one; a bucket is written only while some window can still read it (plus one bucket of slack for clock
skew); a bucket keeps at most `max_fields` counters (totals always count, a new dimension value only
while there is room); recent values per dimension are distinct, newest first by event time; stale
buckets and ended sessions are pruned at most once per smallest bucket and at most once a minute (the
store prunes old dedup marks and renews its keys' TTLs at the same moments).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import orjson

from tailor.core import constants
from tailor.core.profile.model import SEPARATOR, Profile, Session
from tailor.core.rules.ruleset import FeatureConfig

MAX_FIELDS_PER_BUCKET: Final = constants.MAX_FIELDS_PER_BUCKET
PRUNE_AT_MOST_EVERY: Final = 60  # seconds: a prune walks all of a user's buckets
CURRENT, SUMS, BUCKETS = "c", "w", "b"
FIELDS: Final = (SUMS, CURRENT, BUCKETS)  # the order reads ask for them in

Entry = list[Any]  # a window: [oldest, newest, top, {counter: n} of its buckets before the newest]
Bucket = dict[str, int]


class Counted(Protocol):
    """What is counted of one event (tailor.core.events.occurrence.Occurrence)."""

    @property
    def at(self) -> float: ...
    @property
    def counter(self) -> str: ...
    @property
    def session(self) -> str: ...
    @property
    def dimensions(self) -> tuple[tuple[str, str], ...]: ...


def bucket_plan(features: FeatureConfig) -> list[tuple[int, int]]:
    """(bucket size, seconds a bucket stays readable) per distinct bucket size.

    A bucket starting at `s` is summed while `now < s + n * size` (n buckets per window), so it must
    live that long; one more bucket of slack covers clock skew between hosts.
    """
    keep: dict[int, int] = {}
    for window in features.windows:
        size = window.bucket_seconds
        needed = math.ceil(window.seconds / size) * size + size
        keep[size] = max(keep.get(size, 0), needed)
    return sorted(keep.items())


@dataclass(frozen=True, slots=True)
class WindowPlan:
    name: str
    key: str  # "<seconds>/<size>": rulesets that name the window differently share its stored sum
    size: int
    count: int  # buckets summed

    def span(self, now: float) -> tuple[int, int]:
        """(oldest, newest) bucket start the window sums at `now`."""
        newest = int(now // self.size) * self.size
        return newest - (self.count - 1) * self.size, newest


@dataclass(frozen=True, slots=True)
class Spans:
    """Where every window stands at `now`: computed once per batch, not per user."""

    now: float
    windows: tuple[tuple[str, int, int, int], ...]  # (key, size, oldest, newest) per window
    levels: tuple[tuple[int, int, str, int], ...]  # (size, bucket lifetime, key prefix, newest start)
    newest: tuple[tuple[str, str, int], ...]  # ("<size>", key prefix, newest start) per size


@dataclass(frozen=True, slots=True)
class Plan:
    """What a stack's feature settings mean for the state: bucket sizes, lifetimes, windows."""

    sizes: tuple[tuple[int, int, str], ...]  # (size, seconds a bucket lives, its key prefix)
    keeps: Mapping[int, int]
    windows: tuple[WindowPlan, ...]
    recent_limit: int
    session_timeout: int
    dedup_ttl: int
    prune_every: float
    # The profile key's, renewed by pruning writes: it outlives its longest-lived bucket, session and
    # dedup mark (all in the one hash) after its last renewal.
    ttl: int
    marks_prune_every: float  # old dedup marks are dropped on a pruning write at most this often
    max_fields: int

    @classmethod
    def of(cls, features: FeatureConfig, *, max_fields: int = MAX_FIELDS_PER_BUCKET) -> Plan:
        plan = bucket_plan(features)
        prune_every = max(min(dict(plan)), PRUNE_AT_MOST_EVERY) if plan else math.inf
        # The TTL is renewed when a write prunes, at most `prune_every` apart while a user is active:
        # that much longer, it still ends no earlier than the longest life after the last write.
        slack = math.ceil(prune_every) if plan else 0
        return cls(
            sizes=tuple((size, keep, f"{size}:") for size, keep in plan),
            keeps=dict(plan),
            windows=tuple(
                WindowPlan(
                    w.name,
                    f"{w.seconds}/{w.bucket_seconds}",
                    w.bucket_seconds,
                    -(-w.seconds // w.bucket_seconds),
                )
                for w in features.windows
            ),
            recent_limit=features.recent_limit,
            session_timeout=features.session_timeout_seconds,
            dedup_ttl=features.dedup_ttl_seconds,
            prune_every=prune_every,
            ttl=max(*(keep for _, keep in plan), features.session_timeout_seconds, features.dedup_ttl_seconds)
            + slack,
            # Dropping old marks scans all of a user's: once per 1/24 of their TTL (an hour of a day),
            # so they outlive it by that much at most. It is only about memory: an event older than
            # the TTL is not counted whether its mark is still there or not.
            marks_prune_every=max(PRUNE_AT_MOST_EVERY, features.dedup_ttl_seconds / 24),
            max_fields=max_fields,
        )

    def spans(self, now: float) -> Spans:
        levels = tuple((size, keep, prefix, int(now // size) * size) for size, keep, prefix in self.sizes)
        return Spans(
            now,
            tuple((w.key, w.size, *w.span(now)) for w in self.windows),
            levels,
            tuple((str(size), prefix, newest) for size, _, prefix, newest in levels),
        )


@dataclass(slots=True)
class ProfileState:
    """A user's profile as Python values, kept in the stored fields' own shape (writing them copies
    nothing). Bucket keys are "<size>:<start>"."""

    sums: dict[str, Entry] = field(default_factory=dict)  # WindowPlan.key -> Entry
    current: dict[str, list[Any]] = field(default_factory=dict)  # "<size>" -> [newest start, its bucket]
    recent: dict[str, list[str]] = field(default_factory=dict)  # dimension -> values, newest first
    recent_at: dict[str, list[float]] = field(default_factory=dict)  # the recent values' event times
    sessions: dict[str, list[Any]] = field(default_factory=dict)  # [page views, events, start, last]
    buckets: dict[str, Bucket] = field(default_factory=dict)
    prune_at: float = 0.0
    # Which of the rarely changing fields to write next (a new profile: all).
    sums_changed: bool = True
    buckets_changed: bool = True
    # Derived, not stored: per plan size, the window entries that use it, and the bucket last counted
    # into (start, counters) so that the next event of the same moment finds it at once.
    by_size: list[list[Entry]] | None = None
    hot: list[tuple[int, Bucket] | None] = field(default_factory=list)


def changes(state: ProfileState) -> list[tuple[str, bytes]]:
    """The fields to write after a count: `c` always, `w` and `b` when they changed."""
    dumps = orjson.dumps
    out = [(CURRENT, dumps({"n": state.current, "r": state.recent, "t": state.recent_at, "s": state.sessions,
                             "p": state.prune_at}))]  # fmt: skip
    if state.sums_changed:
        out.append((SUMS, dumps(state.sums)))
        state.sums_changed = False
    if state.buckets_changed:
        out.append((BUCKETS, dumps(state.buckets)))
        state.buckets_changed = False
    return out


def fields(state: ProfileState) -> list[bytes]:
    """All three fields as stored, in FIELDS order (what a read gets)."""
    dumps = orjson.dumps
    current = {
        "n": state.current,
        "r": state.recent,
        "t": state.recent_at,
        "s": state.sessions,
        "p": state.prune_at,
    }
    return [dumps(state.sums), dumps(current), dumps(state.buckets)]


def decode(raw: Sequence[bytes | str | None] | None, plan: Plan) -> ProfileState:
    """The state a worker loads from the stored fields (in FIELDS order; None: the user has none)."""
    current_raw = raw[1] if raw else None
    if not raw or current_raw is None:
        return ProfileState()
    sums_raw, buckets_raw = raw[0], raw[2]
    stored_sums = orjson.loads(sums_raw) if sums_raw is not None else {}
    current = orjson.loads(current_raw)
    buckets: dict[str, Bucket] = orjson.loads(buckets_raw) if buckets_raw is not None else {}
    # The newest buckets written with `c` are the truth (`b` may hold older copies of them).
    newest: dict[str, list[Any]] = current["n"]
    for size, (start, bucket) in newest.items():
        key = f"{size}:{start}"
        if bucket is None:
            buckets.pop(key, None)
        else:
            buckets[key] = bucket
    # Sums of windows the plan does not have are dropped; missing ones are made on the next count.
    known = {w.key for w in plan.windows}
    return ProfileState(
        sums={key: entry for key, entry in stored_sums.items() if key in known},
        current=newest,
        recent=current["r"],
        recent_at=current["t"],
        sessions=current["s"],
        buckets=buckets,
        prune_at=current["p"],
        sums_changed=False,
        buckets_changed=False,
    )


# -- counting -------------------------------------------------------------------------------------------


def apply(
    plan: Plan, state: ProfileState, events: Sequence[Counted], now: float, spans: Spans | None = None
) -> bool:
    """Count `events` (new ones: deduplicated and not expired by the caller) into `state` at `now`
    (`spans`: plan.spans(now), when the caller counts many users at one `now`). True when this write
    prunes: the store then drops the dedup marks past their TTL and renews its keys' TTLs."""
    spans = spans if spans is not None else plan.spans(now)
    by_size = _advance(plan, state, spans)
    buckets, max_fields, hot, current = state.buckets, plan.max_fields, state.hot, state.current
    recent, recent_at, sessions, limit = state.recent, state.recent_at, state.sessions, plan.recent_limit
    levels = spans.levels
    for event in events:
        at, counter, dimensions = event.at, event.counter, event.dimensions
        names = [counter]
        if dimensions:
            names += [f"{counter}{SEPARATOR}{d}{SEPARATOR}{v}" for d, v in dimensions]
        for index, (size, keep, prefix, newest) in enumerate(levels):
            start = int(at // size) * size
            if start + keep <= now:
                continue  # no window reads this bucket any more
            found = hot[index]
            if found is not None and found[0] == start:
                bucket = found[1]
            else:
                key = f"{prefix}{start}"
                existing = buckets.get(key)
                if existing is None:
                    existing = buckets[key] = {}
                    if start == newest:
                        current[str(size)][1] = existing
                    for entry in by_size[index]:
                        if start > entry[2]:
                            entry[2] = start
                            state.sums_changed = True
                bucket = existing
                hot[index] = (start, bucket)
            added = names
            if len(bucket) + len(names) <= max_fields:
                for name in names:
                    bucket[name] = bucket.get(name, 0) + 1
            else:
                # Totals always count; a new dimension value only while the bucket has room, so one
                # user with endless distinct values cannot grow memory without bound.
                bucket[counter] = bucket.get(counter, 0) + 1
                added = [counter]
                for name in names[1:]:
                    if name in bucket:
                        bucket[name] += 1
                    elif len(bucket) < max_fields:
                        bucket[name] = 1
                    else:
                        continue
                    added.append(name)
            if start != newest:  # not the newest bucket: a late event (or one from the future)
                state.buckets_changed = True
                for entry in by_size[index]:
                    if entry[0] <= start < entry[1]:
                        counters = entry[3]
                        for name in added:
                            counters[name] = counters.get(name, 0) + 1
                        state.sums_changed = True
        for dimension, value in dimensions:
            values = recent.get(dimension)
            if values is None:
                recent[dimension], recent_at[dimension] = [value], [at]
            elif values[0] == value:  # the newest value again: only its time may move
                times = recent_at[dimension]
                if at > times[0]:
                    times[0] = at
            else:
                remember(values, recent_at[dimension], value, at, limit)
        session = event.session
        if session:
            stats = sessions.get(session)
            if stats is None:
                stats = sessions[session] = [0, 0, at, at]
            if counter == "views":
                stats[0] += 1
            stats[1] += 1
            if at < stats[2]:
                stats[2] = at
            if at > stats[3]:
                stats[3] = at

    # Now and then (once per smallest bucket, at most once a minute) drop buckets no window reads any
    # more and ended sessions; in between they cost memory only (reads skip them by their start
    # time), and the keys' TTLs bound it all.
    if now < state.prune_at:
        return False
    state.prune_at = math.floor(now + plan.prune_every)
    timeout = plan.session_timeout
    state.sessions = {k: s for k, s in sessions.items() if s[3] + timeout > now}
    keeps = plan.keeps
    for name in list(buckets):
        size_text, _, start_text = name.partition(":")
        lifetime = keeps.get(int(size_text))
        if lifetime is None or int(start_text) + lifetime <= now:
            del buckets[name]
            state.buckets_changed = True
    state.hot = [None] * len(levels)  # they may have gone
    return True


def remember(values: list[str], times: list[float], value: str, at: float, limit: int) -> None:
    """Keep `value` among the latest distinct values, newest first by event time (a late event lands
    behind newer ones; a tie goes behind)."""
    if value in values:
        k = values.index(value)
        if times[k] >= at:
            return  # seen as late or later already
        del values[k], times[k]
    if not times or at > times[0]:
        position = 0
    else:
        position = len(times)
        for k, seen_at in enumerate(times):
            if seen_at < at:
                position = k
                break
    values.insert(position, value)
    times.insert(position, at)
    if len(values) > limit:
        del values[limit:], times[limit:]


def _advance(plan: Plan, state: ProfileState, spans: Spans) -> list[list[Entry]]:
    """Move every window to its span at `spans.now` (its sum: every bucket of it but the newest);
    the window entries per bucket size."""
    sums, buckets, current = state.sums, state.buckets, state.current
    moved = state.by_size is None
    for size_text, prefix, newest in spans.newest:
        last = current.get(size_text)
        if last is None or last[0] != newest:
            if last is not None and last[1]:
                state.buckets_changed = True  # the bucket that was newest is an older one now
            current[size_text] = [newest, buckets.get(f"{prefix}{newest}")]
            moved = True
    for key, size, oldest, newest in spans.windows:
        entry = sums.get(key)
        if entry is not None and entry[0] == oldest and entry[1] == newest:
            continue
        moved = state.sums_changed = True
        if not buckets:  # nothing counted yet (a new user): nothing to sum
            sums[key] = [oldest, newest, oldest - size, {}]
            continue
        prefix = f"{size}:"
        if entry is None:  # a new window: as if its stored span held nothing
            top = max((int(k[len(prefix) :]) for k in buckets if k.startswith(prefix)), default=oldest - size)
            entry = [newest + size, newest, top, {}]

        def bucket(start: int, prefix: str = prefix) -> Mapping[str, int] | None:
            return buckets.get(f"{prefix}{start}")

        # The stored sum covers [entry[0], entry[1] - size]; the new one [oldest, newest - size].
        base = [entry[0], entry[1] - size, entry[2], entry[3]]
        sums[key] = [oldest, newest, entry[2], _moved(size, base, oldest, newest - size, bucket)]
    if moved:
        state.by_size = [[sums[key] for key, size_of, _, _ in spans.windows if size_of == size]
                         for size, _, _ in plan.sizes]  # fmt: skip
        state.hot = [None] * len(plan.sizes)
    assert state.by_size is not None
    return state.by_size


def _moved(
    size: int,
    stored: Sequence[Any],
    oldest: int,
    newest: int,
    bucket: Callable[[int], Mapping[str, int] | None],
) -> dict[str, int]:
    """The sum over [oldest, newest] from a `stored` [oldest, newest, top, counters] entry, touching
    the fewest buckets: those that left the span (subtracted) and those that entered it (added) — or a
    fresh sum when that is fewer. Buckets newer than top hold nothing: never looked up."""
    stored_oldest, stored_newest, top, stored_counters = stored[0], stored[1], stored[2], stored[3]
    high = min(newest, top)  # the newest start that can hold anything
    fresh = range(oldest, high + 1, size)
    left: tuple[range, ...]
    entered: tuple[range, ...]
    if stored_newest < oldest or stored_oldest > newest:  # nothing in common
        counters: dict[str, int] = {}
        left, entered = (), (fresh,)
    else:
        stored_high = min(stored_newest, top)
        left = (range(stored_oldest, min(stored_high, oldest - size) + 1, size),
                range(max(stored_oldest, newest + size), stored_high + 1, size))  # fmt: skip
        entered = (range(oldest, min(high, stored_oldest - size) + 1, size),
                   range(max(oldest, stored_newest + size), high + 1, size))  # fmt: skip
        counters = dict(stored_counters)
        if sum(map(len, left)) + sum(map(len, entered)) > len(fresh):
            counters, left, entered = {}, (), (fresh,)
    for starts in left:
        for start in starts:
            values = bucket(start)
            if values:
                for name, n in values.items():
                    remaining = counters.get(name, 0) - n
                    if remaining > 0:
                        counters[name] = remaining
                    else:
                        counters.pop(name, None)
    for starts in entered:
        for start in starts:
            values = bucket(start)
            if values:
                get = counters.get
                for name, n in values.items():
                    counters[name] = get(name, 0) + n
    return counters


# -- reading ---------------------------------------------------------------------------------------------


def read_profile(
    plan: Plan, raw: Sequence[bytes | str | None] | None, user: str, session: str | None, now: float
) -> Profile:
    """The Profile at `now` from the stored fields (in FIELDS order; None or all None: the user has
    none). `b` is parsed only when a window moved since the write and needs older buckets."""
    current_raw = raw[1] if raw else None
    if not raw or current_raw is None:
        return Profile(user=user, counts={w.name: {} for w in plan.windows})
    sums_raw, buckets_raw = raw[0], raw[2]
    stored_sums = orjson.loads(sums_raw) if sums_raw is not None else {}
    current = orjson.loads(current_raw)
    newest_buckets: dict[str, list[Any]] = current["n"]
    older: list[dict[str, Bucket]] = []

    def buckets() -> dict[str, Bucket]:
        if not older:
            older.append(orjson.loads(buckets_raw) if buckets_raw is not None else {})
        return older[0]

    counts: dict[str, Mapping[str, int]] = {}
    for window in plan.windows:
        oldest, newest = window.span(now)
        size = window.size
        last_start, last = newest_buckets.get(str(size)) or (None, None)
        entry = stored_sums.get(window.key)
        prefix = f"{size}:"

        def bucket(start: int, prefix: str = prefix, last_start: Any = last_start, last: Any = last) -> Any:
            return last if start == last_start else buckets().get(f"{prefix}{start}")

        if entry is not None:
            total = entry[3]  # the count when written: the stored sum plus the newest bucket then
            if last and last_start == entry[1]:
                get = total.get
                for name, n in last.items():
                    total[name] = get(name, 0) + n
            if entry[0] == oldest and entry[1] == newest:
                counts[window.name] = total  # written in this very span: nothing moved
                continue
        else:  # written under other window settings: sum what is there
            starts = [int(k[len(prefix) :]) for k in buckets() if k.startswith(prefix)]
            if last and last_start is not None:
                starts.append(last_start)
            entry = [newest + size, newest, max(starts, default=oldest - 1), {}]
        counts[window.name] = _moved(size, entry, oldest, newest, bucket)
    found = None
    if session:
        stats = current["s"].get(session)
        if stats is not None and stats[3] + plan.session_timeout > now:
            found = Session(id=session, page_views=int(stats[0]), events=int(stats[1]),
                            started_at=float(stats[2]), last_seen_at=float(stats[3]))  # fmt: skip
    recent = {dimension: tuple(values) for dimension, values in current["r"].items()}
    return Profile(user=user, counts=counts, recent=recent, session=found)
