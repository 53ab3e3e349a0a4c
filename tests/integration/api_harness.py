"""A content API on the real Redis for integration tests: its own stack name, a published ruleset,
the app's lifespan running, and httpx clients talking ASGI to it: `client` to its public port's routes,
`admin` to its admin port's (explain, profiles, metrics, health, readiness)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import redis.asyncio as aioredis
from tailor_api import app as app_module
from tailor_api.settings import ApiSettings

from tailor.core import topics
from tailor.core.events import Event, occurrence
from tailor.core.profile import store
from tailor.core.rules import ruleset, versions

ADMIN_TOKEN = "test-admin-token-of-at-least-32-bytes"


def new_stack() -> str:
    return f"t-{uuid.uuid4().hex[:8]}/main"


@dataclass
class Api:
    app: app_module.TailorApp
    client: httpx.AsyncClient
    admin: httpx.AsyncClient
    redis: aioredis.Redis
    stack: str
    kafka_bootstrap: str | None = None
    redis_url: str = ""

    async def publish(self, published: ruleset.Ruleset) -> ruleset.Ruleset:
        namespace, _, name = self.stack.partition("/")
        config = published.config.model_copy(update={"namespace": namespace, "name": name})
        if self.kafka_bootstrap:
            kafka = config.kafka.model_copy(update={"bootstrap_servers": self.kafka_bootstrap})
            config = config.model_copy(update={"kafka": kafka})
            # The topics, as the operator makes them before the collector's first event.
            names = [kafka.events_topic, kafka.dead_letter_topic]
            await asyncio.to_thread(topics.ensure, self.kafka_bootstrap, names, kafka.partitions)
        return await versions.publish(
            self.redis, published.model_copy(update={"stack": self.stack, "config": config})
        )

    async def wait_for_version(self, version: int, within_seconds: float = 5.0) -> None:
        deadline = asyncio.get_running_loop().time() + within_seconds
        while self.app.runtime.engine is None or self.app.runtime.engine.version < version:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"ruleset v{version} was not loaded within {within_seconds}s")
            await asyncio.sleep(0.01)

    async def decide(self, user: str, session: str = "s1", *slots: str) -> httpx.Response:
        params = [("slot", slot) for slot in (slots or ("hero",))] + [("user", user), ("session", session)]
        return await self.client.get("/v1/decide", params=params)

    async def record_events(self, user: str, events: list[dict[str, object]], now: float) -> None:
        """Write events into the user's profile exactly as a worker does (the profile store's write)."""
        config = self.app.runtime.engine.config if self.app.runtime.engine else None
        assert config is not None, "publish a ruleset first"
        writer = store.ProfileWriter(config)
        occurrences = [
            occurrence.from_event(Event.model_validate(event), now, config.features.dimensions)
            for event in events
        ]
        with self.app.runtime.target.client() as client:  # the writer is synchronous: in a thread
            await asyncio.to_thread(writer.write, client, {user: occurrences}, now)


def page_view(user: str, category: str, n: int, session: str = "s1") -> list[dict[str, object]]:
    return [
        {"id": f"{uuid.uuid4()}", "type": "page_view", "userId": user, "sessionId": session,
         "properties": {"category": category}}
        for _ in range(n)
    ]  # fmt: skip


@contextlib.asynccontextmanager
async def running_api(
    redis_url: str,
    published: ruleset.Ruleset | None,
    *,
    kafka_bootstrap: str | None = None,
    stack: str | None = None,
    **settings: object,
) -> AsyncIterator[Api]:
    """A started API for a fresh stack; with `published`, that ruleset is served when this yields.
    `kafka_bootstrap` replaces the rulesets' Kafka servers, so the collector talks to the real broker."""
    stack_given = stack is not None  # an existing stack (published by the operator): wait for its ruleset
    stack = stack or new_stack()
    options: dict[str, object] = {
        "redis_url": redis_url, "stack": stack, "admin_token": ADMIN_TOKEN,
        "bandit_refresh_seconds": 0.1, "impressions_flush_seconds": 0.05, "ruleset_poll_seconds": 1.0,
    }  # fmt: skip
    options.update(settings)
    api_settings = ApiSettings.model_validate(options)
    app = app_module.create_app(api_settings)
    target = api_settings.redis_target()  # one Redis, or a Redis Cluster with redis_mode="cluster"
    client = target.async_client()
    transport = httpx.ASGITransport(app=app)
    api = Api(
        app,
        httpx.AsyncClient(transport=transport, base_url="http://api"),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app.admin), base_url="http://admin"),
        client,
        stack,
        kafka_bootstrap,
        redis_url,
    )
    if published is not None:
        await api.publish(published)
    before = asyncio.all_tasks()
    await app.runtime.start()
    try:
        if published is not None or stack_given:
            await api.wait_for_version(1)
        yield api
    finally:
        await api.client.aclose()
        await api.admin.aclose()
        await app.runtime.stop()
        await client.aclose()
        # The tests share one event loop: a task the API left running would poll on in later tests.
        # (Not the task closing it: a module-scoped fixture's teardown runs in a task of its own.)
        left = [task for task in asyncio.all_tasks() - before - {asyncio.current_task()} if not task.done()]
        for task in left:
            task.cancel()
        assert not left, f"the content API's stop() left tasks running: {sorted(t.get_name() for t in left)}"


Live = Callable[..., contextlib.AbstractAsyncContextManager[Api]]


def live_factory(redis_url: str, kafka_bootstrap: str) -> Live:
    """For a test module's `live` fixture: `async with live(ruleset, **settings) as api`."""
    return functools.partial(running_api, redis_url, kafka_bootstrap=kafka_bootstrap)
