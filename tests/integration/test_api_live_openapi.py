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
def server(redis_url: str, kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`tailor api` in its own process, serving a fresh stack whose ruleset points at the real Kafka:
    the URLs of its public port and of its admin port."""
    stack = new_stack()
    namespace, _, name = stack.partition("/")
    published = sample.shop(stack)
    kafka = published.config.kafka.model_copy(update={"bootstrap_servers": kafka_bootstrap})
    config = published.config.model_copy(update={"namespace": namespace, "name": name, "kafka": kafka})
    topics.ensure(
        kafka_bootstrap, [kafka.events_topic, kafka.dead_letter_topic], kafka.partitions
    )  # the operator's
    publish_sync(redis_url, published.model_copy(update={"config": config}))
    port, admin_port = ports.pick(None), ports.pick(None)
    env = {**os.environ, "TAILOR_REDIS_URL": redis_url, "TAILOR_ADMIN_TOKEN": ADMIN_TOKEN}
    log = tmp_path / "api.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(BIN / "tailor"), "api", "--stack", stack, "--host", "127.0.0.1", "--port", str(port),
             "--admin-port", str(admin_port), "--log-level", "warning"],
            env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url, admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{admin}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                process.wait()
                pytest.fail(f"tailor api did not become ready:\n{log.read_text()}")
            time.sleep(0.2)
        yield url, admin
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_each_port_publishes_an_openapi_document_of_its_own_routes(server: tuple[str, str]) -> None:
    public, admin = server
    document = httpx.get(f"{public}/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/v1/decide", "/v1/feedback", "/v1/events", "/openapi.json", "/sdk/tailor.js",
    }  # fmt: skip
    assert set(httpx.get(f"{admin}/openapi.json").json()["paths"]) == {
        "/v1/explain", "/v1/profiles/{user}", "/healthz", "/readyz", "/readyz/collector", "/metrics",
        "/openapi.json",
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


def test_schemathesis_finds_no_server_error_and_no_contract_violation(server: tuple[str, str]) -> None:
    for url in server:  # the public port, then the admin port
        result = schemathesis(url, "--checks", "all", "--exclude-path", "/v1/events")
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_schemathesis_finds_no_server_error_and_no_contract_violation_in_event_collection(
    server: tuple[str, str],
) -> None:
    """/v1/events on its own (it produces to Kafka, so it is slower): every check, positive data too —
    whatever the published JSON Schema accepts, the collector accepts."""
    result = schemathesis(server[0], "--checks", "all", "--include-path", "/v1/events")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
