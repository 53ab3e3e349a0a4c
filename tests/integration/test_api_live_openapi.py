"""The real server (`tailor api`, granian) publishes an accurate OpenAPI document, and schemathesis,
generating requests from it (valid and invalid), finds no 5xx and no response that contradicts it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sample
from api_harness import ADMIN_TOKEN, new_stack

from tailor.core import topics
from tailor.core.rules import ruleset, versions
from tailor.devstack import ports

pytestmark = [pytest.mark.redis, pytest.mark.kafka, pytest.mark.slow]

BIN = Path(sys.executable).parent


def publish_sync(redis_url: str, published: ruleset.Ruleset) -> None:
    import asyncio

    import redis.asyncio as aioredis

    async def go() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            await versions.publish(client, published)
        finally:
            await client.aclose()

    asyncio.run(go())


@pytest.fixture
def server(redis_url: str, kafka_bootstrap: str, tmp_path: Path) -> Iterator[str]:
    """`tailor api` in its own process, serving a fresh stack whose ruleset points at the real Kafka."""
    stack = new_stack()
    namespace, _, name = stack.partition("/")
    published = sample.shop(stack)
    kafka = published.config.kafka.model_copy(update={"bootstrap_servers": kafka_bootstrap})
    config = published.config.model_copy(update={"namespace": namespace, "name": name, "kafka": kafka})
    topics.ensure(
        kafka_bootstrap, [kafka.events_topic, kafka.dead_letter_topic], kafka.partitions
    )  # the operator's
    publish_sync(redis_url, published.model_copy(update={"config": config}))
    port = ports.pick(None)
    env = {**os.environ, "TAILOR_REDIS_URL": redis_url, "TAILOR_ADMIN_TOKEN": ADMIN_TOKEN}
    log = tmp_path / "api.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(BIN / "tailor"), "api", "--stack", stack, "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "warning"],
            env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                process.wait()
                pytest.fail(f"tailor api did not become ready:\n{log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_openapi_document_is_published_and_lists_every_route(server: str) -> None:
    document = httpx.get(f"{server}/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/v1/decide", "/v1/feedback", "/v1/events", "/v1/explain", "/v1/profiles/{user}",
        "/healthz", "/readyz", "/readyz/collector", "/metrics", "/openapi.json", "/sdk/tailor.js",
    }  # fmt: skip
    slot = document["paths"]["/v1/decide"]["get"]["parameters"][0]["schema"]["items"]
    assert slot["enum"] == ["hero"]  # the live ruleset's slots


def schemathesis(url: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "schemathesis"), "run", f"{url}/openapi.json", "--no-color",
         "-H", f"Authorization: Bearer {ADMIN_TOKEN}", "--max-examples", "40", "--seed", "20261129",
         *options],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def test_schemathesis_finds_no_server_error_and_no_contract_violation(server: str) -> None:
    result = schemathesis(server, "--checks", "all", "--exclude-path", "/v1/events")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_schemathesis_finds_no_server_error_and_no_contract_violation_in_event_collection(
    server: str,
) -> None:
    """/v1/events on its own (it produces to Kafka, so it is slower): every check, positive data too —
    whatever the published JSON Schema accepts, the collector accepts."""
    result = schemathesis(server, "--checks", "all", "--include-path", "/v1/events")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
