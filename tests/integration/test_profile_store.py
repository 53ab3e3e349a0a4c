"""The profile store on the real Redis: exact counts, dedup, windows in time, late events, one-command
reads, and the guard of the workers' cached writes (zombie writers, revoked partitions, resends)."""

from __future__ import annotations

import uuid
from typing import Any

import native_marks
import pytest
import redis
from redis.crc import key_slot

from tailor.core import events, native
from tailor.core.events.occurrence import Occurrence, from_event
from tailor.core.profile import state as profile_state
from tailor.core.profile import store
from tailor.core.rules.ruleset import FeatureConfig, KafkaConfig, StackConfig, Window

NOW = 1_800_000_000.0  # a fixed, bucket-aligned instant; tests move time from here


def stack_config(**features: Any) -> StackConfig:
    defaults: dict[str, Any] = {
        "windows": (
            Window(name="5m", seconds=300, bucket_seconds=10),
            Window(name="30m", seconds=1800, bucket_seconds=60),
            Window(name="24h", seconds=86400, bucket_seconds=3600),
        ),
        "dimensions": ("category", "productId", "query"),
        "allowed_lateness_seconds": 600,
        "recent_limit": 3,
    }
    return StackConfig(
        namespace=f"ns-{uuid.uuid4().hex[:6]}",
        name="shop",
        kafka=KafkaConfig(bootstrap_servers="unused:9092", events_topic="events", dead_letter_topic="dead"),
        features=FeatureConfig(**{**defaults, **features}),
    )


def occurrence(
    config: StackConfig, type_: str = "page_view", *, user: str = "alice", at: float = NOW, **props: Any
) -> Occurrence:
    data = {"id": uuid.uuid4().hex, "type": type_, "userId": user, "sessionId": "s1", "timestamp": at}
    event = events.Event.model_validate({**data, "properties": props})
    return from_event(event, at, config.features.dimensions)


def grouped(batch: list[Occurrence]) -> dict[str, list[Occurrence]]:
    by_user: dict[str, list[Occurrence]] = {}
    for item in batch:
        by_user.setdefault(item.user, []).append(item)
    return by_user


def write(
    client: redis.Redis, config: StackConfig, batch: list[Occurrence], now: float = NOW,
    writer: store.ProfileWriter | None = None,
) -> tuple[int, int]:  # fmt: skip
    """(counted, duplicates); a fresh writer (nothing cached: every user loaded) unless one is given."""
    writer = writer or store.ProfileWriter(config, users_per_call=2)
    written = writer.write(client, grouped(batch), now)
    return written.counted, written.duplicates


@pytest.fixture
def client(redis_client: redis.Redis) -> redis.Redis:
    store.install(redis_client)
    return redis_client


def test_a_burst_is_counted_exactly_per_window_type_and_dimension(client: redis.Redis) -> None:
    config = stack_config()
    burst = [occurrence(config, category="shoes", productId=f"p{i % 4}", at=NOW - i) for i in range(120)]
    burst += [
        occurrence(config, "add_to_cart", category="shoes", productId="p1", at=NOW - 30) for _ in range(7)
    ]
    burst += [occurrence(config, "search", query="red shoes", at=NOW - 5) for _ in range(3)]
    burst += [occurrence(config, user="bob", category="hats") for _ in range(11)]
    assert write(client, config, burst) == (141, 0)

    alice = store.read(client, config, "alice", "s1", NOW)
    for window in ("5m", "30m", "24h"):
        assert alice.count(window, "views") == 120
        assert alice.count(window, "views", "category", "shoes") == 120
        assert alice.count(window, "views", "productId", "p3") == 30
        assert alice.count(window, "cartAdds", "productId", "p1") == 7
        assert alice.count(window, "searches", "query", "red shoes") == 3
        assert alice.count(window, "views", "category", "hats") == 0
    assert alice.top("24h", "views", "productId")[1] == 30
    assert alice.session is not None
    assert (alice.session.page_views, alice.session.events) == (120, 130)
    assert (alice.session.started_at, alice.session.last_seen_at) == (NOW - 119, NOW)
    bob = store.read(client, config, "bob", None, NOW)
    assert bob.count("5m", "views", "category", "hats") == 11
    assert bob.session is None  # not asked for


def test_replaying_the_same_events_changes_nothing(client: redis.Redis) -> None:
    config = stack_config()
    batch = [occurrence(config, "click", category="bags", at=NOW - i) for i in range(50)]
    assert write(client, config, batch) == (50, 0)
    before = store.read(client, config, "alice", "s1", NOW)
    assert write(client, config, batch) == (0, 50)
    assert write(client, config, [*batch[10:20], occurrence(config, "click", category="bags")]) == (1, 10)
    after = store.read(client, config, "alice", "s1", NOW)
    assert after.count("5m", "clicks") == before.count("5m", "clicks") + 1 == 51
    assert after.session is not None
    assert after.session.events == 51


def test_windows_empty_as_time_passes(client: redis.Redis) -> None:
    config = stack_config()
    write(client, config, [occurrence(config, category="shoes") for _ in range(4)])
    counts = {
        offset: [store.read(client, config, "alice", None, NOW + offset).count(w, "views")
                 for w in ("5m", "30m", "24h")]
        for offset in (0, 299, 301, 1799, 1801, 86399, 86401)
    }  # fmt: skip
    assert counts == {
        0: [4, 4, 4],
        299: [4, 4, 4],
        301: [0, 4, 4],
        1799: [0, 4, 4],
        1801: [0, 0, 4],
        86399: [0, 0, 4],
        86401: [0, 0, 0],
    }


def test_late_events_land_in_their_own_bucket(client: redis.Redis) -> None:
    # Which events are too late to count is the worker's call (tests/unit/test_worker_batch.py).
    config = stack_config()
    late = occurrence(config, category="shoes", at=NOW - 400)  # behind the 5m window, inside 30m
    write(client, config, [late, occurrence(config, category="shoes")])
    profile = store.read(client, config, "alice", None, NOW)
    assert (profile.count("5m", "views"), profile.count("30m", "views")) == (1, 2)


def test_a_client_clock_ahead_counts_at_ingestion_time(client: redis.Redis) -> None:
    config = stack_config()
    event = events.Event.model_validate(
        {"id": "x", "type": "page_view", "userId": "alice", "timestamp": NOW + 3600}
    )
    counted = from_event(event, NOW, config.features.dimensions)
    assert counted.at == NOW
    write(client, config, [counted])
    assert store.read(client, config, "alice", None, NOW).count("5m", "views") == 1


def test_recent_values_are_distinct_newest_first_and_bounded(client: redis.Redis) -> None:
    config = stack_config()
    views = [
        occurrence(config, productId=p, at=NOW - 100 + i) for i, p in enumerate(["a", "b", "c", "a", "d"])
    ]
    write(client, config, views[:2])
    write(client, config, views[2:])
    write(client, config, [occurrence(config, productId="z", at=NOW - 500)])  # late: older than all
    profile = store.read(client, config, "alice", None, NOW)
    assert profile.recent["productId"] == ("d", "a", "c")


def test_the_read_is_one_command_in_a_caller_pipeline(client: redis.Redis) -> None:
    config = stack_config()
    write(client, config, [occurrence(config, category="shoes")])
    reader = store.ProfileReader(config)
    pipe = client.pipeline(transaction=False)
    pipe.set(f"caller:{config.key}", "1")
    reader.queue_read(pipe, "alice", "s1", NOW)
    assert [command[0][0] for command in pipe.command_stack] == ["SET", "HMGET"]  # one plain command
    pipe.get(f"caller:{config.key}")
    _, raw, mine = pipe.execute()
    assert mine == "1"
    profile = reader.parse_read(raw, "alice", "s1", NOW)
    assert profile.count("5m", "views", "category", "shoes") == 1
    empty = store.read(client, config, "nobody", "s1", NOW)
    assert empty.counts == {"5m": {}, "30m": {}, "24h": {}}
    assert (dict(empty.recent), empty.session) == ({}, None)


def test_every_key_is_hash_tagged_by_user_and_expires(client: redis.Redis) -> None:
    config = stack_config()
    write(client, config, [occurrence(config, user="carol", category="shoes", productId="p")])
    keys = [str(key) for key in client.keys(f"tailor:{config.key}:*")]  # text replies (fixture)
    assert keys, "nothing written"
    for key in keys:
        assert key.startswith(f"tailor:{config.key}:{{carol}}:")
        assert 0 < client.ttl(key) <= profile_state.Plan.of(config.features).ttl  # memory stays bounded
    # The slot Redis Cluster would route each key to: one, the user's.
    assert {key_slot(key.encode()) for key in keys} == {key_slot(b"carol")}
    assert key_slot(b"carol") != key_slot(b"dave")  # the check could tell users apart


def test_a_bucket_keeps_totals_but_caps_distinct_values(client: redis.Redis) -> None:
    config = stack_config()
    flood = [occurrence(config, "search", query=f"q{i}") for i in range(store.MAX_FIELDS_PER_BUCKET + 50)]
    writer = store.ProfileWriter(config, events_per_user_per_minute=len(flood))  # all within the cap
    write(client, config, flood, writer=writer)
    profile = store.read(client, config, "alice", None, NOW)
    assert profile.count("5m", "searches") == len(flood)  # every event counted
    assert len(profile.counts["5m"]) <= store.MAX_FIELDS_PER_BUCKET


def test_the_read_parses_bytes_text_and_a_missing_key(client: redis.Redis) -> None:
    config = stack_config()
    write(client, config, [occurrence(config, "search", query="red shoes", at=NOW - 3)])
    raw = client.hmget(store.profile_key(config.key, "alice"), list(profile_state.FIELDS))
    reader = store.ProfileReader(config)
    as_text = reader.parse_read(raw, "alice", "s1", NOW)
    assert all(
        isinstance(value, str) for value in raw
    )  # the fixture decodes; the API's connection gets bytes
    assert reader.parse_read([value.encode() for value in raw], "alice", "s1", NOW) == as_text
    assert as_text == store.read(client, config, "alice", "s1", NOW)
    assert as_text.recent["query"] == ("red shoes",)
    assert reader.parse_read([None, None, None], "nobody", None, NOW).counts["5m"] == {}


def test_lost_functions_are_detected_and_reinstalled(client: redis.Redis) -> None:
    config = stack_config()
    client.function_delete(store.LIBRARY)
    with pytest.raises(redis.ResponseError) as caught:
        write(client, config, [occurrence(config)])
    assert store.is_missing_function(caught.value)
    store.install(client)
    assert write(client, config, [occurrence(config)]) == (1, 0)


@pytest.mark.parametrize("implementation", [pytest.param("on", marks=native_marks.needs_native), "off"],
                         ids=["compiled", "python"])  # fmt: skip
@pytest.mark.parametrize(
    "damaged",
    ["{not json", '{"n": {}, "r": {"category": ["shoes"]}, "t": {}, "s": {}, "p": 0}'],
    ids=["not-json", "recent-values-without-times"],
)
def test_a_stored_profile_that_cannot_be_read_is_counted_afresh(
    client: redis.Redis, implementation: str, damaged: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Damaged by hand, or written by an incompatible version: neither the worker nor the API can read
    it, so the next event starts it over (logged, counted in `resets`) instead of failing every batch
    of the partition; a replay of what was counted before is still refused."""
    config = stack_config()
    first = occurrence(config, category="shoes", at=NOW - 5)
    assert write(client, config, [first]) == (1, 0)
    client.hset(store.profile_key(config.key, "alice"), "c", damaged)
    monkeypatch.setenv(native.ENV, implementation)  # the counting the writer picks (tailor.core.native)
    writer = store.ProfileWriter(config)
    assert write(client, config, [occurrence(config, category="hats"), first], writer=writer) == (1, 1)
    assert writer.resets == 1
    profile = store.read(client, config, "alice", "s1", NOW)
    assert profile.counts["5m"]["views"] == 1
    assert profile.recent["category"] == ("hats",)


def test_a_stored_profile_that_cannot_be_read_reads_as_empty() -> None:
    """The content API decides for such a user as for a newcomer (no 500) until the worker counts it
    afresh."""
    reader = store.ProfileReader(stack_config())
    for damaged in (
        [None, b"{not json", None],
        [b"[1]", b'{"n": {}, "r": {}, "t": {}, "s": {}, "p": 0}', None],
    ):
        profile = reader.parse_read(damaged, "alice", "s1", NOW)
        assert profile.counts == {"5m": {}, "30m": {}, "24h": {}}
        assert profile.session is None


def test_a_replay_older_than_the_dedup_ttl_is_not_counted_again(client: redis.Redis) -> None:
    config = stack_config(dedup_ttl_seconds=600)  # shorter than the 24h window
    first = occurrence(config, category="shoes", at=NOW)
    assert write(client, config, [first]) == (1, 0)
    write(client, config, [occurrence(config, at=NOW + 700)], now=NOW + 700)  # prunes first's mark
    assert client.hget(store.profile_key(config.key, "alice"), store.mark(first.id)) is None

    written = store.ProfileWriter(config).write(client, {"alice": [first]}, NOW + 701)
    assert written == store.Written(counted=0, duplicates=0, expired=1)
    profile = store.read(client, config, "alice", None, NOW + 701)
    assert profile.count("24h", "views") == 2  # first once, the one at +700 once


def test_a_zombie_writer_cannot_clobber_the_new_owner_and_counts_stay_exact(client: redis.Redis) -> None:
    """A worker that lost the user's partition (a zombie) still holds the user's state in its cache;
    its write is refused, it reloads what the new owner wrote, and nothing is lost or doubled."""
    config = stack_config()
    zombie = store.ProfileWriter(config)
    owner = store.ProfileWriter(config)
    mine = [occurrence(config, category="shoes") for _ in range(3)]
    assert write(client, config, mine, writer=zombie) == (3, 0)  # cached by the zombie
    theirs = [occurrence(config, category="hats") for _ in range(2)]
    assert write(client, config, [*theirs, mine[0]], writer=owner) == (2, 1)  # the new owner replays one
    # The zombie writes from its stale cache: refused, reloaded, counted on top of the owner's write.
    late = [occurrence(config, category="bags"), theirs[0]]
    assert write(client, config, late, writer=zombie) == (1, 1)
    assert zombie.conflicts == 1
    profile = store.read(client, config, "alice", "s1", NOW)
    assert profile.count("5m", "views") == 6
    assert [profile.count("5m", "views", "category", c) for c in ("shoes", "hats", "bags")] == [3, 2, 1]
    assert profile.session is not None
    assert profile.session.page_views == 6
    # Its cache now holds the owner's version: the next write goes through at once.
    assert write(client, config, [occurrence(config)], writer=zombie) == (1, 0)
    assert zombie.conflicts == 1


def test_a_cached_writer_still_refuses_an_event_counted_before(client: redis.Redis) -> None:
    """The dedup set, not the cache, decides: a client resend hours later hits a warm cache."""
    config = stack_config()
    writer = store.ProfileWriter(config)
    batch = [occurrence(config, category="shoes") for _ in range(4)]
    assert write(client, config, batch, writer=writer) == (4, 0)
    loads = writer.loads
    assert write(client, config, [*batch[:2], occurrence(config)], writer=writer) == (1, 2)
    assert writer.loads == loads + 1  # refused by the guard, reloaded once, the new event counted
    assert store.read(client, config, "alice", None, NOW).count("5m", "views") == 5


def test_revoked_partitions_drop_their_users_from_the_cache(client: redis.Redis) -> None:
    config = stack_config()
    writer = store.ProfileWriter(config)
    on = {"alice": 3, "bob": 4}
    batch = [occurrence(config, user="alice"), occurrence(config, user="bob")]
    writer.write(client, grouped(batch), NOW, on)
    assert writer.loads == 2
    writer.write(client, grouped([occurrence(config, user="alice"), occurrence(config, user="bob")]), NOW, on)
    assert writer.loads == 2  # both cached
    writer.forget_partitions([3])  # alice's partition went to another worker
    writer.write(client, grouped([occurrence(config, user="bob")]), NOW, on)
    assert writer.cached_users == 1  # her state has left the cache
    # The other worker writes to her profile; when she comes back, a load, not a refused write,
    # brings in what it wrote.
    assert write(client, config, [occurrence(config, user="alice")]) == (1, 0)
    writer.write(client, grouped([occurrence(config, user="alice"), occurrence(config, user="bob")]), NOW, on)
    assert (writer.loads, writer.conflicts) == (3, 0)
    assert store.read(client, config, "alice", None, NOW).count("5m", "views") == 4
    assert store.read(client, config, "bob", None, NOW).count("5m", "views") == 4


def test_a_write_that_fails_midway_is_retried_exactly(client: redis.Redis) -> None:
    """One user's call fails after others ran (here: a key of the wrong type): the writer trusts
    nothing cached for the batch, and the retry counts every event once (the calls that did run are
    found marked)."""
    config = stack_config()
    writer = store.ProfileWriter(config, users_per_call=1)
    users = [f"u{i}" for i in range(6)]
    write(client, config, [occurrence(config, user=u) for u in users], writer=writer)  # all cached
    broken = store.profile_key(config.key, "u3")
    client.delete(broken)
    client.set(broken, "not a hash")
    batch = [occurrence(config, user=u, category="shoes") for u in users for _ in range(2)]
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        writer.write(client, grouped(batch), NOW)
    assert writer.cached_users == 0  # nothing about these users is trusted any more
    client.delete(broken)
    assert write(client, config, batch, writer=writer) == (2, 10)  # five users' events were in already
    for user in users:
        assert store.read(client, config, user, None, NOW).count("5m", "views", "category", "shoes") == 2


def test_a_profile_from_before_the_marks_moved_in_is_counted_on(client: redis.Redis) -> None:
    """Until 2026-12-06 the version and the marks lived in a sorted set beside the profile: a profile
    hash without them (as an upgrade finds it) is read, counted on, and guarded from then on."""
    config = stack_config()
    first = occurrence(config, category="shoes")
    assert write(client, config, [first]) == (1, 0)
    key = store.profile_key(config.key, "alice")
    fields = [name.decode() if isinstance(name, bytes) else name for name in client.hkeys(key)]
    reserved = [name for name in fields if name[:1] in (" ", store.MARK_PREFIX)]
    assert store.VERSION_FIELD in reserved
    assert store.mark(first.id) in reserved
    client.hdel(key, *reserved)  # what the old layout left in this key: the JSON fields alone
    assert write(client, config, [occurrence(config, category="shoes")]) == (1, 0)
    profile = store.read(client, config, "alice", None, NOW)
    assert profile.count("5m", "views", "category", "shoes") == 2
    assert client.hget(key, store.VERSION_FIELD) is not None  # guarded from here on


# -- per-user caps (issue 14: one user id must not be able to stall or fill Redis) ------------------------


def test_a_flooding_user_is_counted_up_to_the_per_minute_cap_and_others_are_not_held(
    client: redis.Redis,
) -> None:
    config = stack_config()
    writer = store.ProfileWriter(config, events_per_user_per_minute=100)
    flood = [occurrence(config, at=NOW + i % 60) for i in range(250)]  # one minute of event time
    written = writer.write(client, grouped([*flood, occurrence(config, user="bob")]), NOW + 60)
    assert (written.counted, written.over_cap) == (101, 150)  # alice's 100 within the cap, and bob's one
    assert store.read(client, config, "alice", None, NOW + 60).count("5m", "views") == 100
    # The next minute of event time has a cap of its own; a resend of a counted event is not counted
    # again (its full minute holds it back before the dedup check could: over the cap).
    later = [occurrence(config, at=NOW + 60 + i % 60) for i in range(120)]
    written = writer.write(client, {"alice": [*later, flood[0]]}, NOW + 120)
    assert (written.counted, written.duplicates + written.over_cap) == (100, 21)
    assert store.read(client, config, "alice", None, NOW + 120).count("5m", "views") == 200


def _fill_marks(client: redis.Redis, key: str, count: int, at: float) -> None:
    """`count` dedup marks counted at `at` in the user's hash, as a flood of events before the caps
    (or a layout from before them) left them."""
    pipe = client.pipeline(transaction=False)
    for start in range(0, count, 1000):
        pipe.hset(
            key, mapping={store.mark(f"old-{i}"): repr(at) for i in range(start, min(count, start + 1000))}
        )
    pipe.execute()


def test_one_user_with_a_hundred_thousand_events_cannot_grow_redis_past_the_marks_cap(
    client: redis.Redis,
) -> None:
    """10⁵ events of one user, 1,000 per minute of event time over 100 minutes (the per-minute cap
    lifted): the user's hash stops at the marks cap (MEMORY USAGE), the rest is acknowledged as over
    it. Today's code kept a mark for each (≈ 9 MB for this one user)."""
    config = stack_config()
    writer = store.ProfileWriter(config, events_per_user_per_minute=10**6, dedup_marks_per_user=5_000)
    over = counted = 0
    for minute in range(100):
        now = NOW + 60 * minute
        written = writer.write(client, {"alice": [occurrence(config, at=now) for _ in range(1000)]}, now)
        counted, over = counted + written.counted, over + written.over_cap
    key = store.profile_key(config.key, "alice")
    assert (counted, over) == (5_000, 95_000)
    assert client.hlen(key) <= 5_000 + 6
    used = client.memory_usage(key)
    assert used is not None
    assert used < 1_000_000, f"{used:,} bytes for one user"
    assert store.read(client, config, "alice", None, now).count("24h", "views") == 5_000


def _calls(client: redis.Redis, command: str, key: str) -> list[int]:
    """How long each `command` on `key` in Redis's slow log took (µs of Redis' time), ascending."""
    found = []
    for entry in client.slowlog_get(-1):
        text = entry["command"]
        text = text.decode(errors="replace") if isinstance(text, bytes) else text  # bytes, decoding or not
        if text.startswith(command) and key in text:
            found.append(entry["duration"])
    assert found, f"no {command} on {key} in the slow log"
    return sorted(found)


def test_dropping_a_huge_hash_of_old_marks_takes_a_bounded_step_per_call(client: redis.Redis) -> None:
    """10⁵ marks past the dedup TTL in one user's hash (a flood from before the caps): each write drops
    a bounded step of them, where today's code read the whole hash in one call (the control: that
    read alone, timed by Redis). Over the marks cap meanwhile, the user's events are acknowledged, not
    written, until the old marks are gone; then they count again."""
    config = stack_config()
    key = store.profile_key(config.key, "alice")
    _fill_marks(client, key, 100_000, NOW - 2 * 86400)
    saved = client.config_get("slowlog-*")
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 100_000)
    try:
        client.slowlog_reset()
        client.eval("return #redis.call('HGETALL', KEYS[1])", 1, key)
        whole_hash = _calls(client, "EVAL", key)[-1]
        writer = store.ProfileWriter(config)
        client.slowlog_reset()
        now, calls = NOW, 0
        while True:  # over the cap (nothing written) until enough old marks are gone
            written = writer.write(client, {"alice": [occurrence(config, at=now)]}, now)
            calls += 1
            now += 60  # a pruning write at most once a minute per user
            if not written.over_cap:
                break
            assert calls < 1_000, "the old marks are not going"
        writes = _calls(client, "FCALL", key)
    finally:
        for name, value in saved.items():
            client.config_set(name, value)
    p99 = writes[int(len(writes) * 0.99)]
    print(f"whole-hash read {whole_hash} µs; {calls} guarded writes: 99th percentile {p99} µs, slowest"
          f" {writes[-1]} µs")  # fmt: skip
    assert calls > 100  # bounded steps: many calls
    # Each write is a bounded step: even the slowest (a busy box preempts Redis now and then) is less
    # than one read of the whole hash, and 99 % of them take a small fraction of it.
    assert writes[-1] < whole_hash, (writes[-1], whole_hash)
    assert p99 * 10 < whole_hash, (p99, whole_hash)
    assert written.counted == 1  # under the cap again: counted
    assert client.hlen(key) <= store.DEDUP_MARKS_PER_USER + 6
