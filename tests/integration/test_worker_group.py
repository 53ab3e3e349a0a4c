"""A consumer group of real `tailor worker` processes over a 12-partition events topic under a steady
stream (issue 15, deliverable 4): one worker SIGKILLed, one added, one scaled away with SIGTERM, and
every acknowledged event counted exactly once at the end.

Rebalances are cooperative (`cooperative-sticky`, workers/tailor_worker/consumer.py): when a worker
joins, the others give up only the partitions that move and keep consuming the rest. The test checks
that from their logs (what they revoke is a strict part of what they held, and they are never handed
it all again) and from their consumed counters during the rebalance.

The time to resume after each change is measured from outside, as an operator would see it: from
the change until the group's committed offset of every partition has passed the end that partition
had at the change (everything produced before it is counted and committed; this includes up to 1 s
of the workers' auto-commit interval). The figures are printed (`-s`) and quoted in
docs/operating.md, "Scaling workers by partitions".
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import redis
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from pipeline_harness import UNCAPPED, Process, metric, scrape, wait_until

from tailor.core.profile import store
from tailor.core.rules.ruleset import StackConfig
from tailor.devstack import ports, scratch

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

PARTITIONS = 12
USERS = tuple(f"g{i}" for i in range(240))
EVENTS_PER_TICK = 40
TICK_SECONDS = 0.05  # ~800 events/s: a steady stream every partition sees all the time
# A SIGKILLed worker's partitions wait for its session to expire before they move: the resume time
# after a kill is this plus the rebalance.
SESSION_TIMEOUT_MS = 6000
CONSUMED = "tailor_worker_events_consumed_total"
DUPLICATES = 'tailor_worker_events_processed_total{outcome="duplicate"}'
REBALANCE_LINE = re.compile(r"\b(assigned|revoked|lost) \[([\d, ]*)\]")


class GroupWorker:
    """One `tailor worker` of the group, its metrics scraped and its rebalance log lines read."""

    def __init__(self, config: StackConfig, redis_url: str) -> None:
        port = ports.pick(None)
        self.metrics_url = f"http://127.0.0.1:{port}/metrics"
        self.process = Process(
            ["worker", "--stack", config.key, "--metrics-port", str(port)],
            {"TAILOR_REDIS_URL": redis_url, "TAILOR_WORKER_METRICS_HOST": "127.0.0.1",
             "TAILOR_WORKER_POLL_SECONDS": "0.2", "TAILOR_WORKER_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
             **UNCAPPED},
        )  # fmt: skip

    def consumed(self) -> float:
        return metric(scrape(self.metrics_url), CONSUMED)

    def rebalances(self) -> list[tuple[str, set[int]]]:
        """Its `assigned`/`revoked`/`lost` log lines in order, each with its partitions."""
        return [
            (kind, {int(p) for p in listed.split(",") if p.strip()})
            for kind, listed in REBALANCE_LINE.findall(self.process.output(tail=10**7))
        ]

    def owned(self) -> set[int]:
        """The partitions it holds by its log: assigned, less revoked or lost."""
        held: set[int] = set()
        for kind, partitions in self.rebalances():
            held = held | partitions if kind == "assigned" else held - partitions
        return held


@pytest.fixture
def group(kafka_bootstrap: str, redis_url: str) -> Iterator[tuple[StackConfig, list[GroupWorker]]]:
    config = scratch.stack_config(kafka_bootstrap, "worker-group", partitions=PARTITIONS)
    scratch.publish(redis_url, config)
    started: list[GroupWorker] = []
    yield config, started
    for worker in started:
        if worker.process.alive:
            worker.process.process.kill()
        worker.process.close()


@contextlib.contextmanager
def steady_stream(bootstrap: str, topic: str) -> Iterator[dict[str, int]]:
    """Events with unique ids for USERS round-robin at a steady pace until the block ends; yields the
    count per user of those the broker acknowledged (complete once the block has ended)."""
    acknowledged = dict.fromkeys(USERS, 0)
    stop = threading.Event()

    def delivered(error: Any, message: Message) -> None:
        if error is None:
            acknowledged[(message.key() or b"").decode()] += 1

    def stream() -> None:
        kafka = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
        n = 0
        while not stop.is_set():
            for _ in range(EVENTS_PER_TICK):
                user = USERS[n % len(USERS)]
                item = {"id": uuid.uuid4().hex, "type": "page_view", "userId": user, "sessionId": f"s-{user}",
                        "timestamp": time.time(), "properties": {}}  # fmt: skip
                kafka.produce(topic, orjson.dumps(item), user.encode(), on_delivery=delivered)
                n += 1
            kafka.poll(0)
            stop.wait(TICK_SECONDS)
        assert kafka.flush(30) == 0

    streamer = threading.Thread(target=stream)
    streamer.start()
    try:
        yield acknowledged
    finally:
        stop.set()
        streamer.join(60)


class Offsets:
    """The group's committed offsets and the topic's ends, per partition, read as an outsider would."""

    def __init__(self, bootstrap: str, config: StackConfig) -> None:
        self.topic = config.kafka.events_topic
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": config.worker_group,
                                   "enable.auto.commit": False})  # fmt: skip
        self._consumer.list_topics(self.topic, timeout=10)  # metadata first, or the ends are "unknown"
        self._partitions = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]

    def committed(self) -> dict[int, int]:
        return {tp.partition: tp.offset for tp in self._consumer.committed(self._partitions, timeout=10)}

    def ends(self) -> dict[int, int]:
        return {
            tp.partition: self._consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1]
            for tp in self._partitions
        }

    def seconds_to_resume(self, since: float, explain: Callable[[], str], timeout: float = 60) -> float:
        """Seconds from `since` (monotonic) until every partition's committed offset passed the end it
        had when this was called: all that was produced before the change is counted and committed."""
        ends = self.ends()
        behind: set[int] = set()

        def passed() -> bool:
            committed = self.committed()
            behind.clear()
            behind.update(p for p, end in ends.items() if committed[p] < end)
            return not behind

        wait_until(passed, timeout, lambda: f"partitions {sorted(behind)} not resumed\n{explain()}")
        return time.monotonic() - since

    def close(self) -> None:
        self._consumer.close()


def longest_pause(samples: list[tuple[float, float]]) -> float:
    """The longest time a counter stood still in (time, value) samples."""
    longest, since = 0.0, samples[0]
    for moment, value in samples[1:]:
        if value > since[1]:
            since = (moment, value)
        longest = max(longest, moment - since[0])
    return longest


def views(client: redis.Redis, config: StackConfig, user: str) -> int:
    return store.read(client, config, user, None, time.time()).count("24h", "views")


def test_three_workers_on_twelve_partitions_lose_and_double_nothing_through_a_kill_a_join_and_a_leave(
    kafka_bootstrap: str, redis_url: str, redis_client: redis.Redis,
    group: tuple[StackConfig, list[GroupWorker]],
) -> None:  # fmt: skip
    config, workers = group
    offsets = Offsets(kafka_bootstrap, config)
    resumed: dict[str, float] = {}
    pauses: list[float] = []  # the others' longest stand-still while one joins (sampled every ~0.1 s)

    def outputs() -> str:
        return "\n".join(f"--- worker {i} ---\n{w.process.output(3000)}" for i, w in enumerate(workers))

    def all_partitions_owned(members: list[GroupWorker]) -> bool:
        owned = [w.owned() for w in members]
        return sum(len(o) for o in owned) == PARTITIONS and set().union(*owned) == set(range(PARTITIONS))

    started = time.monotonic()
    try:
        with steady_stream(kafka_bootstrap, config.kafka.events_topic) as acknowledged:
            workers += [GroupWorker(config, redis_url) for _ in range(3)]
            wait_until(lambda: all_partitions_owned(workers) and all(w.owned() for w in workers), 90, outputs)
            offsets.seconds_to_resume(time.monotonic(), outputs)  # steady: every partition is moving
            first, second, third = workers

            # 1. SIGKILL: its partitions move once its session expires.
            killed_at = time.monotonic()
            first.process.process.kill()
            first.process.process.wait(10)
            resumed["SIGKILL"] = offsets.seconds_to_resume(killed_at, outputs)
            wait_until(lambda: all_partitions_owned([second, third]), 30, outputs)

            # 2. One added: the others give up only what moves, and keep consuming the rest meanwhile.
            held = {id(w): w.owned() for w in (second, third)}
            lines = {id(w): len(w.rebalances()) for w in (second, third)}
            fourth = GroupWorker(config, redis_url)
            workers.append(fourth)
            counters: list[tuple[float, float, float]] = []  # (time, second's consumed, third's)
            revoke_seen: float | None = None
            deadline = time.monotonic() + 60
            # Sampled until the newcomer holds partitions and at least a second after the first revoke
            # (a window of a few samples even when the rebalance is quicker than one).
            while True:
                assert time.monotonic() < deadline, outputs()
                now = time.monotonic()
                counters.append((now, second.consumed(), third.consumed()))
                if revoke_seen is None and any(len(w.rebalances()) > lines[id(w)] for w in (second, third)):
                    revoke_seen = now  # the rebalance has begun: time the resume from here
                if revoke_seen is not None and now >= revoke_seen + 1.0 and fourth.owned():
                    break
                time.sleep(0.1)
            resumed["one added"] = offsets.seconds_to_resume(revoke_seen, outputs)
            for index, worker in ((1, second), (2, third)):
                since_join = worker.rebalances()[lines[id(worker)] :]
                given = set().union(*(p for kind, p in since_join if kind == "revoked"))
                handed = set().union(*(p for kind, p in since_join if kind != "revoked"))
                # Incremental: only some partitions revoked (the second round assigns it nothing: an
                # eager rebalance would revoke all it held and assign it its share again), none lost.
                assert given, worker.process.output()
                assert given < held[id(worker)], (given, held[id(worker)])
                assert not handed, (since_join, worker.process.output())
                assert worker.owned() == held[id(worker)] - given
                # ... and it kept consuming what it kept while the newcomer was being brought in.
                during = [sample[index] for sample in counters if sample[0] >= revoke_seen]
                assert len(during) >= 2, (counters, revoke_seen)
                assert during[-1] > during[0], (during, outputs())
                pauses.append(longest_pause([(sample[0], sample[index]) for sample in counters]))
            sampled_every = (counters[-1][0] - counters[0][0]) / (len(counters) - 1)
            wait_until(lambda: all_partitions_owned([second, third, fourth]), 30, outputs)

            # 3. One scaled away gracefully: SIGTERM, it commits and leaves the group at once.
            left_at = time.monotonic()
            third.process.process.send_signal(signal.SIGTERM)
            resumed["SIGTERM"] = offsets.seconds_to_resume(left_at, outputs)
            assert third.process.process.wait(30) == 0, third.process.output()
            wait_until(lambda: all_partitions_owned([second, fourth]), 30, outputs)
            time.sleep(1.0)  # the stream goes on under the final pair a moment
    finally:
        offsets.close()

    # Every event the broker acknowledged, counted exactly once: per user, so a double count of one
    # user cannot hide behind a loss of another.
    expected = dict(acknowledged)
    total = sum(expected.values())

    def counts() -> dict[str, int]:
        return {user: views(redis_client, config, user) for user in USERS}

    wait_until(lambda: counts() == expected, 90,
               lambda: f"{sum(counts().values())} counted of {total}\n{outputs()}")  # fmt: skip
    # The replays after the kill were recognised as duplicates by their event ids, not counted again.
    duplicates = sum(metric(scrape(w.metrics_url), DUPLICATES) for w in (second, fourth))
    wall = time.monotonic() - started
    print(f"\n{total} events, {PARTITIONS} partitions; resumed after: "
          + ", ".join(f"{change} {seconds:.1f} s" for change, seconds in resumed.items())
          + f"; longest pause of the others during the join {max(pauses):.2f} s (sampled every"
          + f" {sampled_every:.2f} s)"
          + f"; duplicates recognised by the survivors {duplicates:.0f}; wall {wall:.0f} s")  # fmt: skip
