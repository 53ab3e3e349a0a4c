"""Structured logs (issue 13, item 7) read from real `tailor api` and `tailor worker` processes.

With `--log-format json` every line a process writes is one JSON object with the fields
docs/operating.md ("Logs") documents, and a line logged while a request is served carries that
request's id: the X-Request-Id it came with when sane, else one made for it, returned in the response
either way. Without the flag the output is text, as it always was.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime
from typing import Any

import httpx
import orjson
import pytest
import redis
import redis.asyncio as aioredis
import sample
from pipeline_harness import Process, wait_until

from tailor.core.profile import state as profile_state
from tailor.core.profile import store
from tailor.core.rules import versions
from tailor.devstack import ports

pytestmark = [pytest.mark.redis, pytest.mark.slow]

DOCUMENTED = {"timestamp", "level", "logger", "message", "stack", "component"}
LEVELS = {"debug", "info", "warning", "error", "critical"}
GENERATED_ID = re.compile(r"[0-9a-f]{16}-[0-9]+")


def publish_shop(redis_url: str) -> str:
    """A fresh stack with sample.shop's ruleset (slot hero) published; its namespace/name."""
    stack = f"logs-{uuid.uuid4().hex[:8]}/main"

    async def publish() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            await versions.publish(client, sample.shop(stack))
        finally:
            await client.aclose()

    asyncio.run(publish())
    return stack


def damage_profile(redis_url: str, stack: str, user: str) -> None:
    """A stored profile the API cannot read: it decides on an empty one and logs a warning."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.hset(store.profile_key(stack, user), mapping=dict.fromkeys(profile_state.FIELDS, b"\xff no"))
    finally:
        client.close()


def start_api(redis_url: str, stack: str, *args: str) -> tuple[Process, str]:
    """`tailor api --routes decide` (no Kafka needed) with `args`, once ready (its admin port says)."""
    port, admin_port = ports.pick(None), ports.pick(None)
    api = Process(
        ["api", "--stack", stack, "--host", "127.0.0.1", "--port", str(port), "--admin-port", str(admin_port),
         "--routes", "decide", *args],
        {"TAILOR_REDIS_URL": redis_url},
    )  # fmt: skip
    api.admin_url = f"http://127.0.0.1:{admin_port}"
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{api.admin_url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(lambda: ready() or not api.alive, 60, api.output)
    assert api.alive, api.output()
    return api, url


def lines(process: Process) -> list[str]:
    return [line for line in process.output(200_000).splitlines() if line.strip()]


def json_lines(process: Process) -> list[dict[str, Any]]:
    """Every line of the output as a JSON object: a line that is not one fails the test."""
    parsed = []
    for line in lines(process):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}\n{process.output()}") from None
        assert isinstance(record, dict), line
        parsed.append(record)
    return parsed


def assert_documented(record: dict[str, Any], component: str, stack: str) -> None:
    assert record.keys() >= DOCUMENTED, record
    assert (record["component"], record["stack"]) == (component, stack), record
    assert record["level"] in LEVELS, record
    assert record["timestamp"].endswith("Z"), record
    datetime.fromisoformat(record["timestamp"])  # RFC 3339, UTC


def test_an_api_request_logs_json_lines_that_carry_its_request_id(redis_url: str) -> None:
    stack = publish_shop(redis_url)
    api, url = start_api(redis_url, stack, "--log-format", "json", "--log-level", "info")
    try:
        damage_profile(redis_url, stack, "broken")
        decide = f"{url}/v1/decide?slot=hero&user=broken"
        given = httpx.get(decide, headers={"x-request-id": "shop-7f3a.b:c/9=="}, timeout=5)
        assert given.status_code == 200, given.text
        assert given.headers["x-request-id"] == "shop-7f3a.b:c/9=="
        made = httpx.get(decide, timeout=5)
        assert GENERATED_ID.fullmatch(made.headers["x-request-id"]), made.headers
        refused = httpx.get(decide, headers={"x-request-id": "two words"}, timeout=5)
        assert GENERATED_ID.fullmatch(refused.headers["x-request-id"]), refused.headers
        assert len({made.headers["x-request-id"], refused.headers["x-request-id"]}) == 2
        ids = [r.headers["x-request-id"] for r in (given, made, refused)]
        ok = httpx.get(f"{api.admin_url}/healthz", timeout=5)
        assert GENERATED_ID.fullmatch(ok.headers["x-request-id"])  # every response has one

        def warned() -> list[dict[str, Any]]:
            return [r for r in json_lines(api) if r.get("level") == "warning" and "broken" in r["message"]]

        wait_until(lambda: len(warned()) == 3, 10, api.output)
        records = json_lines(api)
        for record in records:
            assert_documented(record, "content-api", stack)
        # One warning per request, each with the id of the request that caused it.
        assert [r["request_id"] for r in warned()] == ids
        assert all(r["logger"] == "tailor.core.profile.store" for r in warned())
        # Lines outside any request (start-up, the ruleset swap) have none.
        serving = [r for r in records if r["message"].startswith("serving ruleset")]
        assert serving, records
        assert all("request_id" not in r for r in serving), records
        assert any(r["logger"] == "_granian" for r in records)  # the server's own lines too
    finally:
        api.close()


def test_text_stays_the_default_and_unchanged(redis_url: str) -> None:
    stack = publish_shop(redis_url)
    api, url = start_api(redis_url, stack)
    try:
        damage_profile(redis_url, stack, "broken")
        reply = httpx.get(
            f"{url}/v1/decide?slot=hero&user=broken", headers={"x-request-id": "text-req-9d1"}, timeout=5
        )
        assert reply.status_code == 200
        prefix = f"the stored profile of 'broken' in {stack} cannot be read"
        wait_until(lambda: any(line.startswith(prefix) for line in lines(api)), 10, api.output)
        for line in lines(api):
            assert not line.startswith("{"), line  # no JSON, and the message as before: bare
        assert "text-req-9d1" not in api.output()
    finally:
        api.close()


def test_the_worker_logs_json_lines_with_its_stack(redis_url: str) -> None:
    stack = f"logs-{uuid.uuid4().hex[:8]}/main"  # nothing published: the worker says it waits
    worker = Process(
        ["worker", "--stack", stack, "--metrics-port", "0", "--log-format", "json"],
        {"TAILOR_REDIS_URL": redis_url},
    )
    try:
        wait_until(
            lambda: any("waiting for the operator" in line for line in lines(worker)), 30, worker.output
        )
        worker.stop()
        records = json_lines(worker)
    finally:
        worker.close()
    for record in records:
        assert_documented(record, "worker", stack)
        assert "request_id" not in record
    assert any(r["logger"] == "tailor_worker.worker" and r["level"] == "info" for r in records), records
    assert (records[-1]["logger"], records[-1]["message"]) == (
        "tailor.cli.worker", "SIGTERM received; finishing the current batch",
    )  # fmt: skip
