"""The local Redis Cluster (tailor.devstack.redis_cluster) and the clients RedisTarget builds for it:
keys routed to their slot's primary, a live slot migration followed through ASK and MOVED."""

from __future__ import annotations

import pytest
import redis

from tailor.devstack.redis_cluster import PRIMARIES, RedisCluster


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
