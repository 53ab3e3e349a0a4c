"""Shared pieces of the event-pipeline benchmarks (collector.py, worker.py, freshness.py).

They run against the stack in the environment (`eval "$(tailor dev env)"`: TAILOR_KAFKA_BOOTSTRAP and
TAILOR_REDIS_URL), publish a ruleset for a fresh bench stack, and start real `tailor api` /
`tailor worker` processes. CPU is read from /proc for a process and its children (granian serves
from a child process), so "per core" figures are events per CPU-second actually spent.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tailor.core import kafkaclient, redis_target, topics
from tailor.core.rules import versions
from tailor.core.rules.ruleset import Ruleset, StackConfig, Window
from tailor.devstack import scratch

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


def environment() -> tuple[str, str]:
    kafka, redis_url = os.environ.get("TAILOR_KAFKA_BOOTSTRAP"), os.environ.get("TAILOR_REDIS_URL")
    if not kafka or not redis_url:
        sys.exit('set TAILOR_KAFKA_BOOTSTRAP and TAILOR_REDIS_URL first: eval "$(tailor dev env)"')
    return kafka, redis_url


def stack_config(kafka: str, partitions: int = 6) -> StackConfig:
    return scratch.stack_config(
        kafka,
        "bench",
        prefix="bench-",
        partitions=partitions,
        windows=(scratch.FIVE_MINUTES, Window(name="30m", seconds=1800, bucket_seconds=60), scratch.ONE_DAY),
        dimensions=("category", "productId", "query"),
        max_batch_events=500,
    )


def publish(
    target: redis_target.RedisTarget,
    config: StackConfig,
    kafka_secrets: Path = kafkaclient.DEFAULT_SECRETS_DIR,
) -> None:
    """scratch.publish on any Redis target (TLS, an ACL user): the topics made, the ruleset published.
    `kafka_secrets`: where the Secret keys of the stack's Kafka security are."""
    kafka = config.kafka
    client = kafkaclient.client_config(kafka, kafka_secrets)
    wanted = [topics.Topic(name, kafka.partitions) for name in (kafka.events_topic, kafka.dead_letter_topic)]
    topics.reconcile(client, wanted)  # topics.ensure, with the stack's security

    async def publish_ruleset() -> None:
        client = target.async_client()
        try:
            await versions.publish(client, Ruleset(stack=config.key, config=config, variants={}, rules=()))
        finally:
            await client.aclose()

    asyncio.run(publish_ruleset())


def cleanup(redis_url: str, config: StackConfig) -> None:
    """Remove what a run left: the bench stack's Redis keys and its topics (the stack is shared)."""
    scratch.forget(redis_url, config.key)
    delete_topics(config)


def delete_topics(config: StackConfig, kafka_secrets: Path = kafkaclient.DEFAULT_SECRETS_DIR) -> None:
    from confluent_kafka import admin

    kafka = config.kafka
    kafka_admin = admin.AdminClient(kafkaclient.client_config(kafka, kafka_secrets))  # alive until done
    futures = kafka_admin.delete_topics([kafka.events_topic, kafka.dead_letter_topic], operation_timeout=30)
    for future in futures.values():
        try:
            future.result(30)
        except Exception as error:  # already gone, or the broker is busy: nothing to undo
            print(f"[cleanup] {error}", file=sys.stderr)


CATEGORIES = ("shoes", "hats", "bags", "socks", "coats", "belts")


def shopper_event(user: str, now: float | None = None) -> dict[str, Any]:
    """A realistic event: mostly page views with a category and product, some searches and carts."""
    kind = random.choices(("page_view", "click", "add_to_cart", "search"), (6, 2, 1, 1))[0]
    properties: dict[str, Any] = {
        "category": random.choice(CATEGORIES),
        "productId": f"sku-{random.randrange(500)}",
    }
    if kind == "search":
        properties = {"query": random.choice(("red shoes", "wool hat", "leather bag", "socks"))}
    return {
        "id": uuid.uuid4().hex,
        "type": kind,
        "userId": user,
        "sessionId": f"s-{user}",
        "timestamp": now if now is not None else time.time(),
        "page": {
            "url": "https://shop.example/p/sku-1",
            "referrer": "https://shop.example/",
            "title": "Product",
        },
        "properties": properties,
        "context": {"device": "mobile", "locale": "en-US", "userAgent": "Mozilla/5.0 (bench)"},
    }


def tailor(
    args: Sequence[str], redis: str | redis_target.RedisTarget, log: Path, **env: str
) -> subprocess.Popen[bytes]:
    """A `tailor` command on `redis` (a URL, or a target with its credentials and TLS files)."""
    reach = (
        redis.environment() if isinstance(redis, redis_target.RedisTarget) else {"TAILOR_REDIS_URL": redis}
    )
    return subprocess.Popen(
        [sys.executable, "-m", "tailor.cli.main", *args],
        env={**os.environ, **reach, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer 200 within {timeout}s")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of `pid` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        child, parent = int(entry), int(fields[1])
        children.setdefault(parent, []).append(child)
        cpu[child] = (int(fields[11]) + int(fields[12])) / TICKS
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        total += cpu.get(current, 0.0)
        stack.extend(children.get(current, ()))
    return total


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def table(rows: Sequence[Sequence[object]]) -> None:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for number, row in enumerate(rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if number == 0:
            print("  ".join("-" * width for width in widths))
