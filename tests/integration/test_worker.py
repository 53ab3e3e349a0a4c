"""`tailor worker` as a real process on the real broker and Redis: exact counts, replays that change
nothing, poison messages dead-lettered, a SIGKILL mid-stream that loses and doubles nothing, two
workers writing the same users at once, revoked partitions leaving the cache, and Redis killed and
restarted from its AOF mid-stream."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from tailor.core import topics
from tailor.core.profile import store
from tailor.core.rules.ruleset import StackConfig
from tailor.devstack import ports, scratch, toolchain
from tailor.devstack.components import redis as redis_component

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]


class WorkerProcess:
    """`tailor worker` in a subprocess, with its log kept for failure messages."""

    def __init__(self, stack: str, redis_url: str, **env: str) -> None:
        self.metrics_port = ports.pick(None)
        # Removed when closed: the test reads it (for failure messages) while the worker runs.
        self.log = tempfile.NamedTemporaryFile(prefix="tailor-worker-", suffix=".log")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tailor.cli.main", "worker", "--stack", stack,
             "--metrics-port", str(self.metrics_port)],
            # These tests stream hundreds of events per user per second to count them exactly: the
            # per-user caps (test_profile_store.py tests them) are lifted.
            env={**os.environ, "TAILOR_REDIS_URL": redis_url, "TAILOR_WORKER_METRICS_HOST": "127.0.0.1",
                 "TAILOR_WORKER_POLL_SECONDS": "0.2", "TAILOR_WORKER_SESSION_TIMEOUT_MS": "6000",
                 "TAILOR_WORKER_EVENTS_PER_USER_PER_MINUTE": "1000000",
                 "TAILOR_WORKER_DEDUP_MARKS_PER_USER": "1000000", **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def scrape(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as reply:
            text: str = reply.read().decode()
            return text

    def healthz(self) -> int:
        """The liveness probe's HTTP status."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=5) as reply:
                return int(reply.status)
        except urllib.error.HTTPError as error:
            return error.code

    def metric(self, name: str) -> float:
        """The sum of the samples whose line starts with `name`; NaN while the process is not serving yet."""
        try:
            text = self.scrape()
        except OSError:
            return float("nan")
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def terminate(self, timeout: float = 20.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
        self.log.close()


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.close()


def worker_stack(bootstrap: str, redis_url: str) -> StackConfig:
    """A fresh stack, its ruleset published and its topics made: what `tailor worker --stack` follows."""
    config = scratch.stack_config(bootstrap, "worker-test")
    scratch.publish(redis_url, config)
    return config


def producer(bootstrap: str) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})


def event(user: str, type_: str = "page_view", **props: Any) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "type": type_, "userId": user, "sessionId": f"s-{user}",
            "timestamp": time.time(), "properties": props}  # fmt: skip


def send(kafka: Producer, topic: str, items: list[dict[str, Any]]) -> None:
    for item in items:
        kafka.produce(topic, orjson.dumps(item), item["userId"].encode())
    assert kafka.flush(30) == 0


def views(client: redis.Redis, config: StackConfig, user: str, window: str = "24h") -> int:
    return store.read(client, config, user, None, time.time()).count(window, "views")


def wait_until(check: Callable[[], bool], timeout: float, explain: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not reached in {timeout}s:\n{explain()}")


def committed_lag(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        consumer.list_topics(topic, timeout=10)  # metadata first, or the watermarks are "unknown"
        lag = 0
        for tp in consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10):
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
            lag += high - max(tp.offset, 0)
        return lag
    finally:
        consumer.close()


def test_a_burst_is_counted_exactly_and_a_replay_changes_nothing(
    kafka_bootstrap: str, redis_url: str, redis_client: redis.Redis, workers: list[WorkerProcess]
) -> None:
    config = worker_stack(kafka_bootstrap, redis_url)
    users = [f"u{i}" for i in range(40)]
    burst = [event(users[i % 40], category=("shoes", "hats")[i % 2]) for i in range(4000)]
    resent = burst[:500]  # a client resending part of a batch after a 503: same ids
    kafka = producer(kafka_bootstrap)
    workers.append(WorkerProcess(config.key, redis_url))
    send(kafka, config.kafka.events_topic, burst + resent)

    expected = {user: 100 for user in users}

    def counts() -> dict[str, int]:
        return {user: views(redis_client, config, user) for user in users}

    wait_until(lambda: counts() == expected, 60, lambda: f"{counts()}\n{workers[0].output()}")
    worker = workers[0]
    assert worker.metric("tailor_worker_dedup_hits_total") == 500
    assert worker.metric("tailor_worker_events_consumed_total") == 4500
    assert worker.metric('tailor_worker_events_processed_total{outcome="counted"}') == 4000
    assert worker.metric('tailor_worker_events_processed_total{outcome="duplicate"}') == 500
    assert worker.metric("tailor_worker_processing_seconds_count") >= 1
    wait_until(lambda: worker.metric("tailor_worker_consumer_lag") == 0, 10, worker.output)  # caught up
    assert "tailor_worker_consumer_lag{" in worker.scrape()  # per partition
    assert store.read(redis_client, config, "u0", None, time.time()).count(
        "5m", "views", "category", "shoes") == 100  # fmt: skip
    assert workers[0].terminate() == 0, workers[0].output()  # SIGTERM: clean exit ...
    group = f"tailor-worker.{config.namespace}.{config.name}"
    assert (
        committed_lag(kafka_bootstrap, group, config.kafka.events_topic, 3) == 0
    )  # ... everything committed

    # Another consumer group reads the whole topic again: every event is a duplicate now.
    replay = WorkerProcess(config.key, redis_url, TAILOR_WORKER_GROUP_ID=f"replay-{uuid.uuid4().hex[:6]}")
    workers.append(replay)
    wait_until(lambda: replay.metric("tailor_worker_dedup_hits_total") == 4500, 60, replay.output)
    assert counts() == expected


def test_a_flooding_user_is_capped_per_minute_and_the_rest_is_acknowledged_and_counted_over(
    kafka_bootstrap: str, redis_url: str, redis_client: redis.Redis, workers: list[WorkerProcess]
) -> None:
    """The caps as a stack sets them (the operator passes spec.workers.limits as these variables):
    one user's 60 events in a minute against a cap of 20, a quiet user beside it untouched."""
    config = worker_stack(kafka_bootstrap, redis_url)
    flood = [event("flooder") for _ in range(60)]
    for item in flood:
        item["timestamp"] = flood[0]["timestamp"]  # one minute of event time
    send(producer(kafka_bootstrap), config.kafka.events_topic, [*flood, event("quiet"), event("quiet")])
    worker = WorkerProcess(config.key, redis_url, TAILOR_WORKER_EVENTS_PER_USER_PER_MINUTE="20")
    workers.append(worker)
    wait_until(lambda: worker.metric("tailor_worker_events_over_user_cap_total") == 40, 60, worker.output)
    # The quiet user may be on another partition, counted in a later batch than the flood.
    wait_until(lambda: views(redis_client, config, "quiet") == 2, 30, worker.output)
    assert views(redis_client, config, "flooder") == 20
    assert worker.metric('tailor_worker_events_processed_total{outcome="over_user_cap"}') == 40
    wait_until(lambda: worker.metric("tailor_worker_consumer_lag") == 0, 10, worker.output)  # acknowledged


def test_poison_messages_go_to_the_dead_letter_topic_and_later_events_still_count(
    kafka_bootstrap: str, redis_url: str, redis_client: redis.Redis, workers: list[WorkerProcess]
) -> None:
    config = worker_stack(kafka_bootstrap, redis_url)
    kafka = producer(kafka_bootstrap)
    topic = config.kafka.events_topic
    workers.append(WorkerProcess(config.key, redis_url))
    send(kafka, topic, [event("alice")])
    kafka.produce(topic, b"\xff\x00 not json", b"alice", headers=[("ce_id", b"poison-1")])
    kafka.produce(topic, orjson.dumps({"id": "bad", "type": "hover", "userId": "alice"}), b"alice")
    kafka.produce(topic, None, b"alice")
    send(kafka, topic, [event("alice"), event("alice")])
    wait_until(lambda: views(redis_client, config, "alice") == 3, 60, workers[0].output)

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest"})  # fmt: skip
    consumer.subscribe([config.kafka.dead_letter_topic])
    letters: list[Message] = []
    deadline = time.monotonic() + 30
    while len(letters) < 3 and time.monotonic() < deadline:
        letters += [m for m in consumer.consume(3, timeout=1.0) if m.error() is None]
    consumer.close()
    assert len(letters) == 3
    by_reason: dict[Any, list[tuple[Message, dict[Any, Any]]]] = {}
    for letter in letters:
        headers = dict(letter.headers() or [])
        by_reason.setdefault(headers["tailor-dlq-reason"], []).append((letter, headers))
    assert sorted((k, len(v)) for k, v in by_reason.items()) == [(b"invalid", 1), (b"undecodable", 2)]
    _, invalid_headers = by_reason[b"invalid"][0]
    assert b'"field":"type"' in invalid_headers["tailor-dlq-error"]
    assert invalid_headers["tailor-dlq-source"].startswith(f"{topic}/".encode())
    poison = next(h for _, h in by_reason[b"undecodable"] if "ce_id" in h)
    assert poison["ce_id"] == b"poison-1"  # the original headers are kept
    assert workers[0].metric("tailor_worker_dead_letters_total") == 3


@contextlib.contextmanager
def streaming(bootstrap: str, topic: str, users: list[str], pause: float = 0.02) -> Iterator[dict[str, int]]:
    """Produce events for `users` round-robin until the block ends, `pause` s after every 200; yields
    the count per user of those the broker acknowledged (complete once the block has ended)."""
    acknowledged = dict.fromkeys(users, 0)
    stop = threading.Event()

    def stream() -> None:
        kafka = producer(bootstrap)

        def delivered(error: Any, message: Message) -> None:
            if error is None:
                acknowledged[(message.key() or b"").decode()] += 1

        n = 0
        while not stop.is_set():
            item = event(users[n % len(users)])
            kafka.produce(topic, orjson.dumps(item), item["userId"].encode(), on_delivery=delivered)
            n += 1
            if n % 200 == 0:
                kafka.poll(0)
                time.sleep(pause)
        kafka.flush(30)

    streamer = threading.Thread(target=stream)
    streamer.start()
    try:
        yield acknowledged
    finally:
        stop.set()
        streamer.join(60)


def test_sigkill_mid_stream_then_restart_counts_every_acknowledged_event_once(
    kafka_bootstrap: str, redis_url: str, redis_client: redis.Redis, workers: list[WorkerProcess]
) -> None:
    config = worker_stack(kafka_bootstrap, redis_url)
    users = [f"k{i}" for i in range(20)]
    instance = f"w-{uuid.uuid4().hex[:6]}"
    with streaming(kafka_bootstrap, config.kafka.events_topic, users) as acknowledged:
        first = WorkerProcess(config.key, redis_url, TAILOR_WORKER_INSTANCE_ID=instance)
        workers.append(first)
        wait_until(lambda: sum(views(redis_client, config, u) for u in users) > 3000, 60, first.output)
        first.kill()  # SIGKILL: no commit of the offsets stored since the last auto-commit
        counted_at_kill = sum(views(redis_client, config, u) for u in users)
        time.sleep(0.5)
        second = WorkerProcess(config.key, redis_url, TAILOR_WORKER_INSTANCE_ID=instance)
        workers.append(second)
        time.sleep(2.0)

    assert sum(acknowledged.values()) > counted_at_kill
    wait_until(
        lambda: {u: views(redis_client, config, u) for u in users} == acknowledged,
        90,
        lambda: f"{acknowledged} vs {[views(redis_client, config, u) for u in users]}\n{second.output()}",
    )
    # The restarted worker really did replay what the killed one had counted but not committed.
    assert second.metric("tailor_worker_dedup_hits_total") > 0
    time.sleep(1.0)
    assert {u: views(redis_client, config, u) for u in users} == acknowledged  # and nothing more arrives


def test_workers_joining_and_leaving_the_group_split_the_work_and_count_exactly(
    kafka_bootstrap: str, redis_url: str, redis_client: redis.Redis, workers: list[WorkerProcess]
) -> None:
    config = worker_stack(kafka_bootstrap, redis_url)
    users = [f"r{i}" for i in range(30)]
    counted = 'tailor_worker_events_processed_total{outcome="counted"}'
    with streaming(kafka_bootstrap, config.kafka.events_topic, users) as acknowledged:
        first = WorkerProcess(config.key, redis_url)
        workers.append(first)
        wait_until(lambda: first.metric(counted) > 500, 60, first.output)
        second = WorkerProcess(config.key, redis_url)  # joins: a rebalance hands it partitions
        workers.append(second)
        wait_until(lambda: second.metric(counted) > 500, 60, second.output)
        assert first.terminate() == 0, first.output()  # leaves cleanly: its partitions move over
        time.sleep(1.5)

    wait_until(
        lambda: {u: views(redis_client, config, u) for u in users} == acknowledged,
        90,
        lambda: f"{acknowledged} vs {[views(redis_client, config, u) for u in users]}\n{second.output()}",
    )
    assert "revoked" in first.output()
    assert "assigned" in second.output()


def test_the_worker_follows_published_feature_changes(
    kafka_bootstrap: str, redis_url: str, redis_client: redis.Redis, workers: list[WorkerProcess]
) -> None:
    config = worker_stack(kafka_bootstrap, redis_url)
    kafka = producer(kafka_bootstrap)
    workers.append(WorkerProcess(config.key, redis_url))
    send(kafka, config.kafka.events_topic, [event("bob", category="shoes", brand="acme")])
    wait_until(lambda: views(redis_client, config, "bob") == 1, 60, workers[0].output)

    wider = config.model_copy(
        update={"features": config.features.model_copy(update={"dimensions": ("category", "brand")})}
    )
    scratch.publish(redis_url, wider)
    time.sleep(2.5)  # the worker checks the published ruleset every second
    send(kafka, config.kafka.events_topic, [event("bob", category="shoes", brand="acme")])

    def brand() -> int:
        return store.read(redis_client, wider, "bob", None, time.time()).count(
            "24h", "views", "brand", "acme")  # fmt: skip

    wait_until(lambda: brand() == 1, 60, workers[0].output)
    assert views(redis_client, config, "bob") == 2


def test_two_workers_counting_the_same_users_at_once_count_every_event_once(
    kafka_bootstrap: str, redis_url: str, redis_client: redis.Redis, workers: list[WorkerProcess]
) -> None:
    """The worst a zombie can do: keep writing users another worker owns, from its own cached state.
    Two consumer groups read the same stream at once, so both workers count the same users all along;
    the guard refuses every write made from a stale copy (the refused worker reloads and counts again)
    and the dedup set turns the other worker's events into duplicates."""
    config = worker_stack(kafka_bootstrap, redis_url)
    users = [f"z{i}" for i in range(10)]
    conflicts = "tailor_worker_profile_conflicts_total"
    with streaming(kafka_bootstrap, config.kafka.events_topic, users) as acknowledged:
        one = WorkerProcess(config.key, redis_url, TAILOR_WORKER_GROUP_ID=f"one-{uuid.uuid4().hex[:6]}")
        two = WorkerProcess(config.key, redis_url, TAILOR_WORKER_GROUP_ID=f"two-{uuid.uuid4().hex[:6]}")
        workers += [one, two]
        wait_until(lambda: one.metric(conflicts) + two.metric(conflicts) > 20, 60,
                   lambda: f"{one.output()}\n{two.output()}")  # fmt: skip
        time.sleep(1.0)

    wait_until(
        lambda: {u: views(redis_client, config, u) for u in users} == acknowledged,
        90,
        lambda: f"{acknowledged} vs {[views(redis_client, config, u) for u in users]}\n{two.output()}",
    )
    lag = "tailor_worker_consumer_lag"
    wait_until(lambda: one.metric(lag) == 0 == two.metric(lag), 30, one.output)
    counted = 'tailor_worker_events_processed_total{outcome="counted"}'
    duplicates = 'tailor_worker_events_processed_total{outcome="duplicate"}'
    total = sum(acknowledged.values())
    # Each event was counted by exactly one of them, and seen as a duplicate by the other.
    assert one.metric(counted) + two.metric(counted) == total
    assert one.metric(duplicates) + two.metric(duplicates) == total
    assert {u: views(redis_client, config, u) for u in users} == acknowledged


def test_revoked_partitions_leave_the_workers_cache(
    kafka_bootstrap: str, redis_url: str, redis_client: redis.Redis, workers: list[WorkerProcess]
) -> None:
    config = worker_stack(kafka_bootstrap, redis_url)
    users = [f"c{i}" for i in range(30)]
    cached = "tailor_worker_profile_cache_users"
    counted = 'tailor_worker_events_processed_total{outcome="counted"}'
    with streaming(kafka_bootstrap, config.kafka.events_topic, users) as acknowledged:
        first = WorkerProcess(config.key, redis_url)
        workers.append(first)
        wait_until(lambda: first.metric(cached) == len(users), 60, first.output)  # every user, all its own
        second = WorkerProcess(config.key, redis_url)  # joins: some partitions move over
        workers.append(second)
        wait_until(lambda: second.metric(counted) > 200, 60, second.output)
        # The users of the partitions it gave away are no longer in its cache; those it kept still are.
        wait_until(lambda: 0 < first.metric(cached) < len(users), 30, first.output)
        assert 0 < second.metric(cached) < len(users)
        assert first.metric(cached) + second.metric(cached) == len(users)

    wait_until(
        lambda: {u: views(redis_client, config, u) for u in users} == acknowledged,
        90,
        lambda: f"{acknowledged} vs {[views(redis_client, config, u) for u in users]}\n{first.output()}",
    )


class PrivateRedis:
    """A redis-server of the test's own: SIGKILLed and started again on its files, or SIGSTOPped (a hung
    server: connections stay open and nothing answers) and SIGCONTinued."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = ports.pick(None)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.tmp_path = tmp_path
        conf = tmp_path / "redis.conf"
        conf.write_text(redis_component.redis_conf(self.port, tmp_path))
        self.command = [str(toolchain.find_tool("redis-server")), str(conf)]
        self.log = (tmp_path / "redis.log").open("ab")
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT)
        self.up()

    def up(self) -> None:
        deadline = time.monotonic() + 30
        with redis.Redis(port=self.port) as client:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    assert time.monotonic() < deadline, (self.tmp_path / "redis.log").read_text()[-2000:]
                    time.sleep(0.05)

    def restart(self) -> None:
        self.process.kill()  # SIGKILL: no chance to save anything beyond what the AOF already holds
        self.process.wait(10)
        time.sleep(1.0)  # down long enough that the worker's writes fail (not only reconnect)
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT)
        self.up()

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.resume()
        self.process.kill()
        self.process.wait(10)
        self.log.close()


@contextlib.contextmanager
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A Redis of its own (the shared one must not be killed or stopped under other tests), configured
    as the dev stack's (AOF, fsync on every write)."""
    server = PrivateRedis(tmp_path)
    try:
        yield server
    finally:
        server.close()


def test_redis_killed_and_restarted_from_its_aof_mid_stream_loses_and_doubles_nothing(
    kafka_bootstrap: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """The worker's cache then holds state Redis may not (a write cut off by the kill): the writes
    that failed are retried from what Redis holds, the version guard refuses anything else."""
    with private_redis(tmp_path) as server:
        url = server.url
        client = redis.Redis.from_url(url, decode_responses=True)
        config = worker_stack(kafka_bootstrap, url)
        users = [f"a{i}" for i in range(20)]
        with streaming(kafka_bootstrap, config.kafka.events_topic, users) as acknowledged:
            worker = WorkerProcess(config.key, url, TAILOR_WORKER_RETRY_SECONDS="0.2")
            workers.append(worker)
            wait_until(lambda: sum(views(client, config, u) for u in users) > 1500, 60, worker.output)
            server.restart()
            counted_at_restart = sum(views(client, config, u) for u in users)
            # The worker's writes failed while Redis was down, were retried, and it went on counting.
            wait_until(lambda: worker.metric("tailor_worker_redis_errors_total") > 0, 30, worker.output)
            wait_until(lambda: sum(views(client, config, u) for u in users) > counted_at_restart + 500, 30,
                       worker.output)  # fmt: skip

        wait_until(
            lambda: {u: views(client, config, u) for u in users} == acknowledged,
            90,
            lambda: f"{acknowledged} vs {[views(client, config, u) for u in users]}\n{worker.output()}",
        )
        time.sleep(1.0)
        assert {u: views(client, config, u) for u in users} == acknowledged  # and nothing more arrives
        client.close()


def test_a_hung_redis_turns_the_worker_s_liveness_red_in_time_and_it_recovers_exactly(
    kafka_bootstrap: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """Redis SIGSTOPped mid-stream: the worker's calls time out (no call blocks for ever), its batch
    is retried and the consume loop stops going round, so /healthz fails within the allowed stall
    while the process still answers /metrics (what the probe looked at before: green throughout).
    SIGCONT: green again, and every acknowledged event counted once."""
    stall = 3.0
    with private_redis(tmp_path) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        config = worker_stack(kafka_bootstrap, server.url)
        users = [f"h{i}" for i in range(10)]
        with streaming(kafka_bootstrap, config.kafka.events_topic, users) as acknowledged:
            worker = WorkerProcess(
                config.key,
                server.url,
                TAILOR_WORKER_RETRY_SECONDS="0.2",
                TAILOR_WORKER_LIVENESS_STALL_SECONDS=str(stall),
                TAILOR_WORKER_REDIS_SOCKET_TIMEOUT_SECONDS="1",
            )
            workers.append(worker)
            wait_until(lambda: sum(views(client, config, u) for u in users) > 500, 60, worker.output)
            assert worker.healthz() == 200
            server.pause()
            paused = time.monotonic()
            wait_until(lambda: worker.healthz() == 503, stall + 10, worker.output)
            red_after = time.monotonic() - paused
            assert worker.metric("tailor_worker_events_consumed_total") > 0  # /metrics still answers
            server.resume()
            wait_until(lambda: worker.healthz() == 200, 30, worker.output)
        assert stall - 1 <= red_after <= stall + 5, red_after  # the last beat came just before the pause
        assert worker.metric("tailor_worker_redis_errors_total") > 0  # the calls timed out, not blocked
        wait_until(
            lambda: {u: views(client, config, u) for u in users} == acknowledged,
            90,
            lambda: f"{acknowledged} vs {[views(client, config, u) for u in users]}\n{worker.output()}",
        )
        time.sleep(1.0)
        assert {u: views(client, config, u) for u in users} == acknowledged  # and nothing more arrives
        client.close()


def test_a_worker_waits_for_its_topics_and_makes_none(
    kafka_bootstrap: str, redis_url: str, workers: list[WorkerProcess]
) -> None:
    """The operator makes the topics; a worker that starts first says what it waits for, creates
    nothing (the local broker would auto-create a topic a client asks for), and counts once they exist."""
    config = scratch.stack_config(kafka_bootstrap, "worker-test")
    scratch.publish(redis_url, config, make_topics=False)
    worker = WorkerProcess(config.key, redis_url, TAILOR_WORKER_RETRY_SECONDS="0.2")
    workers.append(worker)
    kafka = config.kafka
    wait_until(lambda: f"{kafka.events_topic} and {kafka.dead_letter_topic} missing" in worker.output(), 30,
               worker.output)  # fmt: skip
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    assert {kafka.events_topic, kafka.dead_letter_topic}.isdisjoint(admin.list_topics(timeout=10).topics)

    topics.ensure(kafka_bootstrap, [kafka.events_topic, kafka.dead_letter_topic], kafka.partitions)
    send(producer(kafka_bootstrap), kafka.events_topic, [event("bob", category="shoes")])
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        wait_until(lambda: views(client, config, "bob") == 1, 30, worker.output)
    finally:
        client.close()
