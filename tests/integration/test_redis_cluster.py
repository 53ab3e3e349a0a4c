"""The local Redis Cluster (tailor.devstack.redis_cluster) and the clients RedisTarget builds for it:
keys routed to their slot's primary, a live slot migration followed through ASK and MOVED."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable

import pytest
import redis
import sample

from tailor.core import events
from tailor.core.events.occurrence import Occurrence, from_event
from tailor.core.profile import store
from tailor.core.rules import versions
from tailor.core.rules.ruleset import FeatureConfig, KafkaConfig, Ruleset, StackConfig, Window
from tailor.devstack.redis_cluster import PRIMARIES, Node, RedisCluster

NOW = 1_800_000_000.0


def test_the_cluster_has_three_primaries_each_with_a_replica_and_every_slot_served(
    redis_cluster: RedisCluster,
) -> None:
    primaries = [node for node in redis_cluster.nodes if redis_cluster.role(node) == "master"]
    assert len(primaries) == PRIMARIES
    assert {redis_cluster.replica_of(node).index for node in primaries}.isdisjoint(
        node.index for node in primaries
    )
    assert all(node.info("cluster")["cluster_slots_assigned"] == "16384" for node in redis_cluster.nodes)


def test_a_slot_moved_live_is_followed_by_the_targets_client_through_ask_and_moved(
    redis_cluster: RedisCluster,
) -> None:
    client = redis_cluster.target().client(decode_responses=True)
    moving, staying = "tailor:test:{user-moving}:a", "tailor:test:{user-moving}:b"
    others = [f"tailor:test:{{user-{i}}}:n" for i in range(20)]
    for number, key in enumerate([moving, staying, *others]):
        client.set(key, number)
    slot = redis_cluster.slot_of(moving)
    source = redis_cluster.owner(slot)
    destination = next(
        node for node in redis_cluster.nodes if node is not source and redis_cluster.role(node) == "master"
    )
    seen_during: list[str | None] = []

    def while_migrating() -> None:
        # One key already moved: its slot's owner answers ASK for it, and the client follows.
        with source.client() as raw:
            raw.execute_command("MIGRATE", "127.0.0.1", destination.port, moving, 0, 5000)
            with pytest.raises(redis.exceptions.AskError):  # the control: a plain client is sent on
                raw.get(moving)
        seen_during.append(client.get(moving))
        client.set(moving, "written while migrating")

    assert redis_cluster.migrate_slot(slot, destination, between=while_migrating) == 1  # `staying`
    assert seen_during == ["0"]
    assert redis_cluster.owner(slot) is destination
    with source.client() as raw, pytest.raises(redis.exceptions.MovedError):
        raw.get(moving)
    assert client.get(moving) == "written while migrating"
    assert client.get(staying) == "1"
    assert [client.get(key) for key in others] == [str(number) for number in range(2, len(others) + 2)]
    client.delete(moving, staying, *others)
    client.close()


def _burst(config: StackConfig, users: int, each: int) -> dict[str, list[Occurrence]]:
    by_user: dict[str, list[Occurrence]] = {}
    for number in range(users):
        user = f"user-{number}"
        for step in range(each):
            data = {
                "id": uuid.uuid4().hex,
                "type": "page_view",
                "userId": user,
                "sessionId": "s",
                "timestamp": NOW - step,
            }
            event = events.Event.model_validate({**data, "properties": {"category": "shoes"}})
            by_user.setdefault(user, []).append(from_event(event, NOW, config.features.dimensions))
    return by_user


def _config() -> StackConfig:
    return StackConfig(
        namespace=f"ns-{uuid.uuid4().hex[:6]}",
        name="shop",
        kafka=KafkaConfig(bootstrap_servers="unused:9092", events_topic="events", dead_letter_topic="dead"),
        features=FeatureConfig(
            windows=(Window(name="5m", seconds=300, bucket_seconds=10),),
            dimensions=("category",),
            allowed_lateness_seconds=600,
        ),
    )


def test_the_profile_writer_counts_exactly_on_every_primary_and_through_a_slot_migration(
    redis_cluster: RedisCluster,
) -> None:
    client = redis_cluster.target().client()
    store.install(client)
    config = _config()
    burst = _burst(config, users=150, each=3)
    slots = {redis_cluster.slot_of(store.profile_key(config.key, user)) for user in burst}
    assert len({redis_cluster.owner(slot).port for slot in list(slots)[:40]}) == PRIMARIES  # spread out
    writer = store.ProfileWriter(config)
    calls_before = _calls(redis_cluster, "fcall")
    assert writer.write(client, burst, NOW) == store.Written(450, 0, 0)
    # One guard call per primary and few dozen users (store.lua: KEYS), not one per user.
    assert (
        _calls(redis_cluster, "fcall") - calls_before <= 150 // store.ProfileWriter(config).users_per_call + 6
    )
    # A fresh writer (nothing cached) replaying the burst while one user's slot migrates: the users
    # already moved are reached through ASK, the others at the old owner; nothing counts twice.
    moving = store.profile_key(config.key, "user-7")
    slot = redis_cluster.slot_of(moving)
    source = redis_cluster.owner(slot)
    destination = next(
        n for n in redis_cluster.nodes if n is not source and redis_cluster.role(n) == "master"
    )
    replayed: list[store.Written] = []

    def while_migrating() -> None:
        with source.client() as raw:
            raw.execute_command("MIGRATE", "127.0.0.1", destination.port, moving, 0, 5000)
        replayed.append(store.ProfileWriter(config).write(client, burst, NOW))

    redis_cluster.migrate_slot(slot, destination, between=while_migrating)
    assert replayed == [store.Written(0, 450, 0)]
    # After it (MOVED for a writer whose slot map is old): one more event each, counted once.
    more = _burst(config, users=150, each=1)
    assert writer.write(client, more, NOW) == store.Written(150, 0, 0)
    # user-7 went in the old owner's guard call (the writer's map was old): refused there (MOVED for the
    # call, or "not here" for the user) and written on its own at the new owner.
    assert writer.rerouted >= 1
    for user in ("user-0", "user-7", "user-149"):
        profile = store.read(client, config, user, None, NOW)
        assert profile.count("5m", "views", "category", "shoes") == 4, user
    client.close()


def _calls(cluster: RedisCluster, command: str, nodes: list[Node] | None = None) -> int:
    """How many times `command` ran on `nodes` (default: every primary), from INFO commandstats."""
    total = 0
    for node in nodes or [n for n in cluster.nodes if n.running() and cluster.role(n) == "master"]:
        with node.client() as raw:
            total += int(raw.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))
    return total


def test_a_slot_migrating_mid_batch_sends_its_moved_users_on_their_own_and_counts_stay_exact(
    redis_cluster: RedisCluster,
) -> None:
    """A guard call holds the users of one primary. While one user's slot migrates (its profile already
    moved), the old owner refuses that user in the call and writes the others; the writer sends it again
    on its own, ASK takes it to the new owner, and WAIT is sent there too. When the moved user is the
    key the call declares, the whole call meets ASK, which is not followed for several users: each is
    sent on its own."""
    client = redis_cluster.target().client()
    store.install(client)
    config = _config()
    burst = _burst(config, users=60, each=1)
    moving = store.profile_key(config.key, "user-7")
    slot = redis_cluster.slot_of(moving)
    source = redis_cluster.owner(slot)
    on_source = [
        u
        for u in burst
        if redis_cluster.owner(redis_cluster.slot_of(store.profile_key(config.key, u))) is source
    ]
    others = [u for u in on_source if u != "user-7"]
    assert 4 <= len(others) < 32  # one call per batch to the source: user-7 is first in it, or not
    writer = store.ProfileWriter(config, wait_replicas=1)
    assert writer.write(client, {u: burst[u] for u in on_source}, NOW).counted == len(on_source)  # cached
    destination = next(
        n for n in redis_cluster.nodes if n is not source and redis_cluster.role(n) == "master"
    )
    written: list[store.Written] = []
    waits: list[int] = []

    def while_migrating() -> None:
        with source.client() as raw:
            raw.execute_command("MIGRATE", "127.0.0.1", destination.port, moving, 0, 5000)
        waits.append(_calls(redis_cluster, "wait", [destination]))
        for order in (["user-7", *others], [*others[:2], "user-7", *others[2:]]):
            more = _burst(config, users=60, each=1)
            written.append(writer.write(client, {u: more[u] for u in order}, NOW))
            waits.append(_calls(redis_cluster, "wait", [destination]))

    redis_cluster.migrate_slot(slot, destination, between=while_migrating)
    assert written == [store.Written(len(on_source), 0, 0)] * 2
    # First batch: the call declared user-7 and met ASK, so all its users went on their own; second: the
    # old owner refused user-7 alone.
    assert writer.rerouted == len(on_source) + 1
    # Only redirects reached the new owner (none of these users is its own): WAIT followed them.
    assert [b - a for a, b in itertools.pairwise(waits)] == [1, 1]
    for user in on_source:
        assert store.read(client, config, user, None, NOW).count("5m", "views", "category", "shoes") == 3, (
            user
        )
    client.close()


def test_a_published_ruleset_reaches_a_follower_through_sharded_pub_sub_within_a_second(
    redis_cluster: RedisCluster,
) -> None:
    """The poll is 60 s: only the SPUBLISH in the publish's MULTI/EXEC can bring each version."""

    async def scenario() -> list[float]:
        client = redis_cluster.target().async_client()
        stack = f"t-{uuid.uuid4().hex[:8]}/main"
        first = await versions.publish(client, sample.shop(stack))
        seen: dict[int, float] = {}
        looks = 0

        def served(ruleset: Ruleset) -> None:
            seen.setdefault(ruleset.version, time.monotonic())

        def looked(_: int) -> None:
            nonlocal looks
            looks += 1

        follower = asyncio.create_task(
            versions.follow(
                client, stack, served, poll_seconds=60, on_published=looked,
            )
        )  # fmt: skip
        delays = []
        try:
            await _until(lambda: first.version in seen)
            await asyncio.sleep(0.5)
            assert looks <= 2  # idle: no busy polling of the shard
            base = sample.shop(stack)
            for number in range(3):
                changed = base.model_copy(update={"rules": base.rules if number % 2 else ()})
                began = time.monotonic()
                published = await versions.publish(client, changed)
                await _until(lambda: published.version in seen)  # noqa: B023
                delays.append(seen[published.version] - began)
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await client.aclose()
        return delays

    delays = asyncio.run(scenario())
    assert len(delays) == 3
    assert max(delays) < 1.0, delays


async def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5.0
    while not condition():
        assert time.monotonic() < deadline, "not seen in time"
        await asyncio.sleep(0.005)
