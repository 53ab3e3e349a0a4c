"""The operator with a stack whose Redis is a Redis Cluster (`spec.redis.mode: cluster`), against the real
kube-apiserver and the session's local cluster: it publishes the ruleset into the stack's slot, a
follower subscribed by sharded pub/sub sees each version at once, and the pods are told cluster mode."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client
from test_operator import Operator, apply, crds, shop_documents, the_stack, wait_for

from tailor.core.rules import versions
from tailor.core.rules.ruleset import Ruleset
from tailor.devstack.redis_cluster import RedisCluster

__all__ = ["crds"]  # a fixture, used by name
pytestmark = [pytest.mark.kube, pytest.mark.redis, pytest.mark.slow]


class Follower:
    """versions.follow on the cluster in a thread of its own, with a 60 s poll: a version seen within
    seconds came by the sharded notification."""

    def __init__(self, cluster: RedisCluster, stack: str) -> None:
        self.seen: dict[int, float] = {}
        self.loop = asyncio.new_event_loop()
        self.cluster, self.stack = cluster, stack
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),), daemon=True)
        self.task: asyncio.Task[None] | None = None
        self.thread.start()

    async def _run(self) -> None:
        client = self.cluster.target().async_client()

        def served(ruleset: Ruleset) -> None:
            self.seen.setdefault(ruleset.version, time.monotonic())

        self.task = asyncio.current_task()
        try:
            await versions.follow(client, self.stack, served, poll_seconds=60)
        except asyncio.CancelledError:
            pass
        finally:
            await client.aclose()

    def stop(self) -> None:
        if self.task is not None:
            self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


def test_the_operator_publishes_into_the_stacks_slot_and_a_sharded_follower_sees_each_version(
    crds: None,
    kubeconfig: Path,
    tmp_path: Path,
    kubectl: Callable[..., Any],
    kube_api: k8s_client.ApiClient,
    namespace: str,
    kafka_bootstrap: str,
    redis_cluster: RedisCluster,
) -> None:
    documents = shop_documents(kafka_bootstrap=kafka_bootstrap)
    the_stack(documents)["spec"]["redis"] = {"url": redis_cluster.url, "mode": "cluster"}
    key = f"{namespace}/shop"
    follower = Follower(redis_cluster, key)
    operator = Operator(kubeconfig, tmp_path / "operator.log", "--namespace", namespace, "--standalone")
    try:
        apply(kubectl, namespace, documents)
        client = redis_cluster.target().client()

        def seen_with(rules: int) -> Ruleset | None:
            current = versions.load_sync(client, key)
            matches = current is not None and len(current.rules) == rules and current.version in follower.seen
            return current if matches else None

        published = wait_for("the ruleset published and seen by the follower", lambda: seen_with(5))
        # The keys are where the stack's slot is: one primary holds them all, the channel too.
        assert redis_cluster.slot_of(versions.current_key(key)) == redis_cluster.slot_of(
            versions.channel(key)
        )

        rule = next(doc for doc in documents if doc["kind"] == "PersonalizationRule")
        changed = time.monotonic()
        kubectl("delete", "-n", namespace, "personalizationrule", rule["metadata"]["name"])
        republished = wait_for("the next version seen by the follower", lambda: seen_with(4))
        assert republished.version > published.version
        assert follower.seen[republished.version] - changed < 30  # by the notification, not the 60 s poll
        client.close()

        api = k8s_client.AppsV1Api(kube_api).read_namespaced_deployment("shop-api", namespace).to_dict()
        env = {e["name"]: e for e in api["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["TAILOR_REDIS_MODE"]["value"] == "cluster"
        assert operator.process.poll() is None, operator.output()
    finally:
        follower.stop()
        operator.stop()
