"""Benchmark: every figure of the capacity model (docs/operating.md, "Capacity and sizing") in one run.

Redis is a private redis-server started here (no persistence, like the decide bench's), so the CPU it
reports (INFO cpu: used_cpu_sys + used_cpu_user, before and after) is this run's alone; Kafka is the
environment's (`eval "$(tailor dev env)"`). The steps, each with its ceiling from the same run:

1. worker: a backlog of --events events of --users users on a topic of ONE partition, consumed by one
   `tailor worker` (bench/worker.py): events/s of one worker on one partition (a partition is never
   shared by two workers, so this is the per-partition ceiling), worker and Redis CPU per event; the
   raw consume rate of the same partition (Kafka's side). Then live, --live-rate events/s for
   --live-seconds on 6 partitions with the users warm in the worker's cache: the steady-state CPU;
2. collector: POST /v1/events in batches of 50 for --seconds (bench/collector.py): events per CPU-second
   of the server; ceiling, a raw producer of the same messages;
3. decide: `tailor api` (decisions only) pinned to core 0, wrk on core 1, --users users with real
   profiles and the 8-rule ruleset of bench/decide.py: decisions/s at saturation and the server's and
   Redis's CPU per decision; ceiling, the bare route of the same server. Then the memory of the API's
   per-user keys those decisions left (sessions remembered);
4. memory per user profile: --profile-users users in each of three classes, written by the worker's
   ProfileWriter with 1, 10 or 50 events (a visit, a shopper, a heavy user) spread over the last day
   on the bench stack's features (3 windows, 3 dimensions): MEMORY USAGE of each profile hash (the
   dedup marks of the day's events included) and used_memory's growth per user;
5. the model: what one node of each component handles, and the sizing for --target-events events/s,
   --target-decisions decisions/s and --target-users profiles, naming what binds at each tier.

    eval "$(tailor dev env)"; .venv/bin/python bench/capacity.py [--events 100000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import _pipeline
import collector as collector_bench
import decide as decide_bench
import orjson
import redis
import worker as worker_bench

from tailor.core import events, redis_target
from tailor.core.events.occurrence import Occurrence, from_event
from tailor.core.profile import store
from tailor.devstack import ports, scratch, toolchain

GIB = 1024**3
CLASSES = (("one visit", 1), ("a shopper", 10), ("a heavy user", 50))
# The share of each class among 10 M profiles: most profiles are of people seen once or twice.
MIX = (0.6, 0.3, 0.1)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f}"


def private_redis(workdir: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = ports.pick(None)
    process = subprocess.Popen(
        [str(toolchain.find_tool("redis-server")), "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    client.close()
    return url, process


def redis_cpu(url: str) -> float:
    with redis.Redis.from_url(url) as client:
        return worker_bench.redis_cpu(client)


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


# --- 1. worker ------------------------------------------------------------------------------------


def measure_worker(kafka: str, url: str, args: argparse.Namespace) -> dict[str, float]:
    target = redis_target.RedisTarget.from_environment(url=url)
    config = _pipeline.stack_config(kafka, partitions=1)
    _pipeline.publish(target, config)
    worker_bench.fill(kafka, config.kafka.events_topic, args.events, args.users)
    consume_rate, consume_per_cpu = worker_bench.raw_consume(kafka, config.kafka.events_topic, args.events)
    rate, cpu, redis_spent, _ = worker_bench.worker(target, config.key, args.events)
    figures = {"load_backlog": os.getloadavg()[0]}
    _pipeline.cleanup(url, config)
    live_rate, live_cpu, live_redis, lag = worker_bench.live(
        kafka, url, args.users, args.live_rate, args.live_seconds
    )
    figures.update(
        consume_rate=consume_rate, consume_cpu=1 / consume_per_cpu, rate=rate, cpu=cpu, redis=redis_spent,
        live_rate=live_rate, live_cpu=live_cpu, live_redis=live_redis, live_lag=lag,
        load_live=os.getloadavg()[0],
    )  # fmt: skip
    return figures


# --- 2. collector ---------------------------------------------------------------------------------


def measure_collector(kafka: str, url: str, args: argparse.Namespace) -> dict[str, float]:
    config = _pipeline.stack_config(kafka)
    scratch.publish(url, config)
    _, raw_per_cpu = collector_bench.raw_producer(kafka, config.kafka.events_topic, 100_000)
    rate, per_cpu, failed, _ = collector_bench.collector(kafka, url, config.key, "thread", args.seconds, 32)
    figures = {"raw_per_cpu": raw_per_cpu, "rate": rate, "per_cpu": per_cpu, "failed": failed,
               "load": os.getloadavg()[0]}  # fmt: skip
    _pipeline.cleanup(url, config)
    event = _pipeline.shopper_event("u-00001234")
    figures["event_bytes"] = len(orjson.dumps(event)) + 200  # value, key and the CloudEvents headers
    return figures


# --- 3. decide ------------------------------------------------------------------------------------


def measure_decide(url: str, workdir: Path, args: argparse.Namespace) -> dict[str, float]:
    target = redis_target.RedisTarget.from_environment(url=url)
    stack = f"capacity-{uuid.uuid4().hex[:6]}/main"
    published = decide_bench.bench_ruleset(stack)
    asyncio.run(decide_bench._publish(target, published))
    client = redis.Redis.from_url(url)
    decide_bench.populate(target, published, args.users)
    before_state = used_memory(client)
    port = ports.pick(None)
    api = decide_bench.start_api(target, stack, port, workdir / "api.log", None)
    try:
        script = workdir / "decide.lua"
        script.write_text(decide_bench.WRK_SCRIPT.format(users=args.users))
        decide_bench.saturate(port, api.pid, "/v1/decide", 3, script)  # warm-up: every session remembered
        bare = decide_bench.saturate(port, api.pid, decide_bench.CEILING_PATH, args.seconds, None)
        redis_before = redis_cpu(url)
        decided = decide_bench.saturate(port, api.pid, "/v1/decide", args.seconds, script)
        redis_spent = redis_cpu(url) - redis_before
    finally:
        api.terminate()
        api.wait(10)
    state = used_memory(client) - before_state
    client.close()
    decisions = decided["rate"] * args.seconds
    return {
        "bare": bare["rate"], "bare_cores": bare["cpu"], "rate": decided["rate"], "cores": decided["cpu"],
        "cpu": decided["cpu"] / decided["rate"], "redis": redis_spent / decisions,
        "errors": decided["errors"],
        "state_per_user": state / args.users, "load": os.getloadavg()[0],
    }  # fmt: skip


# --- 4. memory per profile -----------------------------------------------------------------------


def measure_profiles(url: str, per_class: int) -> dict[str, tuple[float, float]]:
    """Per class: (mean MEMORY USAGE of a profile hash, used_memory growth per user)."""
    os.environ.setdefault("TAILOR_NATIVE", "on")
    config = _pipeline.stack_config("unused:9092")
    dimensions = config.features.dimensions
    client = redis.Redis.from_url(url)
    store.install(client)
    writer = store.ProfileWriter(config, cache_users=1_000, events_per_user_per_minute=10**6)
    now = time.time()
    chooser = random.Random(15)
    # A first write loads the guard's function library and grows Redis's tables: not a profile's cost.
    warm = {f"warm-{i}": [from_event(events.Event.model_validate(_pipeline.shopper_event(f"warm-{i}", now)),
                                     now, dimensions)] for i in range(200)}  # fmt: skip
    writer.write(client, warm, now)
    result: dict[str, tuple[float, float]] = {}
    for name, per_user in CLASSES:
        users = [f"{name.replace(' ', '-')}-{i}" for i in range(per_class)]
        before = used_memory(client)
        for start in range(0, per_class, 500):
            batch: dict[str, list[Occurrence]] = {}
            for user in users[start : start + 500]:
                stamps = sorted(now - chooser.uniform(0, 86_000) for _ in range(per_user))
                batch[user] = [
                    from_event(
                        events.Event.model_validate(_pipeline.shopper_event(user, at)), now, dimensions
                    )
                    for at in stamps
                ]
            writer.write(client, batch, now)
        grown = (used_memory(client) - before) / per_class
        sample = users[:: max(1, per_class // 500)]
        pipe = client.pipeline(transaction=False)
        for user in sample:
            pipe.memory_usage(store.profile_key(config.key, user), samples=0)
        usages = [usage for usage in pipe.execute() if usage]
        result[name] = (sum(usages) / len(usages), grown)
    client.close()
    return result


# --- 5. the model --------------------------------------------------------------------------------


def model(
    worker: dict[str, float], collector: dict[str, float], decide: dict[str, float],
    profiles: dict[str, tuple[float, float]], args: argparse.Namespace,
) -> None:  # fmt: skip
    e, d, u = args.target_events, args.target_decisions, args.target_users
    events_headroom, decide_headroom = args.events_headroom, args.decide_headroom
    profile_bytes = sum(share * profiles[name][1] for (name, _), share in zip(CLASSES, MIX, strict=True))
    api_state = max(decide["state_per_user"], 0.0)
    worker_cpu = max(worker["live_cpu"], worker["cpu"])
    redis_event = max(worker["live_redis"], worker["redis"])

    print("\nOne node of each (one process; Redis: one primary, whose commands run on one core)")
    _pipeline.table([
        ["component", "measured", "per core", "CPU per unit", "binds"],
        ["collector (tailor api, events)", f"{collector['rate']:,.0f} events/s",
         f"{collector['per_cpu']:,.0f} events/s", f"{1e6 / collector['per_cpu']:.1f} µs/event",
         f"CPU; raw producer {collector['raw_per_cpu']:,.0f} per CPU-s "
         f"({collector['per_cpu'] / collector['raw_per_cpu']:.2f})"],
        ["worker (one process, one partition, backlog)", f"{worker['rate']:,.0f} events/s",
         f"{1 / worker['cpu']:,.0f} events/s", f"{worker['cpu'] * 1e6:.1f} µs/event",
         "its consume loop (one process = one partition's ceiling)"],
        [f"worker, live at {args.live_rate:,}/s", f"{worker['live_rate']:,.0f} events/s",
         f"{1 / worker['live_cpu']:,.0f} events/s", f"{worker['live_cpu'] * 1e6:.1f} µs/event",
         f"lag at the end {worker['live_lag']:,.0f}"],
        ["Kafka, raw consume of one partition", f"{worker['consume_rate']:,.0f} events/s", "-",
         f"{worker['consume_cpu'] * 1e6:.1f} µs/event (client)", "ceiling of the worker row"],
        ["content API (decisions only, core 0)", f"{decide['rate']:,.0f} decisions/s",
         f"{decide['rate'] / decide['cores']:,.0f} decisions/s", f"{decide['cpu'] * 1e6:.1f} µs/decision",
         f"CPU; bare route {decide['bare']:,.0f}/s ({decide['rate'] / decide['bare']:.2f})"],
        ["Redis, the worker's writes", f"{1 / redis_event:,.0f} events/s", "(one core)",
         f"{redis_event * 1e6:.1f} µs/event", "its one command thread"],
        ["Redis, the decisions' reads", f"{1 / decide['redis']:,.0f} decisions/s", "(one core)",
         f"{decide['redis'] * 1e6:.1f} µs/decision", "its one command thread"],
        *[[f"Redis memory, a profile of {name} ({per} events/day)", f"{profiles[name][1]:,.0f} B/user",
           "-", f"MEMORY USAGE {profiles[name][0]:,.0f} B", f"{GIB / profiles[name][1] / 1e6:.2f} M per GiB"]
          for name, per in CLASSES],
        ["Redis memory, the API's keys of one user", f"{api_state:,.0f} B/user", "-",
         "sessions remembered (30 min TTL)", "-"],
    ])  # fmt: skip

    # Sizing. Event path: headroom `events_headroom` (catch-up after an outage); decisions at
    # `decide_headroom` of saturation (docs/architecture.md §12: p99 at 70 %).
    collector_cores = e / collector["per_cpu"] / decide_headroom
    partitions_rate = worker["rate"] * events_headroom
    partitions = math.ceil(e / partitions_rate)
    worker_cores = e * worker_cpu / events_headroom
    workers = max(partitions, math.ceil(worker_cores))
    api_cores = d * decide["cpu"] / decide_headroom
    redis_cpu_cores = (e * redis_event + d * decide["redis"]) / args.redis_headroom
    memory = u * (profile_bytes + api_state * args.active_share)
    usable = args.redis_node_gib * GIB * 0.75  # maxmemory at 3/4 of the node, the rest for forks and buffers
    shards_cpu, shards_memory = math.ceil(redis_cpu_cores), math.ceil(memory / usable)
    shards = max(shards_cpu, shards_memory)
    kafka_mb = e * collector["event_bytes"] / 1e6
    print(f"\nSizing for {e:,} events/s, {d:,} decisions/s and {u / 1e6:g} M profiles "
          f"(events at {events_headroom:.0%} of capacity, decisions at {decide_headroom:.0%}, "
          f"Redis at {args.redis_headroom:.0%} of its core)")  # fmt: skip
    _pipeline.table([
        ["tier", "needs", "so", "binds"],
        ["collector", f"{collector_cores:.1f} cores", f"{math.ceil(collector_cores)} pods of 1 core "
         "(spec.contentApi.collector.separate)", "CPU"],
        ["Kafka events topic", f"{kafka_mb:.0f} MB/s in ({kafka_mb * 3:.0f} MB/s with replication 3)",
         f"{partitions} partitions (one worker's {worker['rate']:,.0f}/s at {events_headroom:.0%})",
         "partitions: one worker per partition"],
        ["workers", f"{worker_cores:.1f} cores", f"{workers} workers, one a partition, "
         f"{worker_cores / workers:.2f} core each", "the per-partition rate, then CPU per event"],
        ["Redis, CPU", f"{redis_cpu_cores:.1f} cores of command thread "
         f"({e * redis_event:.2f} events + {d * decide['redis']:.2f} decisions)",
         f"{shards_cpu} primaries", "one thread per primary"],
        ["Redis, memory", f"{memory / GIB:.0f} GiB ({profile_bytes:,.0f} B/profile in the mix "
         f"{'/'.join(f'{m:.0%}' for m in MIX)})",
         f"{shards_memory} primaries of {args.redis_node_gib} GiB (maxmemory 75 %)", "memory"],
        ["Redis Cluster", f"{shards} primaries (+ a replica each)",
         "binds: " + ("memory" if shards_memory >= shards_cpu else "CPU"), ""],
        ["content API", f"{api_cores:.1f} cores", f"{math.ceil(api_cores)} replicas of 1 core", "CPU"],
    ])  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000, help="the worker's backlog")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--live-rate", type=int, default=5_000)
    parser.add_argument("--live-seconds", type=float, default=5.0)
    parser.add_argument("--seconds", type=int, default=5, help="each saturation run (collector, decide)")
    parser.add_argument("--profile-users", type=int, default=2_000, help="users per profile class")
    parser.add_argument("--target-events", type=int, default=100_000)
    parser.add_argument("--target-decisions", type=int, default=10_000)
    parser.add_argument("--target-users", type=int, default=10_000_000)
    parser.add_argument("--events-headroom", type=float, default=0.5)
    parser.add_argument("--decide-headroom", type=float, default=0.5)
    parser.add_argument("--redis-headroom", type=float, default=0.5)
    parser.add_argument("--redis-node-gib", type=int, default=32)
    parser.add_argument(
        "--active-share", type=float, default=0.05,
        help="share of the profiles whose API keys (sessions, caps) are alive at once",
    )  # fmt: skip
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        sys.exit("bench/capacity.py needs wrk and taskset (make setup installs wrk)")
    kafka = os.environ.get("TAILOR_KAFKA_BOOTSTRAP") or _pipeline.environment()[0]
    print(f"bench/capacity.py: load {load()} at the start ({time.strftime('%H:%M:%S')})", flush=True)
    with tempfile.TemporaryDirectory(prefix="tailor-capacity-") as temporary:
        workdir = Path(temporary)
        url, server = private_redis(workdir)
        try:
            profiles = measure_profiles(url, args.profile_users)
            print(f"[profiles] done, load {load()}", flush=True)
            redis.Redis.from_url(url).flushall()
            worker = measure_worker(kafka, url, args)
            print(f"[worker] done, load {load()}", flush=True)
            collector = measure_collector(kafka, url, args)
            print(f"[collector] done, load {load()}", flush=True)
            redis.Redis.from_url(url).flushall()
            decide = measure_decide(url, workdir, args)
            print(f"[decide] done, load {load()}", flush=True)
        finally:
            server.terminate()
            server.wait(10)
    print(f"\nLoad average: worker backlog {worker['load_backlog']:.1f}, live {worker['load_live']:.1f}, "
          f"collector {collector['load']:.1f}, decide {decide['load']:.1f}; at the end {load()} "
          f"({time.strftime('%H:%M:%S')}). Collector non-202: {collector['failed']:.0f}; "
          f"decide non-2xx: {decide['errors']:.0f}")  # fmt: skip
    model(worker, collector, decide, profiles, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
