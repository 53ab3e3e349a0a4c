"""Benchmark: which client carries the decision's Redis calls on a Redis Cluster (issue 15, item 1).

The issue asks for a maintained client where it meets the benchmarks (redis-py's
redis.asyncio.cluster.RedisCluster) and a hand-written path only where a benchmark in the same run
shows why. This runs the decision's own calls, in this process, through each client in turns:

  resp          tailor_api.resp.Connection on one redis-server (today's hot path: the reference);
  resp-cluster  tailor_api.resp_cluster.ClusterConnection on the cluster;
  redis-py      redis.asyncio.Redis, a pipeline per call, on the one redis-server;
  redis-py-cluster  redis.asyncio.cluster.RedisCluster, a pipeline per call, on the cluster.

One "decision" is what GET /v1/decide sends for a user with a per-user capped rule: the one read
(tailor_api.user_context.ContextRead: HMGET of the profile, HGETALL of the session, ZRANGEBYSCORE of
the suppressions, ZCOUNT of the cap window), then the session memory written (HSET + EXPIRE; the
resp clients send it without waiting, as decide does; redis-py awaits its pipeline, as redis-py
must). --concurrency tasks decide for random users of --users (whose profiles and sessions hold
data) for --seconds per round; the figures are decisions per second and the client's CPU per
decision (time.process_time of this process: the event loop, the client, the parsing), with uvloop
as `tailor api` runs. Rounds alternate the order of the clients, so a load that changes between
rounds reaches all of them. The cluster is tailor.devstack.redis_cluster's (3 primaries, 3 replicas);
the one redis-server is configured alike (AOF fsync always).

    .venv/bin/python bench/redis_cluster_client.py [--seconds 3] [--rounds 3] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import uvloop
from tailor_api import resp, resp_cluster, user_context

from tailor.core import redis_target
from tailor.core.decision import engine as engine_module
from tailor.core.decision import keys
from tailor.core.profile import state as profile_state
from tailor.core.rules import ruleset
from tailor.devstack import ports, probes
from tailor.devstack import redis_cluster as cluster_module

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tests/sample.py: the sample rulesets
import sample  # noqa: E402

STACK = "bench/cluster"
Decide = Callable[[str], Awaitable[None]]


def capped_engine() -> engine_module.Engine:
    cap = ruleset.FrequencyCap(per_session=2, per_user_count=3, per_user_window_seconds=3600)
    published = sample.build(
        [sample.html_variant("d", "hero", fallback=True), sample.html_variant("p", "hero")],
        [ruleset.Rule(name="p", slot="hero", variants=("p",), frequency_cap=cap)],
        stack=STACK,
    )
    return engine_module.load(published)


def start_single(workdir: Path) -> tuple[int, subprocess.Popen[bytes]]:
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("redis-server is not installed (scripts/apt-packages.sh installs it)")
    port = ports.pick(None)
    workdir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "",
         "--appendonly", "yes", "--appendfsync", "always"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    probes.wait_until(lambda: probes.redis_ping(port), what="the single redis-server", timeout=30)
    return port, process


def fill(client: redis.Redis, engine: engine_module.Engine, users: list[str], now: float) -> None:
    """Profiles and sessions with data, so the replies are parsed as in production."""
    pipe = client.pipeline(transaction=False)
    for user in users:
        profile = store_key(user)
        pipe.hset(
            profile, mapping={field: '{"views": [1, 2, 3, {"shoes": 3}]}' for field in profile_state.FIELDS}
        )
        pipe.hset(
            keys.session_key(STACK, user, "s1"), mapping={"m:hero": keys.memory_value("p", "p"), "c:p": 1}
        )
        pipe.zadd(keys.cap_key(STACK, user, "p"), {f"{now}": now})
    pipe.execute()


def store_key(user: str) -> str:
    from tailor.core.profile import store

    return store.profile_key(STACK, user)


def commands(
    engine: engine_module.Engine, user: str, now: float
) -> tuple[list[resp.Command], list[resp.Command]]:
    read = user_context.ContextRead(engine, engine.profile_reader, user, "s1", [engine.slots["hero"]], now)
    key = keys.session_key(STACK, user, "s1")
    writes: list[resp.Command] = [("HSET", key, "m:hero", keys.memory_value("p", "p")), ("EXPIRE", key, 1800)]
    return read.commands, writes


def resp_decide(
    connection: resp.Connection | resp_cluster.ClusterConnection, engine: engine_module.Engine
) -> Decide:
    async def decide(user: str) -> None:
        read, writes = commands(engine, user, time.time())
        replies = await connection.execute(read)
        assert not any(isinstance(r, resp.ReplyError) for r in replies), replies
        await connection.send_nowait(writes)

    return decide


def redis_py_decide(client: aioredis.Redis | aiocluster.RedisCluster, engine: engine_module.Engine) -> Decide:
    async def decide(user: str) -> None:
        read, writes = commands(engine, user, time.time())
        pipe = client.pipeline(transaction=False)
        for command in read:
            pipe.execute_command(*command)
        await pipe.execute()
        pipe = client.pipeline(transaction=False)
        for command in writes:
            pipe.execute_command(*command)
        await pipe.execute()

    return decide


async def measure(decide: Decide, users: list[str], seconds: float, concurrency: int) -> tuple[float, float]:
    """(decisions per second, client CPU µs per decision)."""
    for user in users[:concurrency]:  # connect, load slot maps, warm caches
        await decide(user)
    done = 0
    stop = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal done
        rng = random.Random()
        while time.monotonic() < stop:
            await decide(rng.choice(users))
            done += 1

    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    return done / wall, cpu / done * 1e6


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


async def run(args: argparse.Namespace, single_port: int, cluster: cluster_module.RedisCluster) -> None:
    engine = capped_engine()
    users = [f"user-{i}" for i in range(args.users)]
    now = time.time()
    with redis.Redis(port=single_port) as client:
        fill(client, engine, users, now)
    with redis.cluster.RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port) as cluster_client:
        fill(cluster_client, engine, users, now)  # type: ignore[arg-type]
    single = redis_target.RedisTarget.parse(f"redis://127.0.0.1:{single_port}/0")
    seed = redis_target.RedisTarget.parse(cluster.url)
    connections = {
        "resp": resp.Connection(single),
        "resp-cluster": resp_cluster.ClusterConnection(seed),
    }
    clients = {
        "redis-py": aioredis.Redis(port=single_port),
        "redis-py-cluster": aiocluster.RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port),
    }
    decides: dict[str, Decide] = {
        "resp": resp_decide(connections["resp"], engine),
        "resp-cluster": resp_decide(connections["resp-cluster"], engine),
        "redis-py": redis_py_decide(clients["redis-py"], engine),
        "redis-py-cluster": redis_py_decide(clients["redis-py-cluster"], engine),
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in decides}
    print(f"bench/redis_cluster_client.py — {args.concurrency} concurrent, {args.users} users, "
          f"{args.seconds:g} s a client a round; load average {load_average()}")  # fmt: skip
    print(f"{'round':<6} {'client':<18} {'decisions/s':>12} {'client CPU µs/decision':>24}  load")
    names = list(decides)
    for round_number in range(1, args.rounds + 1):
        order = names if round_number % 2 else names[::-1]
        for name in order:
            rate, cpu = await measure(decides[name], users, args.seconds, args.concurrency)
            results[name].append((rate, cpu))
            print(f"{round_number:<6} {name:<18} {rate:>12,.0f} {cpu:>24.1f}  {load_average()}")
    print("\nmedians (ratio to resp on one redis-server, same run)")
    reference_rate = statistics.median(r for r, _ in results["resp"])
    reference_cpu = statistics.median(c for _, c in results["resp"])
    for name, figures in results.items():
        rate = statistics.median(r for r, _ in figures)
        cpu = statistics.median(c for _, c in figures)
        print(f"  {name:<18} {rate:>9,.0f}/s ({rate / reference_rate:.2f})   {cpu:>7.1f} µs "
              f"({cpu / reference_cpu:.2f}) per decision")  # fmt: skip
    for connection in connections.values():
        await connection.close()
    for client in clients.values():
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--users", type=int, default=2000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tailor-bench-cluster-"))
    single_port, single = start_single(workdir / "single")
    cluster = cluster_module.start(workdir / "cluster")
    try:
        uvloop.run(run(args, single_port, cluster))
    finally:
        cluster.stop()
        single.terminate()
        single.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
