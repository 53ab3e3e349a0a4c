"""`tailor worker` on a Redis Cluster (3 primaries, 3 replicas): a burst counted exactly, and a primary
SIGKILLed mid-stream, its replica promoted, with every acknowledged event counted once
(docs/operating.md#redis-cluster). One worker process per test on the session's cluster."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
import redis
from test_worker import WorkerProcess, event, producer, send, streaming, views, wait_until

from tailor.core.rules.ruleset import StackConfig
from tailor.devstack import scratch
from tailor.devstack.redis_cluster import RedisCluster

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def cluster_client(redis_cluster: RedisCluster) -> Iterator[redis.Redis]:
    client = redis_cluster.target().client()
    try:
        yield client
    finally:
        client.close()


def cluster_stack(bootstrap: str, redis_cluster: RedisCluster) -> StackConfig:
    config = scratch.stack_config(bootstrap, "cluster-test")
    scratch.publish(redis_cluster.url, config, cluster=True)
    return config


def test_a_burst_is_counted_exactly_across_the_primaries_and_a_resend_changes_nothing(
    kafka_bootstrap: str, redis_cluster: RedisCluster, cluster_client: redis.Redis
) -> None:
    config = cluster_stack(kafka_bootstrap, redis_cluster)
    users = [f"u{i}" for i in range(30)]  # spread over the three primaries' slots
    burst = [event(users[i % 30], category="shoes") for i in range(3000)]
    worker = WorkerProcess(config.key, redis_cluster.url, **redis_cluster.environment())
    try:
        send(producer(kafka_bootstrap), config.kafka.events_topic, burst + burst[:300])

        def counts() -> dict[str, int]:
            return {user: views(cluster_client, config, user) for user in users}

        wait_until(
            lambda: counts() == dict.fromkeys(users, 100), 60, lambda: f"{counts()}\n{worker.output()}"
        )
        wait_until(lambda: worker.metric("tailor_worker_dedup_hits_total") == 300, 10, worker.output)
        assert worker.metric("tailor_worker_redis_errors_total") == 0
    finally:
        worker.close()


#: The control (no WAIT: what the promoted replica may lack) runs with TAILOR_FAULTS_ALL=1, as the other
#: fault tests' controls do (docs/operating.md#durability).
WAITS = [
    "1",
    pytest.param("0", marks=pytest.mark.skipif(not os.environ.get("TAILOR_FAULTS_ALL"), reason="control")),
]


@pytest.mark.parametrize("wait_replicas", WAITS, ids=["wait-1", "control-no-wait"])
def test_a_primary_sigkilled_mid_stream_loses_and_doubles_no_acknowledged_event_with_wait(
    kafka_bootstrap: str, redis_cluster: RedisCluster, cluster_client: redis.Redis, wait_replicas: str
) -> None:
    """With TAILOR_WORKER_REDIS_WAIT_REPLICAS=1 a batch's offsets are stored only once each primary's
    replica holds its writes: the replica promoted after the SIGKILL (it was paused for 1.5 s before, so
    the primary held writes it never had) has every event whose offset was stored, and the batches in
    flight are written again (dedup). The killed node comes back as a replica
    (the promoted primary has none meanwhile, so its writes wait: what Kubernetes restarting the pod is).
    The control, without WAIT, may lose what the primary acknowledged but had not sent its replica."""
    config = cluster_stack(kafka_bootstrap, redis_cluster)
    users = [f"k{i}" for i in range(24)]
    slots = {user: redis_cluster.slot_of(f"tailor:{config.key}:{{{user}}}:profile") for user in users}
    victim = redis_cluster.owner(slots[users[0]])
    on_victim = [user for user in users if redis_cluster.owner(slots[user]) is victim]
    replica = redis_cluster.replica_of(victim)
    worker = WorkerProcess(
        config.key,
        redis_cluster.url,
        **redis_cluster.environment(),
        TAILOR_WORKER_REDIS_WAIT_REPLICAS=wait_replicas,
    )
    try:
        # About 2,000 events/s: a backlog the worker counts in seconds once the shard is back.
        with streaming(kafka_bootstrap, config.kafka.events_topic, users, pause=0.1) as acknowledged:
            wait_until(
                lambda: sum(views(cluster_client, config, u) for u in on_victim) > 300, 60, worker.output
            )
            # The replica falls behind, the primary goes on acknowledging alone, then dies:
            # the worst case of asynchronous replication, made certain rather than left to timing.
            # Paused alone, a replica still gets the stream (the kernel buffers it for the stopped
            # process); cut its link too, so the primary's writes reach no replica.
            redis_cluster.pause(replica)
            with victim.client() as raw:
                raw.execute_command("CLIENT KILL TYPE replica")
            time.sleep(1.5)
            redis_cluster.kill(victim)
            redis_cluster.resume(replica)
            killed_at = time.monotonic()
            redis_cluster.wait_promoted(replica)
            promoted_after = time.monotonic() - killed_at
            time.sleep(1.0)  # events go on arriving while the new primary has no replica
            redis_cluster.restart(victim)
            time.sleep(1.0)

        def counts() -> dict[str, int]:
            return {u: views(cluster_client, config, u) for u in users}

        if wait_replicas == "0":
            wait_until(lambda: worker.metric("tailor_worker_consumer_lag") == 0, 90, worker.output)
            time.sleep(1.0)
            lost = {u: acknowledged[u] - counts()[u] for u in users if counts()[u] != acknowledged[u]}
            print(
                f"control: promoted after {promoted_after:.1f} s; lost {lost} of {sum(acknowledged.values())}"
            )
            assert all(counts()[u] <= acknowledged[u] for u in users)  # never twice
            return
        wait_until(
            lambda: counts() == acknowledged, 90, lambda: f"{acknowledged} vs {counts()}\n{worker.output()}"
        )
        print(f"promoted {promoted_after:.1f} s after the SIGKILL; {sum(acknowledged.values())} events")
        assert sum(acknowledged[u] for u in on_victim) > 300
        assert worker.metric("tailor_worker_redis_errors_total") > 0  # the write did meet the dead primary
    finally:
        redis_cluster.resume(replica)
        worker.close()
        redis_cluster.wait_ok()
