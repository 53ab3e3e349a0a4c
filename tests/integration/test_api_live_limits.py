"""Rate limits of the public routes on the real Redis (tailor_api.ratelimit): per client address and
per user, shared by replicas, 429 with Retry-After, X-Forwarded-For believed only from trusted proxies,
keys that expire with their window; and the hardening beside them: bounded metric labels, admin
tokens of at least 32 bytes, no internal addresses in replies."""

from __future__ import annotations

import asyncio
import contextlib
import random
import string
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import prometheus_client
import pytest
import redis
import sample
from api_harness import Api, Live, live_factory, running_api
from tailor_api import app as app_module
from tailor_api.settings import ApiSettings

from tailor.core.rules import ruleset
from tailor.devstack import ports, toolchain
from tailor.devstack.components import redis as redis_component

pytestmark = [pytest.mark.redis, pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(120)]


@pytest.fixture
def live(redis_url: str, kafka_bootstrap: str) -> Live:
    return live_factory(redis_url, kafka_bootstrap)


# An hour's window: a test that crossed into the next window would see its counts restart.
HOUR = 3600


def with_limits(
    client: tuple[int, int] = (0, HOUR), user: tuple[int, int] = (0, HOUR), trusted: tuple[str, ...] = ()
) -> ruleset.Ruleset:
    shop = sample.shop()
    limits = ruleset.RateLimits(
        per_client=ruleset.RateLimit(requests=client[0], seconds=client[1]),
        per_user=ruleset.RateLimit(requests=user[0], seconds=user[1]),
        trusted_proxies=trusted,
    )
    api = shop.config.api.model_copy(update={"rate_limits": limits})
    return shop.model_copy(update={"config": shop.config.model_copy(update={"api": api})})


@contextlib.asynccontextmanager
async def peer(api: Api, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the same app that connects from `address`."""
    transport = httpx.ASGITransport(app=api.app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


async def decide(client: httpx.AsyncClient, user: str) -> httpx.Response:
    return await client.get("/v1/decide", params={"slot": "hero", "user": user})


def limited_count(route: str, scope: str) -> float:
    labels = {"route": route, "scope": scope}
    return prometheus_client.REGISTRY.get_sample_value("tailor_api_rate_limited_total", labels) or 0.0


async def test_a_client_over_its_limit_gets_429_with_retry_after_across_replicas(live: Live) -> None:
    async with live(with_limits(client=(5, HOUR))) as first:
        # Connected before the second replica starts (its stop checks that it leaves no task behind).
        assert (await first.decide("warm-up")).status_code == 200
        async with running_api(first.redis_url, None, stack=first.stack) as second:
            before = limited_count("/v1/decide", "client")
            async with peer(first, "203.0.113.10") as a, peer(second, "203.0.113.10") as b:
                # Five requests in all, spread over two replicas, each for a new user: one budget.
                for index, client in enumerate((a, b, a, b, a)):
                    assert (await decide(client, f"u{index}")).status_code == 200
                refused = await decide(b, "u-next")
            assert refused.status_code == 429, refused.text
            retry_after = int(refused.headers["retry-after"])
            assert 1 <= retry_after <= HOUR
            assert refused.headers["content-type"] == "application/problem+json"
            problem = refused.json()
            assert problem["type"].endswith("/rate-limited"), problem
            assert problem["scope"] == "client", problem
            assert limited_count("/v1/decide", "client") == before + 1
            # Other routes share the client's budget; another address has its own.
            async with peer(first, "203.0.113.10") as a:
                assert (await a.get("/openapi.json")).status_code == 429
            async with peer(first, "203.0.113.11") as other:
                assert (await decide(other, "u-other")).status_code == 200


async def test_a_user_over_its_limit_is_refused_from_any_address_decide_and_feedback(live: Live) -> None:
    async with live(with_limits(user=(3, HOUR))) as api:
        decided = []
        for index in range(3):
            async with peer(api, f"198.51.100.{index + 1}") as client:
                reply = await decide(client, "alice")
                assert reply.status_code == 200
                decided.append(reply.json()["decisions"][0]["decisionId"])
        async with peer(api, "198.51.100.9") as client:
            refused = await decide(client, "alice")
            assert refused.status_code == 429
            assert refused.json()["scope"] == "user"
            # The feedback of alice's decision counts against alice, whoever sends it.
            feedback = await client.post("/v1/feedback", json={"decisionId": decided[0], "type": "click"})
            assert feedback.status_code == 429, feedback.text
            assert (await decide(client, "bob")).status_code == 200


async def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(live: Live) -> None:
    async with live(with_limits(client=(2, HOUR), trusted=("10.0.0.0/8",))) as api:
        # An untrusted peer that sends a new X-Forwarded-For each time is still one client.
        async with peer(api, "203.0.113.20") as direct:
            codes = [
                (await direct.get("/openapi.json", headers={"x-forwarded-for": f"192.0.2.{i}"})).status_code
                for i in range(3)
            ]
        assert codes == [200, 200, 429]
        # Behind the trusted proxies, the first hop from the right outside them is the client.
        async with peer(api, "10.1.1.1") as proxy:
            hops = {"x-forwarded-for": "192.0.2.200, 198.51.100.7, 10.2.2.2"}
            codes = [(await proxy.get("/openapi.json", headers=hops)).status_code for _ in range(3)]
            assert codes == [200, 200, 429]
            other = {"x-forwarded-for": "198.51.100.8, 10.2.2.2"}
            assert (await proxy.get("/openapi.json", headers=other)).status_code == 200


async def test_the_limiters_keys_expire_with_their_window(live: Live) -> None:
    async with live(with_limits(client=(100, 10), user=(100, 10))) as api:
        async with peer(api, "203.0.113.30") as client:
            assert (await decide(client, "carol")).status_code == 200
        keys = [key async for key in api.redis.scan_iter(match=f"tailor:{api.stack}:rl:*")]
        assert len(keys) == 2, keys
        for key in keys:
            assert 0 < await api.redis.ttl(key) <= 11, key


async def test_without_limits_in_the_ruleset_nothing_is_counted(live: Live) -> None:
    async with live(with_limits()) as api:
        async with peer(api, "203.0.113.40") as client:
            for index in range(20):
                assert (await decide(client, "dave")).status_code == 200, index
        assert [key async for key in api.redis.scan_iter(match=f"tailor:{api.stack}:rl:*")] == []


# --- bounded labels, admin tokens, no addresses in replies -------------------------------------------


def series(name: str) -> int:
    return sum(
        1
        for family in prometheus_client.REGISTRY.collect()
        if family.name == name
        for sample_ in family.samples
        if sample_.name.endswith("_total")
    )


async def test_a_thousand_random_methods_and_paths_add_a_bounded_number_of_series() -> None:
    """No Redis needed: 405 and 404 are answered before any handler."""
    settings = ApiSettings(redis_url="redis://127.0.0.1:1", stack="labels/test", api_routes="decide")
    app = app_module.create_app(settings)
    rng = random.Random(20261207)
    before = series("tailor_http_requests")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        for _ in range(1000):
            method = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(3, 12)))
            await client.request(method, "/v1/decide")
            await client.request(method, "/" + "".join(rng.choices(string.ascii_lowercase, k=12)))
    # (/v1/decide, other, 405) and (unmatched, other, 404): two new series at most.
    assert series("tailor_http_requests") - before <= 2


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis of this test's own, to be stopped mid-test."""
    port = ports.pick(None)
    conf = tmp_path / "redis.conf"
    conf.write_text(redis_component.redis_conf(port, tmp_path))
    process = subprocess.Popen([str(toolchain.find_tool("redis-server")), str(conf)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    with redis.Redis(port=port) as client:
        for _ in range(300):
            with contextlib.suppress(redis.ConnectionError):
                client.ping()
                break
            subprocess.run(["sleep", "0.05"], check=True)
    try:
        yield f"redis://127.0.0.1:{port}", process
    finally:
        process.kill()
        process.wait(10)


async def test_replies_name_no_redis_or_kafka_address_and_limits_fail_open(
    own_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, process = own_redis
    port = url.rsplit(":", 1)[1]
    dead_kafka = f"127.0.0.1:{ports.pick(None)}"
    published = with_limits(client=(1000, 60), user=(1000, 60))
    kafka = published.config.kafka.model_copy(update={"bootstrap_servers": dead_kafka})
    published = published.model_copy(update={"config": published.config.model_copy(update={"kafka": kafka})})
    async with running_api(url, published) as api:
        assert (await api.decide("erin")).status_code == 200

        async def kafka_checked() -> dict[str, object]:
            for _ in range(100):
                body = (await api.admin.get("/readyz")).json()
                if body["checks"]["kafka"]["detail"] != "not checked yet":
                    return body  # type: ignore[no-any-return]
                await asyncio.sleep(0.1)
            raise AssertionError("Kafka was never checked")

        body = await kafka_checked()
        assert body["checks"]["kafka"]["ok"] is False
        assert dead_kafka.rsplit(":", 1)[1] not in str(body), body

        process.kill()
        process.wait(10)
        for _ in range(2):  # the lost connection, then the refused reconnect
            reply = await api.decide("erin")
            assert reply.status_code == 503, reply.text
            assert port not in reply.text, reply.text
        ready = await api.admin.get("/readyz")
        assert ready.status_code == 503
        assert port not in ready.text, ready.text
        assert "RedisUnavailable" in ready.text
        # The limiter cannot count, so it lets requests through: the routes that need no Redis answer.
        assert (await api.client.get("/openapi.json")).status_code == 200
