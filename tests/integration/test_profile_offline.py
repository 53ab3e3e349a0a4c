"""The offline profile store agrees with the workers' store on a real Redis, write for write.

`tailor simulate` counts events in memory (tailor.core.profile.offline); the workers count them into
their cached state and write the changed fields through the guard function, and the content API
reads them back with one HGETALL. Both share the counting code (tailor.core.profile.state), so what
this holds equal is everything around it: dedup, expiry, pruning, the fields as stored, writers that
load their users from Redis (a fresh writer now and then: a restart, a rebalance) and the reads at
many instants. Random event streams — several users and sessions, duplicates, late events, more
distinct values than a bucket may hold, gaps longer than sessions and windows — are written to both
at the same `now`, and every read, for every session, must give the same Profile; the window sums
are also checked against a plain sum of the stored buckets.
"""

from __future__ import annotations

import math
import random
import uuid

import pytest
import redis

from tailor.core import constants
from tailor.core.events import occurrence
from tailor.core.profile import Profile, store
from tailor.core.profile import offline as profile_offline
from tailor.core.profile import state as profile_state
from tailor.core.rules import compiler
from tailor.core.rules.ruleset import FeatureConfig, KafkaConfig, StackConfig, Window

START = 1_800_000_003.25  # not bucket-aligned on purpose
USERS = ("alice", "bob", "carol")
SESSIONS = ("s1", "s2", "")
TYPES = ("page_view", "page_view", "page_view", "click", "add_to_cart", "search", "purchase", "custom")


def stack_config() -> StackConfig:
    windows = tuple(
        Window(name=name, seconds=seconds, bucket_seconds=compiler.bucket_seconds(seconds))
        for name, seconds in (("5m", 300), ("30m", 1800), ("24h", 86400))
    )
    return StackConfig(
        namespace=f"ns-{uuid.uuid4().hex[:8]}",
        name="shop",
        kafka=KafkaConfig(bootstrap_servers="unused:9092", events_topic="events", dead_letter_topic="dead"),
        features=FeatureConfig(
            windows=windows,
            dimensions=("category", "productId", "query"),
            allowed_lateness_seconds=600,
            recent_limit=3,
            session_timeout_seconds=600,
        ),
    )


def random_occurrence(
    rng: random.Random, now: float, ids: list[str], times: list[float]
) -> occurrence.Occurrence:
    if ids and rng.random() < 0.1:
        event_id = rng.choice(ids)  # a redelivery: must count once
    else:
        event_id = uuid.UUID(int=rng.getrandbits(128)).hex
        ids.append(event_id)
    type_ = rng.choice(TYPES)
    dimensions = []
    if rng.random() < 0.8:
        dimensions.append(("category", rng.choice(["shoes", "bags", "hats", "coats"])))
    if rng.random() < 0.5:
        dimensions.append(("productId", f"p{rng.randrange(12)}"))
    if type_ == "search":
        dimensions.append(("query", rng.choice(["red shoes", "tote", "rain coat"])))
    # Mostly recent, sometimes late (up to ten minutes back), with sub-second times; now and then at
    # exactly the time of an earlier event (ties decide the order of recent values).
    if times and rng.random() < 0.15:
        at = rng.choice(times)
    else:
        at = now - (rng.random() * 600 if rng.random() < 0.2 else rng.random() * 5)
        times.append(at)
    return occurrence.Occurrence(
        event_id,
        rng.choice(USERS),
        at,
        constants.FEATURE_OF_EVENT_TYPE.get(type_, occurrence.CUSTOM_COUNTER),
        rng.choice(SESSIONS),
        tuple(dimensions),
    )


class RedisWriter:
    """The workers' writer, restarted (its cache lost) whenever `restart` is called."""

    def __init__(self, client: redis.Redis, config: StackConfig) -> None:
        self.client, self.config = client, config
        self.restart()

    def restart(self) -> None:
        # No per-user cap: the bursts here are about counting, not about one user's flood.
        self.writer = store.ProfileWriter(self.config, users_per_call=2, events_per_user_per_minute=10**9)

    def __call__(self, batch: list[occurrence.Occurrence], now: float) -> tuple[int, int]:
        grouped: dict[str, list[occurrence.Occurrence]] = {}
        for item in batch:
            grouped.setdefault(item.user, []).append(item)
        written = self.writer.write(self.client, grouped, now)
        return written.counted, written.duplicates


def assert_same_reads(
    client: redis.Redis, config: StackConfig, offline: profile_offline.OfflineProfileStore, now: float
) -> None:
    for user in USERS:
        for session in (None, "s1", "s2"):
            expected: Profile = store.read(client, config, user, session, now)
            assert offline.read(user, session, now) == expected, (user, session, now - START)
        assert_sums_are_bucket_sums(client, config, user, now)


def assert_sums_are_bucket_sums(client: redis.Redis, config: StackConfig, user: str, now: float) -> None:
    """The read (stored window sums, corrected by the buckets that moved) equals a plain sum of the
    stored buckets in each window's span."""
    stored = client.hmget(store.profile_key(config.key, user), list(profile_state.FIELDS))
    buckets = profile_state.decode(stored, profile_state.Plan.of(config.features)).buckets
    profile = store.read(client, config, user, None, now)
    for window in config.features.windows:
        size = window.bucket_seconds
        newest = int(now // size) * size
        oldest = newest - (math.ceil(window.seconds / size) - 1) * size
        expected: dict[str, int] = {}
        for key, bucket in buckets.items():
            bucket_size, start = map(int, key.split(":"))
            if bucket_size == size and oldest <= start <= newest:
                for counter, n in bucket.items():
                    expected[counter] = expected.get(counter, 0) + n
        assert profile.counts[window.name] == expected, (user, window.name, now - START)


@pytest.fixture
def client(redis_client: redis.Redis) -> redis.Redis:
    store.install(redis_client)
    return redis_client


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_streams_read_back_the_same(client: redis.Redis, seed: int) -> None:
    rng = random.Random(seed)
    config = stack_config()
    offline = profile_offline.OfflineProfileStore(config)
    write = RedisWriter(client, config)
    ids: list[str] = []
    times: list[float] = []
    now = START
    for _ in range(40):
        # Mostly seconds apart; now and then longer than a session, a 5m or a 30m window.
        now += rng.choice([0.5, 1.0, 3.7, 12.0, 45.0, 130.0, 400.0, 700.0, 2000.0])
        batch = [random_occurrence(rng, now, ids, times) for _ in range(rng.randrange(1, 30))]
        if rng.random() < 0.25:
            write.restart()  # a new worker: every user loaded from Redis
        assert offline.write(batch, now) == write(batch, now)
        assert_same_reads(client, config, offline, now)
    # Reads later on, as windows and sessions run out (Redis's own key TTLs are far longer).
    for later in (1, 59, 301, 599, 601, 1801, 3600, 86399):
        assert_same_reads(client, config, offline, now + later)


def test_the_cap_on_distinct_counters_per_bucket_agrees(client: redis.Redis) -> None:
    config = stack_config()
    offline = profile_offline.OfflineProfileStore(config)
    burst = [
        occurrence.Occurrence(f"e{i}", "alice", START + i * 0.001, "views", "s1", (("productId", f"p{i}"),))
        for i in range(store.MAX_FIELDS_PER_BUCKET + 40)
    ]
    now = START + 10
    assert offline.write(burst, now) == RedisWriter(client, config)(burst, now) == (len(burst), 0)
    profile = offline.read("alice", "s1", now)
    assert profile == store.read(client, config, "alice", "s1", now)
    assert profile.count("5m", "views") == len(burst)  # totals always count
    distinct = [name for name in profile.counts["5m"] if name.startswith("views|productId|")]
    assert len(distinct) < len(burst)  # new values stop once a bucket is full
    assert profile.recent["productId"][0] == f"p{len(burst) - 1}"


def view(event_id: str, at: float, session: str = "s1", **dimensions: str) -> occurrence.Occurrence:
    return occurrence.Occurrence(event_id, "alice", at, "views", session, tuple(dimensions.items()))


def test_a_session_that_timed_out_starts_over(client: redis.Redis) -> None:
    config = stack_config()  # sessions time out after 600 s
    offline = profile_offline.OfflineProfileStore(config)
    t = 1_800_000_000.0
    steps = [
        ([view("a", t), view("b", t + 1)], t + 1),
        ([view("c", t + 601, session="s2")], t + 601),  # prunes s1: last seen + 600 <= now
        ([view("d", t + 602)], t + 602),
    ]
    for batch, now in steps:
        assert offline.write(batch, now) == RedisWriter(client, config)(batch, now)
    profile = offline.read("alice", "s1", t + 602)
    assert profile == store.read(client, config, "alice", "s1", t + 602)
    assert profile.session is not None
    assert (profile.session.page_views, profile.session.started_at) == (1, t + 602)


def test_dedup_marks_last_the_dedup_ttl(client: redis.Redis) -> None:
    config = stack_config()
    offline = profile_offline.OfflineProfileStore(config)
    ttl = config.features.dedup_ttl_seconds
    t = 1_800_000_000.0
    steps = [
        ([view("e1", t)], t, (1, 0)),
        ([view("e2", t + ttl - 0.5)], t + ttl - 0.5, (1, 0)),  # drops marks older than ttl: not e1's
        ([view("e1", t + ttl - 0.4)], t + ttl - 0.4, (0, 1)),  # still a duplicate
        ([view("e3", t + ttl + 10)], t + ttl + 10, (1, 0)),  # no prune: the last was under a minute ago
        ([view("e1", t + ttl + 11)], t + ttl + 11, (0, 1)),  # so e1's mark is still there
        ([view("e4", t + ttl + 70)], t + ttl + 70, (1, 0)),  # a prune, but marks were dropped < 1 h ago
        ([view("e1", t + ttl + 71)], t + ttl + 71, (0, 1)),  # so e1's mark is still there
        ([view("e5", t + ttl + 3600)], t + ttl + 3600, (1, 0)),  # an hour on: now e1's mark goes
        ([view("e1", t + ttl + 3601)], t + ttl + 3601, (1, 0)),  # and a redelivery counts again
    ]
    for batch, now, expected in steps:
        assert offline.write(batch, now) == RedisWriter(client, config)(batch, now) == expected
    assert offline.read("alice", "s1", t + ttl + 3601) == store.read(
        client, config, "alice", "s1", t + ttl + 3601
    )


def test_recent_values_are_newest_first_by_event_time(client: redis.Redis) -> None:
    config = stack_config()  # at most 3 recent values
    offline = profile_offline.OfflineProfileStore(config)
    t = 1_800_000_000.0
    writes = [
        view("1", t, category="shoes"),
        view("2", t, category="bags"),  # a tie goes behind
        view("3", t, category="shoes"),  # the same value at the same time changes nothing
        view("4", t - 10, category="hats"),  # a late event lands behind newer ones
        view("5", t - 20, category="coats"),  # and past the limit falls off
        view("6", t + 5, category="hats"),  # a newer sighting moves a value to the front
    ]
    for number, event in enumerate(writes):
        now = t + 5 + number
        assert offline.write([event], now) == RedisWriter(client, config)([event], now)
    profile = offline.read("alice", None, t + 20)
    assert profile == store.read(client, config, "alice", None, t + 20)
    assert profile.recent["category"] == ("hats", "shoes", "bags")
