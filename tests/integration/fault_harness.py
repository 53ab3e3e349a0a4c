"""What the fault tests share (test_faults_kafka.py, test_faults_redis.py): clients that post page views
to a real collector and resend each batch, with the same ids, until it gets a 202; and the comparison
of what the collector acknowledged with what the worker counted in Redis."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import redis
from pipeline_harness import read_topic

from tailor.core.profile import store
from tailor.core.rules.ruleset import StackConfig

USERS = tuple(f"fault-{i}" for i in range(24))
POSTERS = 3
BATCH_EVENTS = 50
PAUSE_SECONDS = 0.04  # between one poster's batches: up to ~3,000 events/s in all
COUNTED = 'tailor_worker_events_processed_total{outcome="counted"}'
#: The controls (a setting that must lose events, showing the measurement can) and the cases a CI case
#: covers cost a minute or two each: they are run by hand (docs/operating.md#durability):
#: `TAILOR_FAULTS_ALL=1 pytest tests/integration/test_faults_{kafka,redis}.py`
ALL_CASES = os.environ.get("TAILOR_FAULTS_ALL") == "1"


@dataclass(frozen=True)
class Answer:
    sent_at: float
    status: int | None  # None: no HTTP answer


@dataclass(eq=False)  # a thread: hashed by identity
class Poster(threading.Thread):
    """A client that sends batches of page views, each until it gets a 202, with the same ids."""

    base_url: str
    index: int
    stop: threading.Event
    answers: list[Answer] = field(default_factory=list)
    acknowledged: dict[str, str] = field(default_factory=dict)  # event id -> user
    batches: int = 0
    abandoned: int = 0

    def __post_init__(self) -> None:
        super().__init__(name=f"poster-{self.index}", daemon=True)

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(20.0, connect=5.0)) as http:
            while not self.stop.is_set():
                self.deliver(http, self.new_batch())
                time.sleep(PAUSE_SECONDS)

    def new_batch(self) -> list[dict[str, Any]]:
        self.batches += 1
        return [
            {"id": uuid.uuid4().hex, "type": "page_view", "userId": user, "sessionId": f"s-{user}"}
            for n in range(BATCH_EVENTS)
            for user in [USERS[(self.index * 7 + self.batches + n) % len(USERS)]]
        ]

    def deliver(self, http: httpx.Client, batch: list[dict[str, Any]]) -> None:
        body = orjson.dumps({"events": batch})
        give_up_at = 0.0
        while True:
            sent_at = time.monotonic()
            try:
                status: int | None = http.post(
                    "/v1/events", content=body, headers={"content-type": "application/json"}
                ).status_code
            except httpx.TransportError:
                status = None
            self.answers.append(Answer(sent_at, status))
            if status == 202:
                self.acknowledged.update((item["id"], item["userId"]) for item in batch)
                return
            time.sleep(0.5)
            if self.stop.is_set():
                give_up_at = give_up_at or time.monotonic() + 60
                if time.monotonic() > give_up_at:
                    self.abandoned += 1
                    return


@contextlib.contextmanager
def posting(base_url: str) -> Iterator[list[Poster]]:
    stop = threading.Event()
    posters = [Poster(base_url, index, stop) for index in range(POSTERS)]
    for poster in posters:
        poster.start()
    try:
        yield posters
    finally:
        stop.set()
        for poster in posters:
            poster.join(120)


def acknowledged_since(posters: list[Poster], since: float) -> bool:
    """True once a request sent after `since` got a 202."""
    return any(a.status == 202 and a.sent_at > since for p in posters for a in p.answers)


def counted(client: redis.Redis, config: StackConfig) -> Counter[str]:
    now = time.time()
    return Counter(
        {user: store.read(client, config, user, None, now).count("24h", "views") for user in USERS}
    )


@dataclass
class Report:
    acknowledged: int
    counted: int
    lost: int  # acknowledged events not counted (per user, summed)
    twice: int  # counted more often than acknowledged (per user, summed)
    missing_from_topic: int  # acknowledged ids Kafka no longer has
    timings: dict[str, float]
    answers: Counter[int | None]  # the collector's answers by status (None: no HTTP answer)

    def __str__(self) -> str:
        spans = ", ".join(f"{name} {value:.1f}" for name, value in self.timings.items())
        return (
            f"{self.acknowledged} acknowledged, {self.counted} counted, {self.lost} lost, {self.twice} "
            f"counted twice, {self.missing_from_topic} acknowledged ids missing from the topic; {spans}; "
            f"answers {dict(self.answers)}"
        )


def measure(
    redis_url: str, config: StackConfig, posters: list[Poster], stopped_at: float, timings: dict[str, float]
) -> Report:
    """Wait until the counts equal what was acknowledged, or stop changing for 15 s; then compare them,
    and what the events topic holds, with what was acknowledged."""
    acknowledged = {event_id: user for p in posters for event_id, user in p.acknowledged.items()}
    expected = Counter(acknowledged.values())
    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    try:
        last, steady_since = counted(client, config), time.monotonic()
        while (
            time.monotonic() - stopped_at < 120 and last != expected and time.monotonic() - steady_since < 15
        ):
            time.sleep(0.5)
            now = counted(client, config)
            if now != last:
                last, steady_since = now, time.monotonic()
        timings["all counted after the stream stopped (s)"] = time.monotonic() - stopped_at
        time.sleep(1.5)
        final = counted(client, config)
    finally:
        client.close()
    in_topic = {
        orjson.loads(message.value() or b"{}")["id"]
        for message in read_topic(
            config.kafka.bootstrap_servers, config.kafka.events_topic, config.kafka.partitions
        )
    }
    return Report(
        acknowledged=len(acknowledged),
        counted=sum(final.values()),
        lost=sum((expected - final).values()),
        twice=sum((final - expected).values()),
        missing_from_topic=len(set(acknowledged) - in_topic),
        timings=timings,
        answers=Counter(a.status for p in posters for a in p.answers),
    )
