"""Benchmark: the worker's memory per cached user, the figure its cache size is derived from.

A private redis-server (nothing shared is touched); a `ProfileWriter` of the benchmark stack's features
(3 windows, 3 dimensions) counts --users users' events, --events-per-user each spread over the last
day (so each user holds buckets of every window: the heavier state; shoppers seen once hold less),
in batches as the worker does. The process' resident memory is read before and after (what the
container's limit counts), with the compiled counting and with the Python reference. Prints bytes per
cached user and the cache that fits the default limit by tailor_worker.settings' rule.

    .venv/bin/python bench/worker_cache.py [--users 20000] [--events-per-user 30]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

import _pipeline
import redis
from tailor_worker import settings as worker_settings

from tailor.core import events, native
from tailor.core.events.occurrence import Occurrence, from_event
from tailor.core.profile import store
from tailor.devstack import ports, toolchain


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def measure(client: redis.Redis, users: int, per_user: int, compiled: bool) -> float:
    os.environ["TAILOR_NATIVE"] = "on" if compiled else "off"
    config = _pipeline.stack_config("unused:9092")
    dimensions = config.features.dimensions
    now = time.time()
    writer = store.ProfileWriter(config, cache_users=users + 1, events_per_user_per_minute=10**6)
    ids = [f"cache-{compiled}-{i}" for i in range(users)]
    gc.collect()
    before = rss_bytes()
    for start in range(0, users, 500):  # batches of 500 users, as a busy worker's
        batch: dict[str, list[Occurrence]] = {}
        for user in ids[start : start + 500]:
            occurrences = []
            for _ in range(per_user):
                at = now - random.uniform(0, 86_000)
                event = events.Event.model_validate(_pipeline.shopper_event(user, at))
                occurrences.append(from_event(event, now, dimensions))
            batch[user] = occurrences
        writer.write(client, batch, now)
    gc.collect()
    assert writer.cached_users == users
    grown = rss_bytes() - before
    del writer
    return grown / users


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--events-per-user", type=int, default=30)
    parser.add_argument("--only", choices=("compiled", "reference"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    port = ports.pick(None)
    with tempfile.TemporaryDirectory() as directory:
        server = subprocess.Popen(
            [str(toolchain.find_tool("redis-server")), "--port", str(port), "--save", "",
             "--appendonly", "no", "--dir", directory],
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
            if args.only is None:
                print(f"bench/worker_cache.py: {args.users:,} users, {args.events_per_user} events each over"
                      f" a day; load average {load[0]:.2f} {load[1]:.2f}", flush=True)  # fmt: skip
            sides = [True, False] if native.BUILT else [False]
            for compiled in sides:
                if args.only is None:  # each side in a fresh process: memory freed by one is not reused
                    side = "compiled" if compiled else "reference"
                    subprocess.run([sys.executable, __file__, "--users", str(args.users),
                                    "--events-per-user", str(args.events_per_user), "--only", side],
                                   check=True)  # fmt: skip
                    continue
                if args.only != ("compiled" if compiled else "reference"):
                    continue
                per_user = measure(client, args.users, args.events_per_user, compiled)
                name = "compiled (tailor_native)" if compiled else "Python reference"
                print(f"  {name}: {per_user:,.0f} bytes of resident memory per cached user", flush=True)
            client.flushall()
        finally:
            server.terminate()
            server.wait(10)
    if args.only is not None:
        return
    limit = 512 * 1024 * 1024
    print(f"  cache for the default 512Mi limit (tailor_worker.settings): "
          f"{worker_settings.cache_users_for(limit):,} users")  # fmt: skip


if __name__ == "__main__":
    main()
