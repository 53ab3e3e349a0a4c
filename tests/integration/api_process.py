"""`tailor api` as a real process (granian, uvloop) on free ports, serving a fresh stack whose ruleset
points at the real Kafka: what tests need that talk HTTP over sockets (schemathesis, slow clients)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
import sample
from api_harness import ADMIN_TOKEN, new_stack

from tailor.core import topics
from tailor.core.rules import ruleset, versions
from tailor.devstack import ports

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Served:
    url: str  # the public port
    admin: str  # the admin port
    port: int
    stack: str


def publish_sync(redis_url: str, published: ruleset.Ruleset) -> None:
    async def go() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            await versions.publish(client, published)
        finally:
            await client.aclose()

    asyncio.run(go())


@contextlib.contextmanager
def serve(
    redis_url: str,
    kafka_bootstrap: str,
    log: Path,
    cors_origins: tuple[str, ...] = (),
    *,
    stack: str | None = None,
    ready_within: float = 30,
    rules: Callable[[str], ruleset.Ruleset] = sample.shop,
    **env: str,
) -> Iterator[Served]:
    """The API on the ruleset `rules(stack)` makes (sample.shop's by default) until the block ends;
    `env` adds to its environment; `cors_origins` lets pages of those origins call it. With `stack`, a
    stack whose ruleset someone else (the operator) publishes is followed instead (`cors_origins` is
    then that ruleset's); `ready_within`: seconds to become ready (several processes starting at once
    take longer)."""
    if stack is None:
        stack = new_stack()
        namespace, _, name = stack.partition("/")
        published = rules(stack)
        kafka = published.config.kafka.model_copy(update={"bootstrap_servers": kafka_bootstrap})
        api = published.config.api.model_copy(update={"cors_origins": cors_origins})
        config = published.config.model_copy(
            update={"namespace": namespace, "name": name, "kafka": kafka, "api": api}
        )
        topics.ensure(kafka_bootstrap, [kafka.events_topic, kafka.dead_letter_topic], kafka.partitions)
        publish_sync(redis_url, published.model_copy(update={"config": config}))
    port, admin_port = ports.pick(None), ports.pick(None)
    environment = {**os.environ, "TAILOR_REDIS_URL": redis_url, "TAILOR_ADMIN_TOKEN": ADMIN_TOKEN, **env}
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(BIN / "tailor"), "api", "--stack", stack, "--host", "127.0.0.1", "--port", str(port),
             "--admin-port", str(admin_port), "--log-level", "warning"],
            env=environment, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    served = Served(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}", port, stack)
    try:
        # Decide's readiness and the collector's come apart (the producer starts after the ruleset
        # loads): a test that posts events first would meet the collector's 503.
        checks = ["/readyz"] if env.get("TAILOR_API_ROUTES") == "decide" else ["/readyz", "/readyz/collector"]
        deadline = time.monotonic() + ready_within
        while True:
            try:
                if all(httpx.get(f"{served.admin}{path}", timeout=2).status_code == 200 for path in checks):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                process.wait()
                pytest.fail(f"tailor api did not become ready:\n{log.read_text()}")
            time.sleep(0.2)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
