"""Readiness that matches each route (issue 13, item 6), on the real broker stopped and started again.

While Kafka is away, decisions keep answering 200 and /readyz stays 200 (Kafka is reported in its
body, not required), so no replica leaves its Service; POST /v1/events answers 503 with Retry-After and
a problem that says Kafka did not acknowledge, and /readyz/collector (for monitors) says 503. Once the
broker is back, the same events are accepted and the worker counts them. Both ways of serving: the
collector inside the content API's processes (`together`), and apart (`tailor api --routes decide`
beside `--routes collect`, as the operator runs them with spec.contentApi.collector.separate), where
the decisions process has no Kafka client at all and each answers for the other's routes with 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import sample
from pipeline_harness import (
    Broker,
    Pipeline,
    Process,
    metric,
    running_pipeline,
    scrape,
    session_broker,
    start_api,
    wait_ready,
    wait_until,
)

from tailor import devstack
from tailor.core.rules import ruleset, versions
from tailor.devstack import scratch

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

# Kafka checked every second by readiness, and a 2 s delivery timeout: the outage shows quickly.
QUICK = {"TAILOR_KAFKA_CHECK_SECONDS": "1", "TAILOR_COLLECTOR_DELIVERY_TIMEOUT_SECONDS": "2"}
ANSWER_WITHIN_SECONDS = 2 + 5 + 3  # delivery timeout, the collector's margin, slack for a busy box


@dataclass
class Serving:
    pipeline: Pipeline
    apart: bool
    decide_url: str
    events_url: str
    collector: Process | None  # the collector of its own, when apart

    def outputs(self) -> str:
        collector = f"\n--- collector ---\n{self.collector.output()}" if self.collector else ""
        return self.pipeline.outputs() + collector

    @property
    def events_process(self) -> Process:
        return self.collector or self.pipeline.api

    @property
    def decide_admin(self) -> str:
        """The admin port (readiness, metrics) of the replica that decides."""
        return self.pipeline.api.admin_url

    @property
    def events_admin(self) -> str:
        """The admin port of the replica that collects events."""
        return self.events_process.admin_url


def publish_slot(redis_url: str, config: ruleset.StackConfig) -> None:
    """A ruleset with one slot (`hero`, served by its fallback), on `config`'s Kafka settings."""
    published = sample.build([sample.html_variant("hero-default", "hero", fallback=True)], [],
                             stack=config.key, config=config)  # fmt: skip

    async def publish() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            await versions.publish(client, published)
        finally:
            await client.aclose()

    asyncio.run(publish())


@pytest.fixture
def broker(stack: devstack.Stack, kafka_bootstrap: str) -> Iterator[Broker]:
    with session_broker(stack, kafka_bootstrap) as running:
        yield running


@contextlib.contextmanager
def serving(kafka_bootstrap: str, redis_url: str, apart: bool) -> Iterator[Serving]:
    """A fresh stack's API and worker (and, apart, its collector of its own), ready to collect."""
    config = scratch.stack_config(kafka_bootstrap, "routes-test", windows=(scratch.ONE_HOUR,))
    api_args = ("--routes", "decide") if apart else ()
    with running_pipeline(config, redis_url, {}, api_args=api_args, api_env=QUICK) as pipeline:
        publish_slot(redis_url, config)
        collector: Process | None = None
        events_url = pipeline.api_url
        if apart:
            collector, events_url = start_api(config, redis_url, "--routes", "collect", env=QUICK)
        served = Serving(pipeline, apart, pipeline.api_url, events_url, collector)
        try:
            if collector is not None:
                wait_ready(collector.admin_url, collector, served.outputs, "/readyz/collector")
            yield served
        finally:
            if collector is not None:
                collector.close()


@pytest.fixture
def both(kafka_bootstrap: str, redis_url: str) -> Iterator[list[Serving]]:
    """Both ways of serving at once, so that one broker outage tests both."""
    with (
        serving(kafka_bootstrap, redis_url, False) as together,
        serving(kafka_bootstrap, redis_url, True) as apart,
    ):
        yield [together, apart]


def readiness(url: str, path: str = "/readyz") -> tuple[int, dict[str, Any]]:
    reply = httpx.get(f"{url}{path}", timeout=5)
    return reply.status_code, reply.json()


def decide(url: str, user: str) -> httpx.Response:
    return httpx.get(f"{url}/v1/decide", params={"slot": "hero", "user": user}, timeout=5)


def post_events(url: str, batch: list[dict[str, Any]]) -> httpx.Response:
    return httpx.post(f"{url}/v1/events", json={"events": batch}, timeout=ANSWER_WITHIN_SECONDS + 5)


def page_views(user: str, n: int) -> list[dict[str, Any]]:
    return [{"id": uuid.uuid4().hex, "type": "page_view", "userId": user, "sessionId": "s1",
             "properties": {"category": "shoes"}} for _ in range(n)]  # fmt: skip


def kafka_threads(pid: int) -> list[str]:
    """librdkafka's threads (named rdk:*) in the process and its children (granian serves from a child)."""
    names: list[str] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            name = (task / "comm").read_text().strip()
            if name.startswith("rdk:"):
                names.append(name)
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return names
    return names + [name for child in children for name in kafka_threads(int(child))]


def before_the_outage(serving: Serving, user: str) -> None:
    """Decisions and events served, the collector reaching Kafka; who holds a Kafka client."""
    explain = serving.outputs
    wait_until(lambda: decide(serving.decide_url, user).status_code == 200, 30, explain)
    first = page_views(user, 2)
    wait_until(lambda: post_events(serving.events_url, first).status_code == 202, 30, explain)
    wait_until(lambda: readiness(serving.events_admin, "/readyz/collector")[0] == 200, 30, explain)
    assert metric(scrape(f"{serving.events_admin}/metrics"), "tailor_collector_kafka_up") == 1
    # Who holds a Kafka client: every API process together; apart, the collector and only it.
    if not serving.apart:
        assert kafka_threads(serving.pipeline.api.process.pid), explain()
        return
    assert kafka_threads(serving.pipeline.api.process.pid) == [], explain()
    assert kafka_threads(serving.events_process.process.pid), explain()
    misrouted = post_events(serving.decide_url, first)
    assert misrouted.status_code == 503
    assert misrouted.headers["retry-after"] == "2"
    assert misrouted.json()["type"].endswith("/served-elsewhere")
    assert f"{serving.pipeline.config.name}-collector" in misrouted.json()["detail"]
    assert decide(serving.events_url, user).status_code == 503
    assert httpx.get(f"{serving.decide_admin}/readyz/collector", timeout=5).status_code == 404
    _, body = readiness(serving.decide_admin)
    assert set(body["checks"]) == {"ruleset", "redis"}, body
    _, body = readiness(serving.events_admin)
    assert body["routes"] == "collect"
    assert {n for n, check in body["checks"].items() if check["required"]} == {"ruleset", "collector"}


def while_kafka_is_away(serving: Serving, user: str, batch: list[dict[str, Any]]) -> None:
    explain = serving.outputs

    def kafka_reported_down() -> bool:
        _, body = readiness(serving.events_admin)
        return body["checks"]["kafka"]["ok"] is False

    # Readiness notices (its background check of Kafka), and stays 200 everywhere.
    wait_until(kafka_reported_down, 30, explain)
    for url in {serving.decide_admin, serving.events_admin}:
        status, body = readiness(url)
        assert status == 200, body
        assert body["ready"] is True
    _, body = readiness(serving.events_admin)
    assert body["checks"]["kafka"] == {"ok": False, "detail": body["checks"]["kafka"]["detail"],
                                       "required": False}  # fmt: skip
    # What failed, without the brokers' address (it is in the log; readiness bodies can reach clients).
    assert "Kafka at" not in body["checks"]["kafka"]["detail"]
    assert serving.pipeline.config.kafka.bootstrap_servers not in str(body)
    status, body = readiness(serving.events_admin, "/readyz/collector")
    assert (status, body["ready"]) == (503, False), body
    assert metric(scrape(f"{serving.events_admin}/metrics"), "tailor_collector_kafka_up") == 0

    for _ in range(3):
        decided = decide(serving.decide_url, user)
        assert decided.status_code == 200, decided.text
        assert "hero-default" in str(decided.json()["decisions"][0]["content"])  # the fallback's

    started = time.monotonic()
    refused = post_events(serving.events_url, batch)
    took = time.monotonic() - started
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"] == "2"
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["type"].endswith("/kafka-unavailable")
    assert problem["detail"].startswith("Kafka did not acknowledge the events ("), problem
    assert "send the whole batch again" in problem["detail"]
    assert took < ANSWER_WITHIN_SECONDS, took


def after_the_outage(serving: Serving, user: str, batch: list[dict[str, Any]]) -> None:
    """The same batch is accepted (its ids unchanged, as a browser resends it), and counted once."""
    explain = serving.outputs
    wait_until(lambda: post_events(serving.events_url, batch).status_code == 202, 60, explain)
    wait_until(lambda: readiness(serving.events_admin, "/readyz/collector")[0] == 200, 30, explain)
    events_metrics = f"{serving.events_admin}/metrics"
    assert metric(scrape(events_metrics), "tailor_collector_kafka_up") == 1
    assert metric(scrape(events_metrics), "tailor_collector_unavailable_total") >= 1
    wait_until(lambda: serving.pipeline.views(user, "1h") == 5, 60, explain)
    time.sleep(1.0)
    assert serving.pipeline.views(user, "1h") == 5  # each event once, resends deduplicated
    assert serving.pipeline.api.alive, explain()
    assert serving.events_process.alive, explain()


def test_while_kafka_is_away_decisions_stay_ready_and_events_get_503_until_it_is_back(
    broker: Broker, both: list[Serving]
) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    for serving in both:
        before_the_outage(serving, user)
    batch = page_views(user, 3)
    broker.stop()
    try:
        for serving in both:
            while_kafka_is_away(serving, user, batch)
    finally:
        broker.start()
    for serving in both:
        after_the_outage(serving, user, batch)
