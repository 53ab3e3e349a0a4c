"""Benchmark: freshness — from the collector's 202 to the event visible in the user's profile read.

A real `tailor api` and a real `tailor worker` serve a fresh bench stack. A load of --rate events/s
(batches of 50, random users) is posted for --seconds; meanwhile a probe every 20 ms posts one event
for a user never seen before and, from its 202, reads that user's profile (the content API's own
one-call read, tailor.core.profile_store) every millisecond (every 20 ms after the first 150 ms) until
the event counts. Prints p50/p99
against the 100 ms target, with the load actually achieved beside it.

    eval "$(tailor dev env)"; .venv/bin/python bench/freshness.py [--rate 5000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from pathlib import Path

import _pipeline
import aiohttp
import orjson
import redis.asyncio as aioredis

from tailor.core import profile_store

BATCH = 50
TARGET_P99_MS = 100.0


async def load(
    session: aiohttp.ClientSession, url: str, rate: int, seconds: float, users: int
) -> tuple[int, int]:
    """Post `rate` events/s for `seconds`; (events accepted, requests not 202)."""
    accepted = failed = 0
    interval = BATCH / rate
    in_flight: set[asyncio.Task[None]] = set()

    async def post() -> None:
        nonlocal accepted, failed
        body = orjson.dumps(
            {"events": [_pipeline.shopper_event(f"user-{random.randrange(users)}") for _ in range(BATCH)]}
        )
        async with session.post(url, data=body, headers={"content-type": "application/json"}) as reply:
            await reply.read()
            if reply.status == 202:
                accepted += BATCH
            else:
                failed += 1

    start = time.perf_counter()
    n = 0
    while (elapsed := time.perf_counter() - start) < seconds:
        task = asyncio.create_task(post())
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        n += 1
        await asyncio.sleep(max(0.0, n * interval - elapsed))
    await asyncio.gather(*in_flight)
    return accepted, failed


async def probe(
    session: aiohttp.ClientSession, url: str, reader: profile_store.ProfileReader, client: aioredis.Redis
) -> float | None:
    user = f"probe-{uuid.uuid4().hex[:10]}"
    event = _pipeline.shopper_event(user)
    event["type"] = "page_view"
    async with session.post(
        url, data=orjson.dumps(event), headers={"content-type": "application/json"}
    ) as reply:
        await reply.read()
        if reply.status != 202:
            return None
    accepted = time.perf_counter()
    deadline = accepted + 10.0
    while time.perf_counter() < deadline:
        async with client.pipeline(transaction=False) as pipe:
            reader.queue_read(pipe, user, None, time.time())
            (raw,) = await pipe.execute()
        if reader.parse_read(raw, user, None).count("5m", "views") >= 1:
            return (time.perf_counter() - accepted) * 1000
        # Millisecond polls while it matters for the target; then back off, so that probes stuck
        # behind a lagging worker do not flood Redis and slow the very worker they wait for.
        await asyncio.sleep(0.001 if time.perf_counter() - accepted < 0.15 else 0.02)
    return None


async def measure(url: str, redis_url: str, config: object, rate: int, seconds: float, workers: int) -> None:
    from tailor.core.ruleset import StackConfig

    assert isinstance(config, StackConfig)
    reader = profile_store.ProfileReader(config)
    # Probes share a bounded pool: waiting for a connection is part of no probe's figure only
    # when the pool is large enough, so keep it well above the probes in flight.
    client = aioredis.Redis(
        connection_pool=aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=256)
    )
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm up: the first events pay for producer ids, consumer assignment and connections.
        for _ in range(20):
            await probe(session, url, reader, client)
        load_task = asyncio.create_task(load(session, url, rate, seconds, users=20_000))
        probes: list[asyncio.Task[float | None]] = []
        started = time.perf_counter()
        while time.perf_counter() - started < seconds - 0.5:
            probes.append(asyncio.create_task(probe(session, url, reader, client)))
            await asyncio.sleep(0.02)
        accepted, failed = await load_task
        results = await asyncio.gather(*probes)
    await client.aclose()
    times = [r for r in results if r is not None]
    lost = len(results) - len(times)
    p50, p99 = _pipeline.percentile(times, 0.5), _pipeline.percentile(times, 0.99)
    verdict = "met" if p99 <= TARGET_P99_MS and not lost else "MISSED"
    _pipeline.table([
        ["figure", "value", "target / note"],
        ["load achieved (events/s accepted)", f"{accepted / seconds:,.0f}",
         f"asked {rate:,}; {failed} requests not 202; {workers} worker process(es)"],
        ["probes (202 → visible)", f"{len(times)}", f"{lost} not visible within 10 s"],
        ["freshness p50", f"{p50:.1f} ms", "-"],
        ["freshness p99", f"{p99:.1f} ms", f"≤ {TARGET_P99_MS:.0f} ms ({verdict})"],
        ["freshness max", f"{max(times):.1f} ms", "-"],
    ])  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=1, help="worker processes in the consumer group")
    args = parser.parse_args()
    kafka, redis_url = _pipeline.environment()
    config = _pipeline.stack_config(kafka)
    _pipeline.publish(redis_url, config)
    logs = Path(tempfile.mkdtemp(prefix="tailor-bench-freshness-"))
    port = _pipeline.free_port()
    api = _pipeline.tailor(
        ["api", "--stack", config.key, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        redis_url,
        logs / "api.log",
    )
    workers = [
        _pipeline.tailor(
            ["worker", "--stack", config.key, "--metrics-port", "0"], redis_url, logs / f"worker-{n}.log"
        )
        for n in range(args.workers)
    ]
    try:
        _pipeline.wait_http(f"http://127.0.0.1:{port}/readyz")
        asyncio.run(
            measure(
                f"http://127.0.0.1:{port}/v1/events", redis_url, config, args.rate, args.seconds, args.workers
            )
        )
    finally:
        for process in (api, *workers):
            process.terminate()
        for process in (api, *workers):
            process.wait(30)
        _pipeline.cleanup(redis_url, config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
