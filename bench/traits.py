"""Benchmark: a trait written -> the next decision reflecting it, through the admin PUT and the topic.

A real `tailor api` (public and admin ports) and a real `tailor worker` serve a fresh bench stack that
declares a `churnRisk` trait and a first rule on it (`traits.churnRisk > 0.7`). For each of --probes
users never seen before, in turns: write churnRisk = 0.9 — `PUT /v1/profiles/{user}/traits` on the
admin port, or a traits CloudEvent produced to the stack's traits topic (docs/traits.md) — then
decide every --poll-ms until the rule is served; the latency runs from just before the write to the
first decision that reflects it. Its ceiling, measured in the same run by the same client: one decide
round trip. Prints p50/p90/p99 per path with the load average beside them (the machine is shared).

    eval "$(tailor dev env)"; .venv/bin/python bench/traits.py [--probes 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import _pipeline
import httpx
import redis.asyncio as aioredis
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from tailor.core import redis_target, topics
from tailor.core.rules import ruleset, versions
from tailor.devstack import ports

ADMIN_TOKEN = "bench-admin-token-of-at-least-32-bytes"


def bench_ruleset(config: ruleset.StackConfig) -> ruleset.Ruleset:
    trait = ruleset.Trait(name="churnRisk", type="number", ttl_seconds=3600, minimum=0, maximum=1)
    features = config.features.model_copy(update={"traits": (trait,)})
    kafka = config.kafka.model_copy(update={"traits_topic": config.kafka.events_topic + ".traits"})
    config = config.model_copy(update={"features": features, "kafka": kafka})
    variants = {
        name: ruleset.Variant(
            name=name, slot="hero", content_type="text", body=name, fallback=name == "default"
        )
        for name in ("default", "save")
    }
    at_risk = ruleset.Rule(name="at-risk", slot="hero", priority=10, when="traits.churnRisk > 0.7",
                           variants=("save",))  # fmt: skip
    return ruleset.Ruleset(stack=config.key, config=config, variants=variants, rules=(at_risk,))


def traits_event(user: str) -> bytes:
    return json.dumps({
        "specversion": "1.0", "type": "dev.tailor.traits.v1", "source": "//bench/traits",
        "id": uuid.uuid4().hex, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": {"userId": user, "traits": {"churnRisk": 0.9}},
    }).encode()  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--probes", type=int, default=100, help="users written per path")
    parser.add_argument("--poll-ms", type=float, default=1.0, help="pause between a probe's decides")
    args = parser.parse_args()
    kafka, redis_url = _pipeline.environment()
    published = bench_ruleset(_pipeline.stack_config(kafka, partitions=1))
    config = published.config
    _pipeline.publish(redis_target.RedisTarget.from_environment(url=redis_url), config)  # the topics
    topics.ensure(kafka, [config.kafka.traits_topic], 1)  # the operator's job

    async def publish() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            await versions.publish(client, published)
        finally:
            await client.aclose()

    asyncio.run(publish())
    port, admin_port = ports.pick(None), ports.pick(None)
    logs = Path(tempfile.mkdtemp(prefix="tailor-bench-traits-"))
    api = _pipeline.tailor(
        ["api", "--stack", config.key, "--port", str(port), "--admin-port", str(admin_port),
         "--routes", "decide"],
        redis_url, logs / "api.log", TAILOR_ADMIN_TOKEN=ADMIN_TOKEN,
    )  # fmt: skip
    worker = _pipeline.tailor(
        ["worker", "--stack", config.key, "--metrics-port", "0"], redis_url, logs / "worker.log"
    )
    producer = Producer({"bootstrap.servers": kafka, "linger.ms": 0, "enable.idempotence": True})
    results: dict[str, list[float]] = {"admin PUT": [], "traits topic": []}
    round_trips: list[float] = []
    try:
        _pipeline.wait_http(f"http://127.0.0.1:{admin_port}/readyz")
        public = httpx.Client(base_url=f"http://127.0.0.1:{port}")
        admin = httpx.Client(base_url=f"http://127.0.0.1:{admin_port}",
                             headers={"authorization": f"Bearer {ADMIN_TOKEN}"})  # fmt: skip

        def served(user: str) -> str | None:
            started = time.perf_counter()
            answer = public.get("/v1/decide", params={"slot": "hero", "user": user})
            round_trips.append(time.perf_counter() - started)
            return answer.json()["decisions"][0]["rule"]  # type: ignore[no-any-return]

        def wait_for(user: str, started: float, timeout: float = 30.0) -> float:
            while served(user) != "at-risk":
                if time.perf_counter() - started > timeout:
                    sys.exit(f"{user}: not reflected in {timeout}s; logs in {logs}")
                time.sleep(args.poll_ms / 1000)
            return time.perf_counter() - started

        # Warm-up: the worker's traits consumer must have joined its group before timing the topic.
        warm = f"warm-{uuid.uuid4().hex[:8]}"
        producer.produce(config.kafka.traits_topic, traits_event(warm), key=warm)
        producer.flush(10)
        wait_for(warm, time.perf_counter(), timeout=120)
        for index in range(args.probes):
            user = f"put-{index}-{uuid.uuid4().hex[:8]}"
            started = time.perf_counter()
            written = admin.put(f"/v1/profiles/{user}/traits", json={"churnRisk": 0.9})
            assert written.status_code == 200, written.text
            results["admin PUT"].append(wait_for(user, started))
            user = f"topic-{index}-{uuid.uuid4().hex[:8]}"
            started = time.perf_counter()
            producer.produce(config.kafka.traits_topic, traits_event(user), key=user)
            producer.poll(0)
            results["traits topic"].append(wait_for(user, started))
    finally:
        for process in (api, worker):
            process.terminate()
            process.wait(15)
        producer.flush(5)
        _pipeline.cleanup(redis_url, config)
        kafka_admin = AdminClient({"bootstrap.servers": kafka})  # alive until its futures are done
        for future in kafka_admin.delete_topics([config.kafka.traits_topic], operation_timeout=30).values():
            try:
                future.result(30)
            except Exception as error:  # already gone, or the broker is busy: nothing to undo
                print(f"[cleanup] {error}", file=sys.stderr)
    load = os.getloadavg()
    rows: list[list[object]] = [["path", "p50 ms", "p90 ms", "p99 ms", "probes"]]
    for name, values in results.items():
        ms = [v * 1000 for v in values]
        rows.append([name, f"{_pipeline.percentile(ms, 0.5):.1f}", f"{_pipeline.percentile(ms, 0.9):.1f}",
                     f"{_pipeline.percentile(ms, 0.99):.1f}", len(ms)])  # fmt: skip
    trips = [v * 1000 for v in round_trips]
    rows.append(["ceiling: one decide round trip", f"{_pipeline.percentile(trips, 0.5):.1f}",
                 f"{_pipeline.percentile(trips, 0.9):.1f}", f"{_pipeline.percentile(trips, 0.99):.1f}",
                 len(trips)])  # fmt: skip
    print(f"bench/traits.py: trait written -> decision reflects it; load average {load[0]:.2f} {load[1]:.2f}")
    _pipeline.table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
