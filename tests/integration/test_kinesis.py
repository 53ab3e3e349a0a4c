"""Kinesis Data Streams as the events' source (docs/kinesis.md), through boto3 against moto's server:
events posted to the collector are stored in the stream, a `tailor worker` reads its shards and counts
them exactly in Redis, and a worker SIGKILLed mid-stream loses nothing and counts nothing twice once
a new one resumes from the per-shard checkpoints."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from tailor_api import web
from tailor_api.collector import Collector
from tailor_worker import kinesis_source
from test_worker import WorkerProcess, views, wait_until

from tailor.core import kinesis as kinesis_settings
from tailor.devstack import kinesis_emulator, scratch

pytestmark = [pytest.mark.redis, pytest.mark.slow]

USERS = [f"k{i}" for i in range(20)]


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.close()


def serve(collector: Collector) -> httpx.AsyncClient:
    """The collector behind the app's own reply sending (as test_collector.py serves it)."""

    async def app(scope: web.Scope, receive: web.Receive, send: web.Send) -> None:
        await web.send_reply(send, await collector.handle(scope, receive))

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tailor.test")


def events(count: int) -> list[dict[str, Any]]:
    return [{"id": uuid.uuid4().hex, "type": "page_view", "userId": USERS[i % len(USERS)],
             "properties": {"category": "shoes"}} for i in range(count)]  # fmt: skip


async def post(http: httpx.AsyncClient, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 100):
        reply = await http.post("/v1/events", json={"events": items[start : start + 100]})
        assert reply.status_code == 202, reply.text
        assert reply.json()["accepted"] == len(items[start : start + 100])


async def test_posted_events_are_counted_exactly_through_kinesis_across_a_killed_worker(
    kinesis: kinesis_emulator.KinesisEmulator,
    redis_url: str,
    redis_client: redis.Redis,
    workers: list[WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = f"events-{uuid.uuid4().hex[:8]}"
    environment = {**kinesis_emulator.ENVIRONMENT, "TAILOR_EVENTS_SOURCE": "kinesis",
                   "TAILOR_KINESIS_STREAM": stream, "TAILOR_KINESIS_ENDPOINT_URL": kinesis.endpoint,
                   "TAILOR_KINESIS_IDLE_POLL_SECONDS": "0.05",
                   # Small pages (batches of 100 from 2 shards), so the worker is killed mid-stream.
                   "TAILOR_KINESIS_RECORDS_PER_CALL": "50"}  # fmt: skip
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    client = kinesis_settings.KinesisSettings().client()
    client.create_stream(StreamName=stream, ShardCount=2)
    client.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.1})
    # No Kafka anywhere: the stack's topics are never made, its bootstrap is never dialled.
    config = scratch.stack_config("127.0.0.1:9", "kinesis-test")
    await asyncio.to_thread(scratch.publish, redis_url, config, make_topics=False)
    collector = Collector()
    await collector.start(config)
    http = serve(collector)
    first, second = events(1000), events(1000)
    try:
        await post(http, first)
        stored = client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        assert stored["OpenShardCount"] == 2
        worker = WorkerProcess(config.key, redis_url, **environment)
        workers.append(worker)

        def counted() -> dict[str, int]:
            return {user: views(redis_client, config, user) for user in USERS}

        # SIGKILLed mid-stream: some of the first half counted and checkpointed, the rest not yet.
        key = kinesis_source.checkpoint_key(config.key, stream)
        wait_until(lambda: redis_client.hlen(key) > 0, 60, worker.output)
        worker.kill()
        assert sum(counted().values()) < 1000, "not mid-stream: the whole first half was counted"
        await post(http, second)
        await post(http, first[:200])  # a client resending after a lost reply: the same ids

        again = WorkerProcess(config.key, redis_url, **environment)
        workers.append(again)
        expected = dict.fromkeys(USERS, 100)
        wait_until(lambda: counted() == expected, 60, lambda: f"{counted()}\n{again.output()}")

        def outcomes() -> tuple[float, float, float]:
            return (again.metric("tailor_worker_events_consumed_total"),
                    again.metric('tailor_worker_events_processed_total{outcome="counted"}'),
                    again.metric('tailor_worker_events_processed_total{outcome="duplicate"}'))  # fmt: skip

        # Every record it read is counted or a duplicate (the killed worker's last batch, the resent 200)
        wait_until(lambda: outcomes()[0] == outcomes()[1] + outcomes()[2], 10,
                   lambda: f"{outcomes()}\n{again.output()}")  # fmt: skip
        consumed, _, duplicates = outcomes()
        # ... and it resumed after the checkpoints, not from the start of the stream (2,200 records).
        assert consumed < 2200, again.output()
        assert duplicates >= 200
        assert counted() == expected
        assert again.terminate() == 0, again.output()
    finally:
        await http.aclose()
        await collector.close()
        client.delete_stream(StreamName=stream)
        scratch.forget(redis_url, config.key)
