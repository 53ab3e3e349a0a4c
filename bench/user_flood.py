"""Benchmark: what one user id flooding the workers does to Redis (issue 14), for the tree on the path.

On a private redis-server (nothing shared is touched), with the worker's `ProfileWriter` at its
default settings:

1. memory: 10^5 events of one user, 1,000 per minute of event time over 100 minutes, written as a
   worker would: the user's hash fields and its `MEMORY USAGE`;
2. latency: 10^5 dedup marks past the dedup TTL in one user's hash (what a flood leaves), then that
   user's writes a minute apart until the marks are gone (at most 1,000 writes): the slowest guarded
   write (`FCALL`, Redis' own time from SLOWLOG) against one read of the whole hash in Lua (`EVAL
   HGETALL`, the control: what the old prune did in one call).

Run it for two trees in turn to compare them (the code before the caps as a worktree):

    .venv/bin/python bench/user_flood.py
    git worktree add --detach /tmp/before <commit> && cd /tmp/before && \\
        PYTHONPATH=/tmp/before:/tmp/before/workers /path/to/.venv/bin/python /path/to/bench/user_flood.py
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import uuid

import redis

from tailor.core import events
from tailor.core.events.occurrence import Occurrence, from_event
from tailor.core.profile import store
from tailor.core.rules.ruleset import FeatureConfig, KafkaConfig, StackConfig, Window
from tailor.devstack import ports, toolchain

NOW = 1_800_000_000.0


def config() -> StackConfig:
    return StackConfig(
        namespace=f"flood-{uuid.uuid4().hex[:6]}",
        name="shop",
        kafka=KafkaConfig(bootstrap_servers="unused:9092", events_topic="e", dead_letter_topic="d"),
        features=FeatureConfig(
            windows=(Window(name="5m", seconds=300, bucket_seconds=10), Window(name="24h", seconds=86400,
                                                                                 bucket_seconds=3600)),
            dimensions=("category",),
            allowed_lateness_seconds=600,
            recent_limit=3,
        ),
    )  # fmt: skip


def occurrence(stack: StackConfig, at: float) -> Occurrence:
    event = events.Event.model_validate(
        {"id": uuid.uuid4().hex, "type": "page_view", "userId": "alice", "sessionId": "s1", "timestamp": at,
         "properties": {"category": "shoes"}}
    )  # fmt: skip
    return from_event(event, at, stack.features.dimensions)


def durations(client: redis.Redis, command: bytes) -> list[int]:
    """µs of Redis time of each `command` in the slow log, ascending."""
    return sorted(
        entry["duration"] for entry in client.slowlog_get(-1) if entry["command"].startswith(command)
    )


def main() -> None:
    port = ports.pick(None)
    with tempfile.TemporaryDirectory() as directory:
        server = subprocess.Popen(
            [str(toolchain.find_tool("redis-server")), "--port", str(port), "--save", "",
             "--appendonly", "no", "--dir", directory, "--slowlog-max-len", "100000"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            client = redis.Redis(port=port)
            for _ in range(100):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            store.install(client)
            load = os.getloadavg()
            print(f"bench/user_flood.py with {store.__file__}; load average {load[0]:.2f} {load[1]:.2f}")

            stack = config()
            writer = store.ProfileWriter(stack)
            for minute in range(100):
                now = NOW + 60 * minute
                writer.write(client, {"alice": [occurrence(stack, now) for _ in range(1000)]}, now)
            key = store.profile_key(stack.key, "alice")
            print(f"  10^5 events of one user: {client.hlen(key):,} hash fields, "
                  f"MEMORY USAGE {client.memory_usage(key):,} bytes")  # fmt: skip

            stack = config()
            key = store.profile_key(stack.key, "alice")
            pipe = client.pipeline(transaction=False)
            for start in range(0, 100_000, 1000):
                pipe.hset(
                    key, mapping={f"#old-{i}": repr(NOW - 2 * 86400) for i in range(start, start + 1000)}
                )
            pipe.execute()
            client.config_set("slowlog-log-slower-than", 0)
            client.slowlog_reset()
            client.eval("return #redis.call('HGETALL', KEYS[1])", 1, key)
            whole = durations(client, b"EVAL")[-1]
            client.slowlog_reset()
            writer = store.ProfileWriter(stack)
            now, writes = NOW, 0
            while client.hlen(key) > 1000 and writes < 1000:
                writer.write(client, {"alice": [occurrence(stack, now)]}, now)
                now, writes = now + 60, writes + 1
            calls = durations(client, b"FCALL")
            print(f"  10^5 old marks: the whole-hash read {whole:,} µs; {writes} guarded writes: median"
                  f" {calls[len(calls) // 2]:,} µs, 99th percentile {calls[int(len(calls) * 0.99)]:,} µs,"
                  f" slowest {calls[-1]:,} µs; {client.hlen(key):,} fields left")  # fmt: skip
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
