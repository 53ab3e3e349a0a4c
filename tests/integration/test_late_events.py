"""Late events on the real broker and Redis (issue 19): an event the collector accepts is counted in
every window that holds its timestamp, however late it arrives; one that no window can hold is
accepted to the topic, named in the 202 as not counted, and counted in metrics; and replaying the
same events — resent by a client, or re-read from Kafka a day later — changes nothing.

The stack is what the operator compiles from a PersonalizationStack that sets nothing but Kafka:
windows 5m, 30m and 24h, and the default allowed lateness.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from pipeline_harness import Pipeline, read_topic, running_pipeline, wait_until
from tailor_worker import batch

from tailor.core.profile import store
from tailor.devstack import scratch

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

DAY = 86400
# Seconds before the post each event is stamped, and the windows that hold it then: a 5m window of 5 s
# buckets holds 4 min 55 s to 5 min back, a 30m one of 30 s buckets 29 min 30 s to 30 min, 24h 23h36m
# to 24h — the ages below are far from those edges.
AGES = {"45s": 45, "4m": 240, "20m": 1200, "2h": 7200, "2d": 2 * DAY}
HELD_BY = {"45s": {"5m", "30m", "24h"}, "4m": {"5m", "30m", "24h"}, "20m": {"30m", "24h"}, "2h": {"24h"},
           "2d": set()}  # fmt: skip
WINDOWS = ("5m", "30m", "24h")


@pytest.fixture
def pipeline(kafka_bootstrap: str, redis_url: str) -> Iterator[Pipeline]:
    config = scratch.compiled_stack_config(kafka_bootstrap, "late-events", partitions=2)
    assert [w.name for w in config.features.windows] == list(WINDOWS)
    with running_pipeline(config, redis_url, {"TAILOR_WORKER_POLL_SECONDS": "0.1"}) as running:
        yield running


def aged_views(user: str, now: float) -> list[dict[str, Any]]:
    """One page view per age, each of its own category (named after its age)."""
    return [
        {"id": uuid.uuid4().hex, "type": "page_view", "userId": user, "sessionId": "s1",
         "timestamp": now - age, "properties": {"category": name}}
        for name, age in AGES.items()
    ]  # fmt: skip


def counted_by_window(profile: dict[str, Any]) -> dict[str, set[str]]:
    """For each age, the windows whose count includes its event."""
    found: dict[str, set[str]] = {name: set() for name in AGES}
    for window in WINDOWS:
        for name in AGES:
            if profile["counts"][window].get(f"views|category|{name}", 0):
                found[name].add(window)
    return found


def profile_keys(client: redis.Redis, stack: str) -> dict[bytes, dict[bytes, bytes]]:
    """Every Redis hash the stack's users have, whole: what a replay must leave as it is."""
    return {
        key: client.hgetall(key)
        for key in sorted(client.scan_iter(match=f"tailor:{stack}:*", count=1000))
        if client.type(key) == b"hash"
    }


def test_late_events_count_in_exactly_the_windows_that_hold_them(
    pipeline: Pipeline, kafka_bootstrap: str, redis_url: str
) -> None:
    user = f"late-{uuid.uuid4().hex[:6]}"
    views = aged_views(user, time.time())
    with httpx.Client(base_url=pipeline.api_url, timeout=10) as http:
        reply = http.post("/v1/events", json={"events": views})
        assert reply.status_code == 202, reply.text
        answer = reply.json()
        # All accepted to the topic; the one no window can hold is named, with its reason.
        assert answer["accepted"] == len(AGES)
        assert answer["rejected"] == []
        assert [(item["index"], item["id"], item["reason"]) for item in answer["notCounted"]] == [
            (4, views[4]["id"], "late")
        ]
        assert "24h" in answer["notCounted"][0]["message"], answer

        def counted() -> int:
            return int(pipeline.profile(user)["counts"]["24h"].get("views", 0))  # type: ignore[index]

        wait_until(lambda: counted() == 4, 30, pipeline.outputs)
        assert counted_by_window(pipeline.profile(user)) == HELD_BY
        assert pipeline.worker_metric('tailor_worker_events_processed_total{outcome="late"}') == 1
        assert pipeline.api_metric('tailor_events_not_counted_total{reason="late"}') == 1

        # The same batch sent again (a client that never saw the 202): nothing changes.
        client = redis.Redis.from_url(redis_url)
        try:
            stored = profile_keys(client, pipeline.config.key)
            duplicates = 'tailor_worker_events_processed_total{outcome="duplicate"}'
            assert http.post("/v1/events", json={"events": views}).status_code == 202
            wait_until(lambda: pipeline.worker_metric(duplicates) == 4, 30, pipeline.outputs)
            assert profile_keys(client, pipeline.config.key) == stored
            assert counted_by_window(pipeline.profile(user)) == HELD_BY

            # The topic re-read by the worker's own code an hour and a day later (a new consumer
            # group, a reset offset): the events are duplicates, then too old; nothing changes.
            config = pipeline.config
            messages = read_topic(kafka_bootstrap, config.kafka.events_topic, config.kafka.partitions)
            assert len(messages) == 2 * len(AGES)
            writer = store.ProfileWriter(config)
            for later in (3600, DAY + 60):
                now = time.time() + later
                work = batch.classify(messages, config.features, now)
                assert work.late == 2  # judged against the Kafka timestamps, as the first time
                written = writer.write(client, work.by_user, now, work.partition_of)
                assert written.counted == 0, (later, written)
                assert profile_keys(client, config.key) == stored
        finally:
            client.close()
