"""POST /v1/events on the real broker: what is accepted reaches Kafka as CloudEvents, what is not is
explained per field, and nothing of a good batch is lost beside a bad event."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.admin import AdminClient
from prometheus_client import REGISTRY
from tailor_api import web
from tailor_api.collector import Collector

from tailor.core import topics
from tailor.core.rules.ruleset import StackConfig
from tailor.devstack import scratch

pytestmark = pytest.mark.kafka


def collector_stack(bootstrap: str, *, made: bool = True, **api: Any) -> StackConfig:
    """A stack of its own, its topics made as the operator makes them (the collector only checks)."""
    config = scratch.stack_config(
        bootstrap,
        "collector-test",
        partitions=2,
        windows=(scratch.FIVE_MINUTES,),
        allowed_lateness_seconds=60,
        **api,
    )
    if made:
        kafka = config.kafka
        topics.ensure(bootstrap, [kafka.events_topic, kafka.dead_letter_topic], kafka.partitions)
    return config


async def serve(collector: Collector) -> httpx.AsyncClient:
    """The collector behind the app's own reply sending, without the rest of the app (no Redis)."""

    async def app(scope: web.Scope, receive: web.Receive, send: web.Send) -> None:
        await web.send_reply(send, await collector.handle(scope, receive))

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tailor.test")


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 15.0) -> list[Message]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    found: list[Message] = []
    try:
        deadline = timeout
        while len(found) < expected and deadline > 0:
            batch = consumer.consume(expected - len(found), timeout=1.0)
            found += [m for m in batch if m.error() is None]
            deadline -= 1.0
        found += [m for m in consumer.consume(10, timeout=1.0) if m.error() is None]  # nothing more?
    finally:
        consumer.close()
    return found


def event(**fields: Any) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "type": "page_view", "userId": "alice", **fields}


async def test_good_events_reach_kafka_as_cloudevents_beside_bad_ones(kafka_bootstrap: str) -> None:
    config = collector_stack(kafka_bootstrap)
    collector = Collector()
    await collector.start(config)
    good = [
        event(properties={"category": "shoes"}, timestamp="2026-11-29T10:00:00.000Z"),
        event(anonymousId="anon-1", userId=None),
        event(type="search", properties={"query": "red"}),
    ]
    good[1].pop("userId")
    batch = [good[0], {"id": "x", "type": "hover", "userId": "a"}, good[1], {"type": "click"}, good[2]]
    try:
        async with await serve(collector) as client:
            response = await client.post("/v1/events", json={"events": batch})
    finally:
        await collector.close()

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 3
    assert [item["index"] for item in body["rejected"]] == [1, 3]
    assert {e["field"] for e in body["rejected"][0]["errors"]} == {"type"}
    assert {e["field"] for e in body["rejected"][1]["errors"]} == {"id", "userId"}

    messages = read_topic(kafka_bootstrap, config.kafka.events_topic, 3)
    assert len(messages) == 3
    by_id = {orjson.loads(m.value() or b"")["id"]: m for m in messages}
    assert set(by_id) == {e["id"] for e in good}
    first = by_id[good[0]["id"]]
    headers = dict(first.headers() or [])
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"] == good[0]["id"].encode()
    assert headers["ce_type"] == b"dev.tailor.event.page_view"
    assert headers["ce_time"] == b"2026-11-29T10:00:00.000Z"
    assert headers["ce_source"] == f"/tailor/{config.key}".encode()
    assert headers["content-type"] == b"application/json"
    assert first.key() == b"alice"
    assert by_id[good[1]["id"]].key() == b"anon-1"  # anonymous users are keyed by their cookie id
    stamped = orjson.loads(by_id[good[2]["id"]].value() or b"")
    assert stamped["timestamp"].endswith("Z")  # filled in at collection


async def test_ids_the_api_could_never_decide_on_are_refused(kafka_bootstrap: str) -> None:
    """Users, sessions and event ids follow /v1/decide's grammar: no profile for `alice\\n` or `{tag}`."""
    config = collector_stack(kafka_bootstrap)
    collector = Collector()
    await collector.start(config)
    good = event(sessionId="tab:1@shop+x")
    batch = [event(userId="alice\n"), event(id="{e1}"), event(sessionId="s#1"), event(id="a/b"), good]
    try:
        async with await serve(collector) as client:
            response = await client.post("/v1/events", json={"events": batch})
    finally:
        await collector.close()
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 1
    fields = [{e["field"] for e in item["errors"]} for item in body["rejected"]]
    assert fields == [{"userId"}, {"id"}, {"sessionId"}, {"id"}]
    messages = read_topic(kafka_bootstrap, config.kafka.events_topic, 1)
    assert [orjson.loads(m.value() or b"")["id"] for m in messages] == [good["id"]]


async def test_a_single_event_is_accepted(kafka_bootstrap: str) -> None:
    config = collector_stack(kafka_bootstrap)
    collector = Collector()
    await collector.start(config)
    try:
        async with await serve(collector) as client:
            response = await client.post("/v1/events", json=event())
    finally:
        await collector.close()
    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "rejected": [], "notCounted": []}
    assert len(read_topic(kafka_bootstrap, config.kafka.events_topic, 1)) == 1


async def test_events_too_old_to_count_are_kept_on_the_topic_and_named_in_the_reply(
    kafka_bootstrap: str,
) -> None:
    config = collector_stack(kafka_bootstrap)  # an allowed lateness of 60 s
    collector = Collector()
    await collector.start(config)
    now = time.time()
    batch = [event(timestamp=now - 50), event(timestamp=now - 3600), event(), event(timestamp=now + 600)]
    before = REGISTRY.get_sample_value("tailor_events_not_counted_total", {"reason": "late"}) or 0.0
    try:
        async with await serve(collector) as client:
            response = await client.post("/v1/events", json={"events": batch})
    finally:
        await collector.close()
    assert response.status_code == 202
    answer = response.json()
    assert answer["accepted"] == 4
    assert [(item["index"], item["id"], item["reason"]) for item in answer["notCounted"]] == [
        (1, batch[1]["id"], "late")
    ]
    assert answer["notCounted"][0]["message"].startswith("stamped 1h before it was received")
    assert "1m old (the stack's allowedLateness)" in answer["notCounted"][0]["message"]
    assert REGISTRY.get_sample_value("tailor_events_not_counted_total", {"reason": "late"}) == before + 1
    # All four on the topic, stamped with the moment the collector judged them: the workers judge
    # lateness against that timestamp, so they agree with the reply.
    messages = read_topic(kafka_bootstrap, config.kafka.events_topic, 4)
    assert len(messages) == 4
    stamps = {message.timestamp()[1] for message in messages}
    assert len(stamps) == 1
    assert now * 1000 - 1 <= stamps.pop() <= time.time() * 1000


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        (b"{not json", 400, "invalid-json"),
        (b"[1, 2]", 400, "invalid-batch"),
        (b'{"events": {"id": 1}}', 400, "invalid-batch"),
        (b'{"events": []}', 400, "invalid-batch"),
        (orjson.dumps({"events": [{"type": "click"}, {"id": ""}]}), 400, "invalid-events"),
        (orjson.dumps({"events": [event() for _ in range(6)]}), 413, "too-large"),
        (orjson.dumps(event(page={"url": "x" * 600})), 413, "too-large"),
    ],
)
async def test_bad_requests_get_clear_errors_and_produce_nothing(
    kafka_bootstrap: str, body: bytes, status: int, kind: str
) -> None:
    config = collector_stack(kafka_bootstrap, max_batch_events=5, max_body_bytes=512)
    collector = Collector()
    await collector.start(config)
    try:
        async with await serve(collector) as client:
            response = await client.post(
                "/v1/events", content=body, headers={"content-type": "application/json"}
            )
    finally:
        await collector.close()
    assert response.status_code == status, response.text
    problem = response.json()
    assert problem["type"].endswith(kind)
    assert problem["detail"]
    if kind == "invalid-events":
        assert [r["index"] for r in problem["rejected"]] == [0, 1]
    assert read_topic(kafka_bootstrap, config.kafka.events_topic, 0, timeout=1.0) == []


async def test_a_body_larger_than_it_claims_is_cut_off(kafka_bootstrap: str) -> None:
    config = collector_stack(kafka_bootstrap, max_body_bytes=256)
    collector = Collector()
    await collector.start(config)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 100

    try:
        async with await serve(collector) as client:
            response = await client.post("/v1/events", content=chunks())  # streamed, no Content-Length
    finally:
        await collector.close()
    assert response.status_code == 413


def closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


async def test_kafka_unavailable_gives_503_with_retry_after() -> None:
    config = collector_stack(closed_port(), made=False)
    # The topic check at start waits for the unreachable broker too: 1 s instead of 15 s is enough here.
    collector = Collector(delivery_timeout_seconds=1.0, topic_check_seconds=1.0)
    await collector.start(config)
    try:
        async with await serve(collector) as client:
            response = await client.post("/v1/events", json={"events": [event(), event()]})
    finally:
        await collector.close()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.json()["type"].endswith("kafka-unavailable")


async def test_the_collector_never_creates_its_topic_even_on_a_broker_that_would(
    kafka_bootstrap: str,
) -> None:
    """The operator makes topics, with the stack's settings; the local broker auto-creates topics
    (auto.create.topics.enable, as many brokers do), so a producer left to its default would have
    made this one with the broker's defaults on the first send."""
    config = collector_stack(kafka_bootstrap, made=False)
    collector = Collector(delivery_timeout_seconds=2.0)
    await collector.start(config)
    try:
        async with await serve(collector) as client:
            response = await client.post("/v1/events", json=event())
    finally:
        await collector.close()
    assert response.status_code == 503, response.text
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    assert config.kafka.events_topic not in admin.list_topics(timeout=10).topics

    # The control: a producer with librdkafka's default makes a topic by sending to it.
    control = f"{config.kafka.events_topic}-control"
    plain = Producer({"bootstrap.servers": kafka_bootstrap})
    plain.produce(control, b"{}")
    assert plain.flush(15) == 0
    assert control in admin.list_topics(timeout=10).topics
