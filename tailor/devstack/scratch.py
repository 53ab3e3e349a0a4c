"""Throwaway stacks for tests and benchmarks of the event pipeline: a config with topics of its own,
and its ruleset published (no rules) as the operator would, so that a collector or `tailor worker`
can follow it without a kube-apiserver."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

from tailor.core import kafkaclient, redis_target, topics
from tailor.core.rules import compiler, signing, specs, versions
from tailor.core.rules.ruleset import ApiConfig, FeatureConfig, KafkaConfig, Ruleset, StackConfig, Window

FIVE_MINUTES = Window(name="5m", seconds=300, bucket_seconds=10)
ONE_HOUR = Window(name="1h", seconds=3600, bucket_seconds=60)
ONE_DAY = Window(name="24h", seconds=86400, bucket_seconds=3600)


def stack_config(
    bootstrap: str,
    namespace: str,
    *,
    prefix: str = "",
    partitions: int = 3,
    windows: tuple[Window, ...] = (FIVE_MINUTES, ONE_DAY),
    dimensions: tuple[str, ...] = ("category",),
    allowed_lateness_seconds: int | None = None,
    **api: Any,
) -> StackConfig:
    """A stack named at random in `namespace`, with its own events and dead-letter topics (their names
    start with `prefix`); `api`: ApiConfig fields. Lateness and dedup as the compiler derives them."""
    suffix = uuid.uuid4().hex[:8]
    return StackConfig(
        namespace=namespace,
        name=suffix,
        kafka=KafkaConfig(
            bootstrap_servers=bootstrap,
            events_topic=f"{prefix}events-{suffix}",
            dead_letter_topic=f"{prefix}dead-{suffix}",
            partitions=partitions,
        ),
        features=FeatureConfig(
            windows=windows,
            dimensions=dimensions,
            allowed_lateness_seconds=compiler.lateness_seconds(windows, allowed_lateness_seconds),
            dedup_ttl_seconds=compiler.dedup_ttl_seconds(windows),
        ),
        api=ApiConfig(**api),
    )


def compiled_stack_config(bootstrap: str, namespace: str, *, partitions: int = 3, **spec: Any) -> StackConfig:
    """What the operator makes of a PersonalizationStack with the given spec fields (camelCase, beside
    `kafka.bootstrapServers`; the rest defaulted as a user's would be), named at random, with topics of
    its own."""
    suffix = uuid.uuid4().hex[:8]
    source = {"kafka": {"bootstrapServers": bootstrap}, "redis": {}, **spec}
    config = compiler.stack_config(namespace, suffix, specs.StackSpec.model_validate(source))
    topics_of_its_own = {"events_topic": f"events-{suffix}", "dead_letter_topic": f"dead-{suffix}"}
    kafka = config.kafka.model_copy(update={**topics_of_its_own, "partitions": partitions})
    return config.model_copy(update={"kafka": kafka})


def publish(
    redis_url: str,
    config: StackConfig,
    secrets_dir: Path = kafkaclient.DEFAULT_SECRETS_DIR,
    *,
    make_topics: bool = True,
    cluster: bool = False,
) -> None:
    """Publish the stack's ruleset, and (unless told not to) create its topics as the operator would
    before any event (`secrets_dir`: where the Secret keys its Kafka security names are, as
    TAILOR_KAFKA_SECRETS_DIR; `cluster`: `redis_url` is a Redis Cluster's node)."""
    kafka = config.kafka
    if make_topics:
        client = kafkaclient.client_config(kafka, secrets_dir)
        wanted = [
            topics.Topic(name, kafka.partitions) for name in (kafka.events_topic, kafka.dead_letter_topic)
        ]
        topics.reconcile(client, wanted)  # topics.ensure, with the stack's security

    async def publish_ruleset() -> None:
        client = (
            redis_target.RedisTarget.parse(redis_url, mode=redis_target.CLUSTER).async_client()
            if cluster
            else aioredis.Redis.from_url(redis_url)
        )
        try:
            # Signed with TAILOR_RULESET_SIGNING_KEY when set (a stack's own key), else the development key.
            signer = signing.signer_from_text(os.environ.get(signing.ENV_SIGNING_KEY))
            await versions.publish(
                client, Ruleset(stack=config.key, config=config, variants={}, rules=()), signer
            )
        finally:
            await client.aclose()

    asyncio.run(publish_ruleset())


def forget(redis_url: str, stack: str) -> None:
    """Delete every Redis key of `stack` (namespace/name): what a run left in a shared Redis."""
    client = redis.Redis.from_url(redis_url)
    try:
        for pattern in (f"tailor:{stack}:*", f"tailor:{{{stack}}}:*"):
            batch: list[bytes] = []
            for key in client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    client.unlink(*batch)
                    batch.clear()
            if batch:
                client.unlink(*batch)
    finally:
        client.close()
