"""Where a stack's published rulesets live in Redis, and how they are published and followed.

Redis is the bus between the operator and the data plane (docs/architecture.md §10): workers and API replicas
need only a Redis URL and the stack's `namespace/name`. Every key of a stack shares one hash tag, so a
publish is one MULTI/EXEC even on Redis Cluster.

    tailor:{ns/name}:ruleset:seq       INCR gives the next version
    tailor:{ns/name}:ruleset:<N>       immutable ruleset documents; the newest HISTORY are kept
    tailor:{ns/name}:ruleset:current   the version being served
    tailor:{ns/name}:ruleset           pub/sub channel; the message is the new current version
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import redis
import redis.asyncio as aioredis

from tailor.core import cancellation
from tailor.core.rules.ruleset import Ruleset

HISTORY = 50
log = logging.getLogger(__name__)


def stack_prefix(stack: str) -> str:
    """`stack` is `namespace/name`; the braces make it the Redis Cluster hash tag."""
    return f"tailor:{{{stack}}}"


def current_key(stack: str) -> str:
    return f"{stack_prefix(stack)}:ruleset:current"


def version_key(stack: str, version: int) -> str:
    return f"{stack_prefix(stack)}:ruleset:{version}"


def seq_key(stack: str) -> str:
    return f"{stack_prefix(stack)}:ruleset:seq"


def channel(stack: str) -> str:
    return f"{stack_prefix(stack)}:ruleset"


async def current_version(client: aioredis.Redis, stack: str) -> int:
    raw = await client.get(current_key(stack))
    return int(raw) if raw else 0


async def load(client: aioredis.Redis, stack: str, version: int | None = None) -> Ruleset | None:
    """The ruleset `version` of `stack` (the current one by default), or None if none is published."""
    if version is None:
        version = await current_version(client, stack)
    if not version:
        return None
    raw = await client.get(version_key(stack, version))
    return Ruleset.from_json(raw) if raw else None


def load_sync(client: redis.Redis, stack: str) -> Ruleset | None:
    """The current ruleset, for the synchronous worker loop."""
    version = client.get(current_key(stack))
    if not version:
        return None
    raw = client.get(version_key(stack, int(version)))
    return Ruleset.from_json(raw) if raw else None


def current_version_sync(client: redis.Redis, stack: str) -> int:
    raw = client.get(current_key(stack))
    return int(raw) if raw else 0


async def publish(client: aioredis.Redis, ruleset: Ruleset) -> Ruleset:
    """Publish `ruleset` as the next version of its stack, atomically, and notify followers.

    A ruleset whose content equals the current one is not published again: the current one is
    returned, so re-running the operator never bumps versions for nothing.
    """
    ruleset = ruleset.sealed()
    current = await load(client, ruleset.stack)
    if current is not None and current.checksum == ruleset.checksum:
        return current
    version = int(await client.incr(seq_key(ruleset.stack)))
    return await _make_current(client, ruleset.model_copy(update={"version": version}))


async def rollback(client: aioredis.Redis, stack: str, to_version: int) -> Ruleset:
    """Serve an earlier version again, republished under a new version number (history stays linear)."""
    earlier = await load(client, stack, to_version)
    if earlier is None:
        raise LookupError(f"{stack}: version {to_version} is not in the last {HISTORY} published")
    version = int(await client.incr(seq_key(stack)))
    return await _make_current(client, earlier.model_copy(update={"version": version}))


async def _make_current(client: aioredis.Redis, ruleset: Ruleset) -> Ruleset:
    ruleset = ruleset.model_copy(update={"published_at": time.time()})
    stack, version = ruleset.stack, ruleset.version
    async with client.pipeline(transaction=True) as pipe:
        pipe.set(version_key(stack, version), ruleset.to_json())
        pipe.set(current_key(stack), version)
        if version > HISTORY:
            pipe.delete(version_key(stack, version - HISTORY))
        pipe.publish(channel(stack), version)
        await pipe.execute()
    return ruleset


async def follow(
    client: aioredis.Redis,
    stack: str,
    on_ruleset: Callable[[Ruleset], Awaitable[None] | None],
    *,
    poll_seconds: float = 5.0,
) -> None:
    """Call `on_ruleset` with the current ruleset, then with each newly published one, forever.

    Pub/sub gives sub-second updates; the periodic poll covers messages missed while disconnected.
    `on_ruleset` sees versions in increasing order only. Cancelling the task stops it even when
    redis-py swallowed the CancelledError (see tailor.core.cancellation): every round checks.
    """
    seen = 0

    async def refresh() -> None:
        nonlocal seen
        version = await current_version(client, stack)
        if version and version != seen:
            ruleset = await load(client, stack, version)
            if ruleset is not None:
                seen = version
                result = on_ruleset(ruleset)
                if result is not None:
                    await result

    while True:
        cancellation.checkpoint()
        try:
            async with _subscription(client, channel(stack)) as messages:
                await refresh()
                async for _ in messages(poll_seconds):
                    await refresh()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
            log.warning("ruleset follow of %s lost Redis (%s); retrying", stack, error)
            await asyncio.sleep(1.0)


@contextlib.asynccontextmanager
async def _subscription(
    client: aioredis.Redis, name: str
) -> AsyncIterator[Callable[[float], AsyncIterator[None]]]:
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(name)

    async def ticks(poll_seconds: float) -> AsyncIterator[None]:
        # One tick per message, and one per poll interval even when nothing arrives.
        while True:
            cancellation.checkpoint()  # before the wait: a swallowed cancel must not wait a poll
            await pubsub.get_message(timeout=poll_seconds)
            yield None

    try:
        yield ticks
    finally:
        await pubsub.aclose()
