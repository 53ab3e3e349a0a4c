"""The Redis layout of per-user profile state: workers write it, the content API reads it.

Keys of one user share the prefix `tailor:<ns>/<name>:{<user>}:` — the stack is plain text and the
user is the hash tag, so a user's keys live in one Redis Cluster slot and one function call can
update them atomically (profile_store.lua documents each key). The stack-wide keys of
`tailor.core.store` use the stack as their hash tag instead; the two never meet in one call.

Write side (workers): `ProfileWriter.queue_write` adds function calls (a few dozen users each) to a
pipeline; each call deduplicates by event id and applies every increment atomically, so a worker
killed at any point leaves each event either counted and marked seen, or neither — replaying it is
always safe.

Read side (content API): `ProfileReader.queue_read` adds one read-only function call to the caller's
pipeline (which may carry its own commands too) and `parse_read` turns its reply into a
`tailor.core.profile.Profile`. The function sums the window buckets server-side and answers one
compact JSON document, so a decision costs one round trip and little Redis CPU.

Time is always passed in (`now`, event times): tests move it, and replays decide the same way.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, NamedTuple

import orjson
import redis
import redis.asyncio as aioredis

from tailor.core import constants
from tailor.core.events import Event
from tailor.core.profile import Profile, Session
from tailor.core.ruleset import FeatureConfig, StackConfig

# A bucket keeps at most this many counters; beyond it only existing ones grow (see the Lua).
MAX_FIELDS_PER_BUCKET: Final = 512
CUSTOM_COUNTER: Final = "custom"

_SOURCE = resources.files("tailor.core").joinpath("profile_store.lua").read_text()
# The functions are named after their code, so workers and API replicas of different versions can
# share one Redis during a rolling upgrade without replacing each other's functions.
CODE_VERSION: Final = hashlib.sha256(_SOURCE.encode()).hexdigest()[:10]
LIBRARY: Final = f"tailor_profile_{CODE_VERSION}"
WRITE_FUNCTION: Final = f"tailor_profile_write_{CODE_VERSION}"
READ_FUNCTION: Final = f"tailor_profile_read_{CODE_VERSION}"
LIBRARY_CODE: Final = (
    _SOURCE.replace("__LIBRARY__", LIBRARY)
    .replace("__WRITE__", WRITE_FUNCTION)
    .replace("__READ__", READ_FUNCTION)
)


def user_prefix(stack: str, user: str) -> str:
    """`stack` is `namespace/name`. Only the user is in braces: it is the hash tag."""
    return f"tailor:{stack}:{{{user}}}:"


def profile_key(stack: str, user: str) -> str:
    """The hash with all of a user's windows, recent values and sessions."""
    return f"{user_prefix(stack, user)}p"


def seen_key(stack: str, user: str) -> str:
    """The sorted set of the user's counted event ids (dedup), scored by when they were counted."""
    return f"{user_prefix(stack, user)}seen"


def install_sync(client: redis.Redis) -> None:
    """Load the functions (idempotent). Call at start, and again when a call says they are missing."""
    client.function_load(LIBRARY_CODE, replace=True)


async def install(client: aioredis.Redis) -> None:
    await client.function_load(LIBRARY_CODE, replace=True)


def is_missing_function(error: BaseException) -> bool:
    """True when Redis lost the functions (a restart without persistence, FUNCTION FLUSH): install again."""
    return isinstance(error, redis.ResponseError) and "function not found" in str(error).lower()


@dataclass(frozen=True, slots=True)
class Occurrence:
    """What a worker counts of one event: its id, time, counter name, session and dimension values."""

    id: str
    user: str
    at: float
    counter: str
    session: str
    dimensions: tuple[tuple[str, str], ...]


def occurrence(event: Event, ingested_at: float, dimensions: Sequence[str]) -> Occurrence:
    """The event as counted. Its time is its own timestamp, never later than when the collector
    received it (`ingested_at`, the Kafka message time): a fast client clock must not push an event
    into a bucket no read looks at yet."""
    at = min(event.epoch_seconds(ingested_at), ingested_at)
    counter = constants.FEATURE_OF_EVENT_TYPE.get(event.type, CUSTOM_COUNTER)
    values = []
    for dimension in dimensions:
        value = event.properties.get(dimension)
        if value is not None:
            values.append((dimension, value))
    return Occurrence(event.id, event.user, at, counter, event.session_id or "", tuple(values))


def is_late(occurrence: Occurrence, ingested_at: float, allowed_lateness_seconds: int) -> bool:
    """Late beyond the allowed lateness, measured against ingestion time so a replay decides alike."""
    return ingested_at - occurrence.at > allowed_lateness_seconds


def _bucket_plan(features: FeatureConfig) -> list[tuple[int, int]]:
    """(bucket size, seconds a bucket stays readable) per distinct bucket size.

    A bucket starting at `s` is summed while `now < s + n * size` (n buckets per window, see the read),
    so it must live that long; one more bucket of slack covers clock skew between hosts.
    """
    keep: dict[int, int] = {}
    for window in features.windows:
        size = window.bucket_seconds
        needed = math.ceil(window.seconds / size) * size + size
        keep[size] = max(keep.get(size, 0), needed)
    return sorted(keep.items())


class ProfileWriter:
    """Queues the atomic dedup-and-count calls for a batch of users' events into a pipeline."""

    def __init__(self, config: StackConfig, *, users_per_call: int = 16) -> None:
        # Several users per call spreads the call overhead, but a call blocks Redis while it runs:
        # 16 users keep that well under a millisecond for the API's reads queued behind it.
        # On Redis Cluster, group users by node or use 1.
        self.stack = config.key
        self.users_per_call = users_per_call
        features = config.features
        plan = _bucket_plan(features)
        # The hash outlives its longest-lived bucket and session; recent values live as long.
        ttl = max([keep for _, keep in plan] + [features.session_timeout_seconds])
        self._head: list[int] = [
            features.dedup_ttl_seconds,
            features.recent_limit,
            features.session_timeout_seconds,
            MAX_FIELDS_PER_BUCKET,
            ttl,
            len(plan),
        ]
        for size, keep in plan:
            self._head += [size, keep]

    def queue_write(self, pipe: Any, batch: Mapping[str, Sequence[Occurrence]], now: float) -> int:
        """Add the calls for `batch` (user -> occurrences) to `pipe`; returns how many were added.
        Each call's reply (see `parse_written`) is [counted, duplicates, expired]."""
        users = list(batch)
        calls = 0
        for first in range(0, len(users), self.users_per_call):
            chunk = users[first : first + self.users_per_call]
            keys = [profile_key(self.stack, user) for user in chunk]
            payloads = [_payload(batch[user]) for user in chunk]
            pipe.execute_command("FCALL", WRITE_FUNCTION, len(keys), *keys, now, *self._head, *payloads)
            calls += 1
        return calls


def _payload(occurrences: Iterable[Occurrence]) -> bytes:
    return orjson.dumps(
        [
            [o.id, o.at, o.counter, o.session, *[part for pair in o.dimensions for part in pair]]
            for o in occurrences
        ]
    )


class Written(NamedTuple):
    """What one write call did: events counted, already counted (duplicates), and too old to count
    safely (older than the dedup TTL, so a duplicate could no longer be recognised)."""

    counted: int
    duplicates: int
    expired: int


def parse_written(raw: Sequence[int]) -> Written:
    """One write call's reply in full (sum them over the calls of a batch)."""
    return Written(int(raw[0]), int(raw[1]), int(raw[2]) if len(raw) > 2 else 0)


def parse_write(raw: Sequence[int]) -> tuple[int, int]:
    """(counted, duplicates) of one write call's reply."""
    return int(raw[0]), int(raw[1])


class ProfileReader:
    """Queues the one read-only call that fetches a user's profile, and parses its answer."""

    def __init__(self, config: StackConfig) -> None:
        self.stack = config.key
        features = config.features
        self.window_names = tuple(window.name for window in features.windows)
        self.dimensions = features.dimensions
        self._tail: list[str | int] = [features.session_timeout_seconds, len(features.windows)]
        for window in features.windows:
            self._tail += [window.name, window.seconds, window.bucket_seconds]

    def queue_read(self, pipe: Any, user: str, session: str | None, now: float) -> None:
        """Add the profile read to `pipe` (sync or asyncio pipeline, or a client for a lone call)."""
        pipe.execute_command(
            "FCALL_RO", READ_FUNCTION, 1, profile_key(self.stack, user), now, session or "", *self._tail
        )

    def parse_read(self, raw: bytes | str, user: str, session: str | None) -> Profile:
        return parse_read(raw, user, session, self.window_names)


def parse_read(raw: bytes | str, user: str, session: str | None, windows: Sequence[str] = ()) -> Profile:
    """The Profile from a read call's JSON reply. Windows without events are present and empty."""
    doc = orjson.loads(raw)
    counts: dict[str, dict[str, int]] = {name: {} for name in windows}
    for name, counters in doc["c"].items():
        counts[name] = {counter: int(n) for counter, n in counters.items()}
    # An empty Lua table encodes as {}: treat it as "no recent values".
    recent = {dimension: tuple(values) for dimension, values in doc["r"].items()} if doc["r"] else {}
    stats = doc["s"]
    found = None
    if session and stats:
        page_views, events, started, last = stats
        found = Session(id=session, page_views=int(page_views), events=int(events), started_at=float(started),
                        last_seen_at=float(last))  # fmt: skip
    return Profile(user=user, counts=counts, recent=recent, session=found)


async def read(
    client: aioredis.Redis, config: StackConfig, user: str, session: str | None, now: float
) -> Profile:
    """One profile, for callers that have nothing else to pipeline (admin endpoint, simulate, tests)."""
    reader = ProfileReader(config)
    async with client.pipeline(transaction=False) as pipe:
        reader.queue_read(pipe, user, session, now)
        (raw,) = await pipe.execute()
    return reader.parse_read(raw, user, session)


def read_sync(
    client: redis.Redis, config: StackConfig, user: str, session: str | None, now: float
) -> Profile:
    reader = ProfileReader(config)
    pipe = client.pipeline(transaction=False)
    reader.queue_read(pipe, user, session, now)
    (raw,) = pipe.execute()
    return reader.parse_read(raw, user, session)
