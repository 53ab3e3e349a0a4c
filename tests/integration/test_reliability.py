"""docs/architecture.md §13 end to end on the real broker: no acknowledged event lost, none counted twice,
while the Kafka broker is restarted — cleanly, or SIGKILLed and started again — in the middle of the stream.

Clients that behave like tailor.js (the whole batch resent, with the same event ids, after a 503 or a
connection error; a batch now and then resent after its 202 too, as when the reply is lost) POST to a
real `tailor api` process; a real `tailor worker` process counts. The test checks what a user of the
pipeline would notice: while the broker was away the collector held requests within its delivery
timeout and answered 503 with Retry-After beyond it (never a 500, never a hang); the collector and
the worker recovered by themselves; every event that got a 202 — and every event the clients kept
resending until it did — is counted exactly once in the profiles read through GET /v1/profiles; and
nothing more arrives afterwards.

It restarts the session's own broker, so it refuses an external one (TAILOR_KAFKA_BOOTSTRAP), and
leaves the broker running and healthy whatever happens (the `broker` fixture).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import orjson
import pytest
from pipeline_harness import Broker, Pipeline, read_topic, running_pipeline, session_broker, wait_until

from tailor import devstack
from tailor.devstack import scratch

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

USERS = tuple(f"rel-{i}" for i in range(24))
PARTITIONS = 3
BATCH_EVENTS = 25
CLIENTS = 3
PAUSE_SECONDS = 0.05  # between one client's batches: ~1,000 events/s in all, a busy shop's pace
RESEND_EVERY = 7  # every 7th batch is sent again after its 202 (a reply lost on the way)
# The collector answers within its delivery timeout (5 s) plus the margin it allows for a delivery
# report that never comes (5 s); anything slower is a hang.
ANSWER_WITHIN_SECONDS = 12.0
RETRY_AFTER = "2"
# The worker's group session: a broker away longer than this (the SIGKILL cases keep it down longer)
# makes the worker lose its partitions and join the group again once the broker is back.
SESSION_TIMEOUT_MS = 6000
BROKER_DOWN_SECONDS = 7.0
# A long outage: clients keep retrying with the timestamps their events were made with, so the last
# events go out two minutes late — long past the 30 s that was the default allowed lateness.
LONG_OUTAGE_SECONDS = 120.0


# --- the broker under test ---------------------------------------------------------------------


@pytest.fixture
def broker(stack: devstack.Stack, kafka_bootstrap: str) -> Iterator[Broker]:
    """The session's Kafka broker, to restart; running and healthy again when the test ends."""
    with session_broker(stack, kafka_bootstrap) as running:
        yield running


# --- the stack's processes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Outage:
    kind: Literal["restarted", "sigkilled"]
    down_seconds: float = BROKER_DOWN_SECONDS
    worker_env: dict[str, str] = field(default_factory=dict)
    # Events stamped by the client when made (as tailor.js does), on a stack compiled from a default
    # spec; else the collector stamps them on receipt, on a scratch stack.
    stamped: bool = False


@pytest.fixture
def pipeline(request: pytest.FixtureRequest, kafka_bootstrap: str, redis_url: str) -> Iterator[Pipeline]:
    """A fresh stack's ruleset published, its content API and worker running, as `request.param` (an
    Outage, with indirect parametrization) asks."""
    outage: Outage = request.param
    worker_env = outage.worker_env
    if outage.stamped:
        config = scratch.compiled_stack_config(kafka_bootstrap, "reliability-test", partitions=PARTITIONS)
    else:
        config = scratch.stack_config(
            kafka_bootstrap, "reliability-test", windows=(scratch.ONE_HOUR, scratch.ONE_DAY)
        )
    with running_pipeline(
        config, redis_url, {"TAILOR_WORKER_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS), **worker_env}
    ) as running:
        yield running


# --- clients that behave like tailor.js ----------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One POST /v1/events as the client saw it."""

    sent_at: float  # time.monotonic()
    seconds: float
    status: int | None  # None: no HTTP answer (connection refused, reset, timed out)
    retry_after: str | None = None
    error: str | None = None


@dataclass(eq=False)  # a thread: hashed by identity
class Tracker(threading.Thread):
    """One browser's tracker: batches of page views, each sent until it gets a 202. A `stamped` one
    stamps its events when made and, while a batch waits for its retry, keeps tracking into a queue
    that it sends once the batch is through: as tailor.js does for a shopper who browses on."""

    base_url: str
    index: int
    stop: threading.Event
    stamped: bool = False
    queued: list[list[dict[str, Any]]] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    accepted: dict[str, str] = field(default_factory=dict)  # event id -> user, once it got a 202
    batches: int = 0
    most_delayed: float = 0.0  # seconds from the oldest stamp of a batch to its 202
    resent_after_503: int = 0
    abandoned: int = 0

    def __post_init__(self) -> None:
        super().__init__(name=f"tracker-{self.index}", daemon=True)

    def run(self) -> None:
        timeout = httpx.Timeout(ANSWER_WITHIN_SECONDS + 9.0, connect=5.0)
        with httpx.Client(base_url=self.base_url, timeout=timeout) as http:
            while not self.stop.is_set() or self.queued:
                batch = self.queued.pop(0) if self.queued else self.new_batch()
                self.deliver(http, batch)
                if self.batches % RESEND_EVERY == 0:
                    self.deliver(http, batch)  # the 202 was lost on the way: tailor.js sends it again
                time.sleep(PAUSE_SECONDS)

    def new_batch(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for n in range(BATCH_EVENTS):
            user = USERS[(self.index * 7 + self.batches + n) % len(USERS)]
            category = ("shoes", "hats")[n % 2]
            items.append({"id": uuid.uuid4().hex, "type": "page_view", "userId": user,
                          "sessionId": f"s-{user}", "properties": {"category": category}})  # fmt: skip
            if self.stamped:
                items[-1]["timestamp"] = time.time()
        self.batches += 1
        return items

    def deliver(self, http: httpx.Client, batch: list[dict[str, Any]]) -> None:
        """Send `batch` until it is accepted, as tailor.js does: the same body, so the same ids. Once the
        test has stopped streaming, a batch still not accepted a minute later is abandoned (and fails it)."""
        body = orjson.dumps({"events": batch})
        headers = {"content-type": "application/json"}
        give_up_at: float | None = None
        while True:
            started = time.monotonic()
            try:
                reply = http.post("/v1/events", content=body, headers=headers)
            except httpx.TransportError as error:
                self.answers.append(Answer(started, time.monotonic() - started, None, error=repr(error)))
                time.sleep(0.5)
            else:
                retry_after = reply.headers.get("retry-after")
                self.answers.append(
                    Answer(started, time.monotonic() - started, reply.status_code, retry_after)
                )
                if reply.status_code == 202:
                    assert reply.json()["accepted"] == len(batch), reply.text
                    assert not reply.json()["notCounted"], reply.text
                    self.accepted.update((item["id"], item["userId"]) for item in batch)
                    if self.stamped:
                        self.most_delayed = max(self.most_delayed, time.time() - batch[0]["timestamp"])
                    return
                self.resent_after_503 += reply.status_code == 503
                # tailor.js waits at least Retry-After (with jitter); a 5xx without one gets its backoff.
                time.sleep(float(retry_after) if retry_after and retry_after.isdigit() else 1.0)
            if self.stamped and not self.stop.is_set():
                self.queued.append(self.new_batch())  # the shopper browses on meanwhile
            if self.stop.is_set():
                give_up_at = give_up_at or time.monotonic() + 60
                if time.monotonic() > give_up_at:
                    self.abandoned += 1
                    return


@contextlib.contextmanager
def trackers(base_url: str, *, stamped: bool = False) -> Iterator[list[Tracker]]:
    """CLIENTS trackers posting until the block ends; each has its batches in hand delivered on exit."""
    stop = threading.Event()
    running = [Tracker(base_url, index, stop, stamped) for index in range(CLIENTS)]
    for tracker in running:
        tracker.start()
    try:
        yield running
    finally:
        stop.set()
        for tracker in running:
            tracker.join(180)


def accepted_at(clients: list[Tracker], since: float) -> bool:
    return any(a.status == 202 and a.sent_at >= since for t in clients for a in t.answers)


def topic_ids(bootstrap: str, topic: str) -> Counter[str]:
    """How many times each event id is in the topic (more than once: a 503 after a partial write, or
    a resend after a lost 202, both resent with the same id)."""
    messages = read_topic(bootstrap, topic, PARTITIONS)
    return Counter(orjson.loads(message.value() or b"{}")["id"] for message in messages)


# --- the test ------------------------------------------------------------------------------------


STATIC_MEMBER = {"TAILOR_WORKER_INSTANCE_ID": "reliability-worker-0"}


OUTAGES = {
    "restarted": Outage("restarted"),
    "sigkilled": Outage("sigkilled"),
    "sigkilled-static-member": Outage("sigkilled", worker_env=STATIC_MEMBER),
    # Issue 19: the default stack, clients stamping their events and retrying for two minutes.
    "two-minutes-stamped": Outage("sigkilled", down_seconds=LONG_OUTAGE_SECONDS, stamped=True),
}


@pytest.mark.parametrize("pipeline", OUTAGES.values(), ids=OUTAGES.keys(), indirect=True)
def test_a_broker_outage_mid_stream_loses_no_acknowledged_event_and_counts_none_twice(
    broker: Broker, pipeline: Pipeline, kafka_bootstrap: str, request: pytest.FixtureRequest
) -> None:
    outage: Outage = request.node.callspec.params["pipeline"]
    counted = 'tailor_worker_events_processed_total{outcome="counted"}'
    timings: dict[str, float] = {}
    with trackers(pipeline.api_url, stamped=outage.stamped) as clients:
        # Streaming, and the worker counting, before the broker goes away.
        wait_until(lambda: pipeline.worker_metric(counted) > 2000, 60, pipeline.outputs)
        down_at = time.monotonic()
        if outage.kind == "restarted":
            broker.restart()
        else:
            broker.kill_and_start(outage.down_seconds)
        up_at = time.monotonic()
        timings["broker away (s)"] = up_at - down_at
        # The collector recovers by itself: events posted after the broker is back are accepted.
        timings["collector back after the broker (s)"] = wait_until(
            lambda: accepted_at(clients, since=up_at), 60, pipeline.outputs
        )
        # The worker recovers by itself: it counts again (and what it counts after this includes
        # events accepted after the restart; the exact totals below prove all of them were).
        counted_at_recovery = pipeline.worker_metric(counted)
        wait_until(lambda: pipeline.worker_metric(counted) > counted_at_recovery + 500, 60, pipeline.outputs)
        timings["worker counting again after the broker (s)"] = time.monotonic() - up_at
        time.sleep(2.0)  # and streams on for a while
    stopped_at = time.monotonic()

    answers = [answer for client in clients for answer in client.answers]
    statuses = Counter(answer.status for answer in answers)
    unavailable = [a for a in answers if a.status == 503]
    accepted = {event_id: user for client in clients for event_id, user in client.accepted.items()}
    expected = Counter(accepted.values())
    details = (
        f"statuses {dict(statuses)}, {len(accepted)} events accepted, "
        f"slowest answer {max(a.seconds for a in answers):.1f}s\n{pipeline.outputs()}"
    )

    # Every batch was delivered in the end: the clients gave nothing up.
    assert sum(client.abandoned for client in clients) == 0, details
    assert sum(client.batches for client in clients) * BATCH_EVENTS == len(accepted)
    # While the broker was away the collector said "later" — 503 with Retry-After — and nothing else:
    # no 500, no connection refused, no request left hanging.
    assert set(statuses) <= {202, 503}, details
    if outage.kind == "sigkilled":
        # Away longer than the delivery timeout: the requests in flight could not wait it out.
        assert unavailable, f"no 503 while the broker was away {timings['broker away (s)']:.1f}s: {details}"
    # (A clean restart takes a couple of seconds, which the collector may ride out by holding requests
    # within its delivery timeout: 202s that come late, which the time limit below still bounds.)
    assert all(a.retry_after == RETRY_AFTER for a in unavailable), details
    assert all(a.seconds < ANSWER_WITHIN_SECONDS for a in answers), details
    assert pipeline.api_metric("tailor_collector_unavailable_total") == len(unavailable)
    # What Kafka holds: every accepted event (some more than once — resends of the same ids).
    in_topic = topic_ids(kafka_bootstrap, pipeline.config.kafka.events_topic)
    missing = set(accepted) - set(in_topic)
    assert not missing, f"{len(missing)} acknowledged events are not in the topic: {details}"

    # Every accepted event counted exactly once, read the way an operator would (GET /v1/profiles).

    def counts() -> dict[str, int]:
        return {user: pipeline.views(user) for user in USERS}

    wait_until(lambda: counts() == expected, 120, lambda: f"{counts()} != {dict(expected)}\n{details}")
    timings["all counted after the stream stopped (s)"] = time.monotonic() - stopped_at
    time.sleep(1.5)
    assert counts() == expected, details  # and nothing more arrives

    resent = sum(in_topic.values()) - len(in_topic)
    assert pipeline.worker_metric("tailor_worker_dedup_hits_total") >= resent > 0
    if outage.stamped:
        # The clients' queues really did go out late, and none of it was left uncounted.
        timings["most delayed batch (s)"] = max(client.most_delayed for client in clients)
        assert timings["most delayed batch (s)"] > outage.down_seconds * 0.8, details
    not_counted = 'tailor_worker_events_processed_total{outcome="late"}'
    assert pipeline.worker_metric(not_counted) == 0, details
    assert pipeline.worker.alive, details  # recovered by itself, not restarted
    assert pipeline.api.alive, details
    summary = ", ".join(f"{name} {value:.1f}" for name, value in timings.items())
    print(
        f"\n[{request.node.callspec.id}] {len(accepted)} events accepted in {len(answers)} requests "
        f"({len(unavailable)} answered 503); {resent} duplicate messages in the topic; {summary}"
    )
