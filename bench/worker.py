"""Benchmark: one worker process against the raw consume rate and Redis's own pipelined rate.

A topic is filled first (not timed) with --events realistic events of --users users. Then, in one run:

1. ceiling: a bare confluent-kafka consumer reading them all, doing nothing with them;
2. `tailor worker` (a real process, its own consumer group) consuming, validating, deduplicating,
   aggregating into Redis and storing offsets: events/s from its first to its last event, read from
   its /metrics; with the CPU it and Redis spent per event. This is a backlog: every event is older
   than the worker's clock, so most land in buckets other than the newest (the costlier write).
   Then the same backlog on a fresh stack with --late-share of its events (5 %) stamped 1 to 20
   minutes before the rest, as clients that queued them while offline send them: each lands in an
   older bucket of the windows that hold it (docs/pipeline.md, "Late events"), the cost measured
   beside the all-fresh figure. Then the same backlog with TAILOR_NATIVE=off: the Python references
   instead of the compiled hot path (native/), for the gain measured in the same run;
3. live: another worker, with its users warm in its cache, while events are produced at --live-rate
   for --live-seconds, stamped by Kafka as the collector's are (the steady state): the CPU it and
   Redis spend per event, and whether it kept up;
4. ceiling: `redis-benchmark` pipelined (SET, -P 64) on the same Redis.

    eval "$(tailor dev env)"; .venv/bin/python bench/worker.py [--events 200000] [--users 10000]

With --compare tls or --compare appendfsync it measures one Redis setting instead: the backlog run
(2.) on two private redis-servers alike but for that setting (tailor.devstack.secure_redis: the same
ACL user), in turns for --rounds rounds: plain vs TLS (a CA bundle, as ElastiCache or Memorystore
ask), or an append-only file fsynced every second vs before every write is acknowledged (the managed
Redis' spec.redis.appendfsync). Each run's events/s, worker and Redis CPU per event and the load
average; the ratio of the best rounds.

With --redis-cluster (--compare cluster) the two setups are one redis-server and a Redis Cluster of 3
primaries + 3 replicas (tailor.devstack.redis_cluster), all persisting alike (AOF, appendfsync always):
the ratio of the worker's events per worker CPU-second on the cluster to that on one Redis, and the
Redis CPU per event of all six nodes against the one.

With --kafka-security WAY (sasl-ssl-scram-sha-512, sasl-ssl-plain or mtls: the dev stack's secured
listeners, docs/devstack.md) it measures the cost of Kafka's TLS (and SASL) on the worker instead:
the backlog run (2.) over PLAINTEXT and over that listener of the same broker, in turns for --rounds
rounds, on the environment's Redis; the same table and ratios.

    .venv/bin/python bench/worker.py --kafka-security sasl-ssl-scram-sha-512 [--rounds 3] [--stack default]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import _pipeline
import orjson
import redis
from confluent_kafka import Consumer, Producer

from tailor import devstack
from tailor.core import redis_target
from tailor.core.rules import compiler, specs
from tailor.devstack import paths, ports, redis_cluster, scratch, secure_redis
from tailor.devstack.components.kafka import SECURED

TARGET = 50_000


def fill(kafka: str, topic: str, count: int, users: int, late_share: float = 0.0) -> None:
    """`count` events of `users` users stamped over the last minute; `late_share` of them (chosen at
    random) stamped 1 to 20 minutes earlier still."""
    producer = Producer({"bootstrap.servers": kafka, "linger.ms": 20, "enable.idempotence": True})
    now = time.time()
    chooser = random.Random(7)
    for i in range(count):
        at = now - (count - i) * 60 / count
        if late_share and chooser.random() < late_share:
            at -= chooser.uniform(60, 1200)
        event = _pipeline.shopper_event(f"user-{i % users}", at)
        while True:
            try:
                producer.produce(topic, orjson.dumps(event), event["userId"].encode())
                break
            except BufferError:
                producer.poll(0.01)
    assert producer.flush(120) == 0


def raw_consume(kafka: str, topic: str, count: int) -> tuple[float, float]:
    consumer = Consumer(
        {"bootstrap.servers": kafka, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    seen = 0
    start = cpu = 0.0
    while seen < count:
        messages = consumer.consume(1000, timeout=1.0)
        if messages and not start:
            start, cpu = time.perf_counter(), time.process_time()
        seen += sum(1 for m in messages if m.error() is None)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    consumer.close()
    return count / wall, count / cpu


def metric_sum(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            text = reply.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def worker(
    target: redis_target.RedisTarget,
    stack: str,
    count: int,
    *,
    native: bool = True,
    redis_seconds: Callable[[], float] | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[float, float, float, float]:
    """(events/s, worker CPU-s per event, Redis CPU-s per event, duplicates seen). `native=False`:
    the Python references instead of the compiled hot path (TAILOR_NATIVE=off). `redis_seconds`:
    Redis's CPU so far (default: INFO cpu, which an ACL user without @dangerous may not ask). `env`
    adds to the worker's environment."""
    port = ports.pick(None)
    log = Path(tempfile.gettempdir()) / f"tailor-bench-worker-{uuid.uuid4().hex[:6]}.log"
    client = target.client()
    spent = redis_seconds or (lambda: redis_cpu(client))
    process = _pipeline.tailor(
        ["worker", "--stack", stack, "--metrics-port", str(port)],
        target,
        log,
        TAILOR_WORKER_METRICS_HOST="127.0.0.1",
        TAILOR_WORKER_GROUP_ID=f"bench-{uuid.uuid4().hex[:6]}",
        TAILOR_NATIVE="on" if native else "off",
        **(env or {}),
    )
    try:
        processed = "tailor_worker_events_processed_total"
        deadline = time.monotonic() + 600
        while metric_sum(port, processed) == 0:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"the worker processed nothing; see {log}")
            time.sleep(0.01)
        # Scrapes cost the worker CPU (its /metrics walks /proc): a few per second, and the rate is
        # taken between the first and last scrape that fell inside the run, so it stays exact.
        samples: list[tuple[float, float, float, float]] = []  # (time, processed, worker CPU, Redis CPU)
        while True:
            now = time.perf_counter()
            done = metric_sum(port, processed)
            samples.append((now, done, _pipeline.tree_cpu_seconds(process.pid), spent()))
            if done >= count:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the worker processed only {done} of {count}; see {log}")
            time.sleep(0.25)
        inside = [sample for sample in samples if sample[1] < count] or samples[:1]
        start, end = inside[0], inside[-1] if len(inside) > 1 else samples[-1]
        wall, events = end[0] - start[0], end[1] - start[1]
        cpu, redis_spent = end[2] - start[2], end[3] - start[3]
        duplicates = metric_sum(port, "tailor_worker_dedup_hits_total")
        batches = metric_sum(port, "tailor_worker_processing_seconds_count")
        batch_seconds = metric_sum(port, "tailor_worker_processing_seconds_sum")
        loads = metric_sum(port, "tailor_worker_profile_loads_total")
        print(
            f"[worker] {batches:.0f} batches, {done / max(batches, 1):.0f} events and "
            f"{1000 * batch_seconds / max(batches, 1):.1f} ms per batch (take to offsets stored); "
            f"{loads:.0f} profiles loaded from Redis"
        )
    finally:
        process.terminate()
        process.wait(30)
        client.close()
    return events / wall, cpu / events, redis_spent / events, duplicates


def compare(kind: str, kafka: str, args: argparse.Namespace) -> None:
    """The backlog run on two Redis setups that differ only in `kind` (tls, appendfsync, cluster), in
    turns. `cluster`: one redis-server against a Redis Cluster of 3 primaries + 3 replicas
    (tailor.devstack.redis_cluster), every node persisting alike (AOF, appendfsync always); Redis CPU is
    all six nodes' (the replicas' too)."""
    aof = ("appendonly yes",)
    with tempfile.TemporaryDirectory(prefix="tailor-bench-redis-", dir=args.redis_dir) as scratch_dir:
        where = Path(scratch_dir)
        servers: dict[str, Any]
        if kind == "cluster":
            single = secure_redis.start(where / "single", tls=False, extra=(*aof, "appendfsync always"))
            servers = {"single": single, "cluster": redis_cluster.start(where / "cluster")}
        elif kind == "tls":
            servers = {"plain": secure_redis.start(where / "plain", tls=False),
                       "TLS": secure_redis.start(where / "tls")}  # fmt: skip
        else:
            servers = {
                policy: secure_redis.start(where / policy, tls=False, extra=(*aof, f"appendfsync {policy}"))
                for policy in ("everysec", "always")
            }
        runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in servers}
        lines = [["run", "events/s", "worker CPU µs/event", "Redis CPU µs/event", "load"]]
        try:
            for round_ in range(1, args.rounds + 1):
                for name, server in servers.items():
                    if isinstance(server, redis_cluster.RedisCluster):
                        target, nodes = server.target(), server.nodes
                        spent: Callable[[], float] = lambda: sum(n.cpu_seconds() for n in nodes)  # noqa: E731,B023
                    else:
                        target, spent = server.target(client_pair=False), server.cpu_seconds
                    config = _pipeline.stack_config(kafka)
                    _pipeline.publish(target, config)
                    fill(kafka, config.kafka.events_topic, args.events, args.users)
                    rate, cpu, redis_spent, _ = worker(target, config.key, args.events, redis_seconds=spent)
                    load = os.getloadavg()[0]
                    _pipeline.delete_topics(config)
                    runs[name].append((rate, cpu, redis_spent))
                    lines.append([f"{name}, round {round_}", f"{rate:,.0f}", f"{cpu * 1e6:.1f}",
                                  f"{redis_spent * 1e6:.1f}", f"{load:.1f}"])  # fmt: skip
        finally:
            for server in servers.values():
                server.stop()
    first, second = list(servers)
    best = {name: max(run[0] for run in values) for name, values in runs.items()}
    least_worker = {name: min(run[1] for run in values) for name, values in runs.items()}
    least_redis = {name: min(run[2] for run in values) for name, values in runs.items()}
    print(f"bench/worker.py --compare {kind}: backlog of {args.events:,} events, {args.users:,} users, "
          f"{args.rounds} rounds in turns")  # fmt: skip
    _pipeline.table(lines)
    print(f"{second} / {first}, best rounds: events/s {best[second] / best[first]:.2f}, "
          f"worker CPU per event {least_worker[second] / least_worker[first]:.2f}, "
          f"Redis CPU per event {least_redis[second] / least_redis[first]:.2f}")  # fmt: skip
    if kind == "cluster":
        print(f"worker events per worker CPU-second, cluster / single (best rounds): "
              f"{least_worker[first] / least_worker[second]:.2f}")  # fmt: skip
        # Each round's pair ran back to back: on a shared box its ratio is the steadier figure.
        pairs = [one[1] / other[1] for one, other in zip(runs[first], runs[second], strict=True)]
        redis_pairs = [other[2] / one[2] for one, other in zip(runs[first], runs[second], strict=True)]
        print(f"per round, worker events per CPU-second cluster / single: "
              f"{', '.join(f'{pair:.2f}' for pair in pairs)} (median {statistics.median(pairs):.2f}); "
              f"Redis CPU per event cluster / single: {', '.join(f'{pair:.2f}' for pair in redis_pairs)} "
              f"(median {statistics.median(redis_pairs):.2f})")  # fmt: skip


def compare_kafka(way: str, kafka: str, redis_url: str, args: argparse.Namespace) -> None:
    """The backlog run over PLAINTEXT and over the dev stack's secured listener `way`, in turns."""
    endpoints = devstack.Stack(args.stack).kafka_secure()
    bootstrap, spec = endpoints.stack_spec(way)
    security = compiler.kafka_security(specs.KafkaSecuritySpec.model_validate(spec))
    target = redis_target.RedisTarget.from_environment(url=redis_url)
    runs: dict[str, list[tuple[float, float, float]]] = {"PLAINTEXT": [], way: []}
    lines = [["run", "events/s", "worker CPU µs/event", "Redis CPU µs/event", "load"]]
    with tempfile.TemporaryDirectory(prefix="tailor-bench-kafka-secrets-") as directory:
        secrets = Path(directory)
        for name, data in endpoints.secret_files().items():  # as the operator mounts them in a pod
            (secrets / name).parent.mkdir(parents=True, exist_ok=True)
            (secrets / name).write_bytes(data)
        for round_ in range(1, args.rounds + 1):
            order = list(runs) if round_ % 2 else list(reversed(runs))  # each side first in turn
            for side in order:
                config = _pipeline.stack_config(kafka)
                if side != "PLAINTEXT":
                    update = {"bootstrap_servers": bootstrap, "security": security}
                    config = config.model_copy(update={"kafka": config.kafka.model_copy(update=update)})
                _pipeline.publish(target, config, secrets)
                fill(kafka, config.kafka.events_topic, args.events, args.users)  # PLAINTEXT, not timed
                mounted = {"TAILOR_KAFKA_SECRETS_DIR": str(secrets)}
                rate, cpu, redis_spent, _ = worker(target, config.key, args.events, env=mounted)
                load = os.getloadavg()[0]
                scratch.forget(redis_url, config.key)
                _pipeline.delete_topics(config, secrets)
                runs[side].append((rate, cpu, redis_spent))
                lines.append([f"{side}, round {round_}", f"{rate:,.0f}", f"{cpu * 1e6:.1f}",
                              f"{redis_spent * 1e6:.1f}", f"{load:.1f}"])  # fmt: skip
    best = {name: max(run[0] for run in values) for name, values in runs.items()}
    least = {name: min(run[1] for run in values) for name, values in runs.items()}
    median = {name: statistics.median(run[1] for run in values) for name, values in runs.items()}
    print(f"bench/worker.py --kafka-security {way}: backlog of {args.events:,} events, "
          f"{args.users:,} users, {args.rounds} rounds in turns")  # fmt: skip
    _pipeline.table(lines)
    plain = "PLAINTEXT"
    print(
        f"{way} / {plain}: events/s (best rounds) {best[way] / best[plain]:.2f}, worker CPU per event "
        f"{least[way] / least[plain]:.2f} (least), {median[way] / median[plain]:.2f} (median)"
    )


def live(
    kafka: str, redis_url: str, users: int, rate: int, seconds: float
) -> tuple[float, float, float, float]:
    """(events/s processed, worker CPU-s per event, Redis CPU-s per event, lag at the end) while
    events are produced at `rate` for `seconds`, after one event per user has warmed the cache."""
    config = _pipeline.stack_config(kafka)
    scratch.publish(redis_url, config)
    topic = config.kafka.events_topic
    # Made beforehand, without a timestamp: each counts at its Kafka time, when it is produced.
    payloads = []
    for i in range(users + int(rate * seconds)):
        event = _pipeline.shopper_event(f"user-{i % users}")
        del event["timestamp"]
        payloads.append((orjson.dumps(event), event["userId"].encode()))
    producer = Producer({"bootstrap.servers": kafka, "linger.ms": 5, "enable.idempotence": True})

    def produce(items: list[tuple[bytes, bytes]], per_second: float) -> None:
        start = time.perf_counter()
        for n, (value, key) in enumerate(items):
            if per_second and n % 200 == 0:
                time.sleep(max(0.0, n / per_second - (time.perf_counter() - start)))
            while True:
                try:
                    producer.produce(topic, value, key)
                    break
                except BufferError:
                    producer.poll(0.01)
            producer.poll(0)
        producer.flush(60)

    port = ports.pick(None)
    log = Path(tempfile.gettempdir()) / f"tailor-bench-worker-live-{uuid.uuid4().hex[:6]}.log"
    client = redis.Redis.from_url(redis_url)
    process = _pipeline.tailor(
        ["worker", "--stack", config.key, "--metrics-port", str(port)], redis_url, log,
        TAILOR_WORKER_METRICS_HOST="127.0.0.1",
    )  # fmt: skip
    processed = "tailor_worker_events_processed_total"
    try:
        produce(payloads[:users], 0)  # warm-up: every user once, as fast as it goes
        deadline = time.monotonic() + 300
        while metric_sum(port, processed) < users:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"the live worker did not warm up; see {log}")
            time.sleep(0.1)
        before = (time.perf_counter(), metric_sum(port, processed), _pipeline.tree_cpu_seconds(process.pid),
                  redis_cpu(client))  # fmt: skip
        sender = threading.Thread(target=produce, args=(payloads[users:], rate))
        sender.start()
        sender.join()
        time.sleep(0.5)  # what was produced last is counted (or shows as lag)
        after = (time.perf_counter(), metric_sum(port, processed), _pipeline.tree_cpu_seconds(process.pid),
                 redis_cpu(client))  # fmt: skip
        lag = metric_sum(port, "tailor_worker_consumer_lag")
    finally:
        process.terminate()
        process.wait(30)
        client.close()
        _pipeline.cleanup(redis_url, config)
    events = after[1] - before[1]
    return (
        events / (after[0] - before[0]),
        (after[2] - before[2]) / events,
        (after[3] - before[3]) / events,
        lag,
    )


def redis_benchmark(redis_url: str) -> float:
    """SETs/s, pipelined 64 deep, on one key of its own (removed after: the Redis may be shared)."""
    parts = urllib.parse.urlparse(redis_url)
    key = f"tailor:bench:ceiling:{uuid.uuid4().hex[:8]}"
    output = subprocess.run(
        ["redis-benchmark", "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 6379),
         "-P", "64", "-n", "1000000", "-q", "SET", key, "x"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    redis.Redis.from_url(redis_url).delete(key)
    return float(re.findall(r"([\d.]+) requests per second", output.replace("\r", "\n"))[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--live-rate", type=int, default=20_000, help="events/s produced in the live run")
    parser.add_argument("--live-seconds", type=float, default=10.0)
    parser.add_argument(
        "--late-share", type=float, default=0.05,
        help="share of events 1-20 minutes late in the second backlog run (0: skip it)",
    )  # fmt: skip
    parser.add_argument(
        "--no-python-reference", dest="python_reference", action="store_false",
        help="skip the backlog run with the Python references (TAILOR_NATIVE=off)",
    )  # fmt: skip
    parser.add_argument(
        "--compare", choices=("tls", "appendfsync", "cluster"),
        help="only the backlog run on two private Redis setups: plain vs TLS, everysec vs always, or "
        "one redis-server vs a Redis Cluster of 3 primaries + 3 replicas",
    )  # fmt: skip
    parser.add_argument(
        "--kafka-security", choices=SECURED,
        help="only the backlog run over PLAINTEXT and over this listener of the dev stack's broker",
    )  # fmt: skip
    parser.add_argument("--stack", default=paths.DEFAULT_STACK_NAME, help="--kafka-security: the dev stack")
    parser.add_argument("--rounds", type=int, default=2, help="--compare: runs per side, in turns")
    parser.add_argument(
        "--redis-dir", default=None, help="--compare: where the servers keep their files (a real disk)"
    )
    parser.add_argument(
        "--redis-cluster", action="store_true", help="the same as --compare cluster (issue 15's ratio)"
    )
    args = parser.parse_args()
    if args.redis_cluster:
        args.compare = "cluster"
    if args.compare:
        kafka = os.environ.get("TAILOR_KAFKA_BOOTSTRAP") or _pipeline.environment()[0]
        compare(args.compare, kafka, args)
        return 0
    kafka, redis_url = _pipeline.environment()
    if args.kafka_security:
        compare_kafka(args.kafka_security, kafka, redis_url, args)
        return 0
    target = redis_target.RedisTarget.from_environment(url=redis_url)
    config = _pipeline.stack_config(kafka)
    scratch.publish(redis_url, config)
    fill(kafka, config.kafka.events_topic, args.events, args.users)

    consume_rate, consume_per_cpu = raw_consume(kafka, config.kafka.events_topic, args.events)
    rate, worker_cpu, redis_spent, duplicates = worker(target, config.key, args.events)
    _pipeline.cleanup(redis_url, config)
    late: tuple[float, float, float, float] | None = None
    if args.late_share:  # the same backlog with some events late, on a fresh stack
        config = _pipeline.stack_config(kafka)
        scratch.publish(redis_url, config)
        fill(kafka, config.kafka.events_topic, args.events, args.users, args.late_share)
        late = worker(target, config.key, args.events)
        _pipeline.cleanup(redis_url, config)
    reference: tuple[float, float, float, float] | None = None
    if args.python_reference:  # the same backlog on a fresh stack, counted by the Python references
        config = _pipeline.stack_config(kafka)
        scratch.publish(redis_url, config)
        fill(kafka, config.kafka.events_topic, args.events, args.users)
        reference = worker(target, config.key, args.events, native=False)
        _pipeline.cleanup(redis_url, config)
    live_rate, live_cpu, live_redis, live_lag = live(
        kafka, redis_url, args.users, args.live_rate, args.live_seconds
    )
    set_rate = redis_benchmark(redis_url)
    verdict = "met" if rate >= TARGET else "MISSED"
    _pipeline.table([
        ["stage", "events/s", "ratio", "CPU µs/event", "note"],
        ["raw consume, 1 process (ceiling)", f"{consume_rate:,.0f}", "1.00", f"{1e6 / consume_per_cpu:.1f}",
         "consumer only"],
        ["tailor worker, 1 process, backlog", f"{rate:,.0f}", f"{rate / consume_rate:.2f}",
         f"{worker_cpu * 1e6:.1f}", f"target {TARGET:,} ({verdict}); {duplicates:.0f} duplicates"],
        ["  Redis CPU for the worker's writes", "-", "-", f"{redis_spent * 1e6:.1f}",
         f"= {1 / redis_spent:,.0f} events/s per Redis core"],
        *([[f"  the same, {args.late_share:.0%} of events 1-20 min late", f"{late[0]:,.0f}",
            f"{late[0] / consume_rate:.2f}", f"{late[1] * 1e6:.1f}",
            f"{late[0] / rate:.2f} of all-fresh; Redis {late[2] * 1e6:.1f} µs/event"]]
          if late else []),
        *([["  the same, Python references", f"{reference[0]:,.0f}", f"{reference[0] / consume_rate:.2f}",
            f"{reference[1] * 1e6:.1f}", f"TAILOR_NATIVE=off: compiled path {rate / reference[0]:.2f}x"]]
          if reference else []),
        [f"tailor worker, live at {args.live_rate:,}/s", f"{live_rate:,.0f}",
         f"{live_rate / consume_rate:.2f}", f"{live_cpu * 1e6:.1f}",
         f"= {1 / live_cpu:,.0f} events/s per worker core; lag at the end {live_lag:,.0f}"],
        ["  Redis CPU for the worker's writes", "-", "-", f"{live_redis * 1e6:.1f}",
         f"= {1 / live_redis:,.0f} events/s per Redis core"],
        ["redis-benchmark SET -P 64 (ceiling)", f"{set_rate:,.0f} ops/s", f"{rate / set_rate:.2f}",
         f"{1e6 / set_rate:.1f}", "simplest write, pipelined"],
    ])  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
