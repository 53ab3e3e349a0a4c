"""`tailor api` on two ports: the public one serves only what shoppers and the shop call, the admin
one (tailor_api.adminserver) explain, profiles, metrics, health and readiness; each 404s the other's."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis.asyncio as aioredis
import sample
from pipeline_harness import ADMIN_TOKEN, Process, wait_until

from tailor.core.rules import versions
from tailor.devstack import ports

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class Server:
    public: str
    admin: str
    admin_port: int


@pytest.fixture(scope="module")
def server(redis_url: str) -> Iterator[Server]:
    stack = f"admin-{uuid.uuid4().hex[:8]}/main"

    async def publish() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            await versions.publish(client, sample.shop(stack))
        finally:
            await client.aclose()

    asyncio.run(publish())
    port, admin_port = ports.pick(None), ports.pick(None)
    api = Process(
        ["api", "--stack", stack, "--host", "127.0.0.1", "--port", str(port), "--admin-port", str(admin_port),
         "--routes", "decide"],
        {"TAILOR_REDIS_URL": redis_url, "TAILOR_ADMIN_TOKEN": ADMIN_TOKEN},
    )  # fmt: skip
    admin = f"http://127.0.0.1:{admin_port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{admin}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(lambda: ready() or not api.alive, 60, api.output)
        assert api.alive, api.output()
        yield Server(f"http://127.0.0.1:{port}", admin, admin_port)
    finally:
        api.close()


def test_the_public_port_serves_the_api_and_404s_admin_routes_naming_the_admin_port(
    server: Server,
) -> None:
    decided = httpx.get(f"{server.public}/v1/decide", params={"slot": "hero", "user": "u1"}, timeout=5)
    assert decided.status_code == 200, decided.text
    assert httpx.get(f"{server.public}/sdk/tailor.js", timeout=5).status_code == 200
    for path in ("/metrics", "/healthz", "/readyz", "/v1/explain?slot=hero&user=u1", "/v1/profiles/u1"):
        refused = httpx.get(f"{server.public}{path}", headers=ADMIN, timeout=5)
        assert refused.status_code == 404, (path, refused.text)
        assert "admin port" in refused.json()["detail"], refused.text
    public_paths = set(httpx.get(f"{server.public}/openapi.json", timeout=5).json()["paths"])
    assert public_paths == {
        "/v1/decide", "/v1/feedback", "/v1/events", "/v1/graphql", "/ofrep/v1/evaluate/flags",
        "/ofrep/v1/evaluate/flags/{key}", "/openapi.json", "/sdk/tailor.js",
    }  # fmt: skip


def test_the_admin_port_serves_operations_and_admin_and_nothing_public(server: Server) -> None:
    assert httpx.get(f"{server.admin}/healthz", timeout=5).status_code == 200
    ready = httpx.get(f"{server.admin}/readyz", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    metrics = httpx.get(f"{server.admin}/metrics", timeout=5)
    assert metrics.status_code == 200
    assert 'tailor_http_requests_total{code="200",method="GET",route="/v1/decide"}' in metrics.text
    explained = httpx.get(f"{server.admin}/v1/explain", params={"slot": "hero", "user": "u1"}, headers=ADMIN)
    assert explained.status_code == 200, explained.text
    assert httpx.get(f"{server.admin}/v1/explain", params={"slot": "hero", "user": "u1"}).status_code == 401
    assert httpx.get(f"{server.admin}/v1/profiles/u1", headers=ADMIN, timeout=5).status_code == 200
    head = httpx.head(f"{server.admin}/healthz", timeout=5)
    assert head.status_code == 405  # GET only, as on the public port
    assert httpx.get(f"{server.admin}/v1/decide", params={"slot": "hero", "user": "u1"}).status_code == 404
    admin_paths = set(httpx.get(f"{server.admin}/openapi.json", timeout=5).json()["paths"])
    assert "/v1/explain" in admin_paths
    assert "/v1/decide" not in admin_paths


def raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(data)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_the_admin_port_refuses_what_is_not_http_and_heads_over_16_kib(server: Server) -> None:
    assert raw(server.admin_port, b"HELLO\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(server.admin_port, b"GET /healthz HTTP/1.1\r\nx: " + b"a" * 20_000 + b"\r\n\r\n") == b""
    answer = raw(server.admin_port, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
    assert b"connection: close" in answer
