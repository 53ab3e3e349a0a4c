"""tailor.core.rules.versions.follow on the real Redis: one cancel() stops it, even when redis-py
swallowed it.

On Python 3.11 redis-py's sends go through asyncio.wait_for, which returns normally instead of raising
CancelledError when the cancel lands in the same loop turn as the send finishes (tailor.core.cancellation).
A follower that missed its cancellation polled on forever, and the content API's shutdown waited on it:
in CI, four tests hung until pytest-timeout killed them.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
import sample

from tailor.core.rules import ruleset, versions

pytestmark = [pytest.mark.redis, pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(120)]
STOP_SECONDS = 2.0  # far below every poll interval used here: only the cancellation can end a follower


@pytest_asyncio.fixture(loop_scope="session")
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    connection = aioredis.Redis.from_url(redis_url, max_connections=500)
    try:
        yield connection
    finally:
        await connection.aclose()


def new_stack() -> str:
    return f"t-{uuid.uuid4().hex[:8]}/main"


async def test_a_cancel_swallowed_in_the_callback_still_stops_the_follower(client: aioredis.Redis) -> None:
    """The state a swallowed cancellation leaves (no CancelledError, the request still counted),
    made deterministic: the callback is cancelled while it awaits, and returns as if nothing happened."""
    stack = new_stack()
    await versions.publish(client, sample.shop().model_copy(update={"stack": stack}))
    called = asyncio.Event()

    async def swallowing(_: ruleset.Ruleset) -> None:
        called.set()
        # Returning normally on CancelledError is what 3.11's wait_for does when the call just finished.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)

    follower = asyncio.create_task(versions.follow(client, stack, swallowing, poll_seconds=60))
    try:
        await asyncio.wait_for(called.wait(), 10)
        follower.cancel()
        done, _ = await asyncio.wait({follower}, timeout=STOP_SECONDS)
        assert follower in done, "the follower polled on after its cancellation was swallowed"
        assert follower.cancelled()
    finally:
        await _stop(follower)


async def test_one_cancel_stops_every_follower_whenever_it_lands(client: aioredis.Redis) -> None:
    """The real race, on redis-py itself: a hundred followers ticking every 20 ms, cancelled once each
    at moments spread over a whole tick. Without the fix most of them survived (measured: 381 of 500)."""
    poll = 0.02
    loop = asyncio.get_running_loop()
    for _ in range(3):
        followers = [
            asyncio.create_task(versions.follow(client, new_stack(), lambda _: None, poll_seconds=poll))
            for _ in range(100)
        ]
        try:
            await asyncio.sleep(poll * 2)  # every follower subscribed and ticking
            start = loop.time()
            for i, follower in enumerate(followers):
                loop.call_at(start + poll * i / len(followers), follower.cancel)
            await asyncio.sleep(poll)
            _, running = await asyncio.wait(followers, timeout=STOP_SECONDS)
            assert not running, f"{len(running)} of {len(followers)} followers ignored their cancellation"
            assert all(follower.cancelled() for follower in followers)
        finally:
            await asyncio.gather(*(_stop(follower) for follower in followers))


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel until done (bounded), so a failing test leaves nothing polling in the session's loop."""
    for _ in range(50):
        if task.done():
            return
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
