"""Connections to each stack's Redis, where the operator publishes rulesets and reads stats."""

from __future__ import annotations

import base64
import urllib.parse

import redis.asyncio as aioredis

from tailor_operator import builders, kube


class RedisConnections:
    """One client per (URL, password), shared by every stack that uses it.

    `override` replaces every stack's address (an operator outside the cluster reaching Redis through
    a port-forward, or tests with a local Redis); the stack's password still applies.
    """

    def __init__(self, client: kube.Kube, override: str | None = None) -> None:
        self._kube = client
        self._override = override
        self._clients: dict[tuple[str, str | None], aioredis.Redis] = {}

    async def password(self, stack: builders.Stack) -> str | None:
        ref = stack.spec.redis.password_secret_ref
        if ref is None:
            return None
        data = await self._kube.read_secret(stack.namespace, ref.name)
        if data is None or ref.key not in data:
            raise LookupError(f"Secret {ref.name} (key {ref.key}) with the Redis password does not exist")
        return urllib.parse.unquote(base64.b64decode(data[ref.key]).decode())

    async def for_stack(self, stack: builders.Stack) -> aioredis.Redis:
        url = self._override or builders.redis_url(stack)
        password = await self.password(stack)
        key = (url, password)
        if key not in self._clients:
            self._clients[key] = aioredis.Redis.from_url(
                url, password=password, socket_timeout=5, socket_connect_timeout=3, health_check_interval=30
            )
        return self._clients[key]

    async def close(self) -> None:
        for connection in self._clients.values():
            await connection.aclose()
        self._clients.clear()
