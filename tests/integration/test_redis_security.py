"""Redis security with the real clients against a real redis-server that speaks only TLS and knows only
an ACL user whose password holds @ : / % (tailor.devstack.secure_redis): redis-py as the worker, the
operator and the CLI use it, the content API's own connection (tailor_api.resp), the `tailor api` and
`tailor worker` processes end to end; a wrong password and an untrusted CA named for what they are;
and a full Redis (noeviction) refusing writes while the worker and the API say so and stay up."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis
import sample
from pipeline_harness import Process, wait_until
from tailor_api import resp

from tailor.core import redis_target, topics
from tailor.core.rules import ruleset, versions
from tailor.devstack import ports
from tailor.devstack import secure_redis as tls_redis

pytestmark = [pytest.mark.redis]


def publish(target: redis_target.RedisTarget, published: ruleset.Ruleset) -> int:
    async def go() -> int:
        client = target.async_client()
        try:
            return (await versions.publish(client, published)).version
        finally:
            await client.aclose()

    return asyncio.run(go())


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TAILOR_REDIS")}
    return subprocess.run(
        [sys.executable, "-m", "tailor.cli.main", *args],
        env={**clean, **env}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def shoe_fans(stack: str, bootstrap: str) -> ruleset.Ruleset:
    suffix = uuid.uuid4().hex[:8]
    config = sample.stack_config(stack)
    kafka = config.kafka.model_copy(
        update={"bootstrap_servers": bootstrap, "events_topic": f"sec-events-{suffix}",
                "dead_letter_topic": f"sec-dead-{suffix}", "partitions": 1}
    )  # fmt: skip
    fans = ruleset.Rule(
        name="shoe-fans",
        slot="hero",
        variants=("shoes",),
        audience=(
            ruleset.Matcher(feature="views", dimension="category", value="shoes", window="5m", threshold=2),
        ),
    )
    # Everyone sees the promo: a decision that matches a rule writes (what the session saw, impressions).
    everyone = ruleset.Rule(name="everyone", slot="promo", variants=("promo",))
    return sample.build(
        [
            sample.html_variant("default", "hero", fallback=True),
            sample.html_variant("shoes", "hero"),
            sample.html_variant("promo", "promo"),
        ],
        [fans, everyone],
        stack=stack,
        config=config.model_copy(update={"kafka": kafka}),
    )


def test_every_redis_client_logs_in_over_tls_as_an_acl_user_with_reserved_characters_in_its_password(
    secure_redis: tls_redis.SecureRedis,
) -> None:
    target = secure_redis.target()
    assert set("@:/%") <= set(target.password or "")
    # redis-py, synchronous (the worker) and asyncio (the operator, the API off its hot path).
    with target.client() as client:
        assert client.acl_whoami() == tls_redis.USER
        assert client.connection_pool.connection_class.__name__ == "SSLConnection"

    async def hot_path() -> list[object]:
        connection = resp.Connection(target, timeout_seconds=5)
        try:
            first = await connection.execute(
                [("ACL", "WHOAMI"), ("SET", "tailor:sec:k", "v"), ("GET", "tailor:sec:k")]
            )
            # A reconnect logs in again (the server dropped the client: CLIENT KILL by user).
            with secure_redis.target(user=tls_redis.ADMIN).client() as admin:
                admin.client_kill_filter(user=tls_redis.USER, skipme=True)
            again = None
            for _ in range(50):  # the first call after the kill sees the connection lost
                try:
                    again = await connection.execute([("ACL", "WHOAMI")])
                    break
                except resp.RedisUnavailable:
                    await asyncio.sleep(0.05)
            return [*first, again]
        finally:
            await connection.close()

    whoami, stored, value, again = asyncio.run(hot_path())
    assert (whoami, stored, value) == (tls_redis.USER.encode(), b"OK", b"v")
    assert again == [tls_redis.USER.encode()]

    # The CLI, from TAILOR_REDIS_* (what `tailor dev env` or a port-forward gives).
    stack = f"sec-{uuid.uuid4().hex[:8]}/shop"
    version = publish(target, sample.shop(stack))
    listed = cli("rollback", "--stack", stack, "--list", env=target.environment())
    assert listed.returncode == 0, listed.stderr
    assert f"v{version} " in listed.stdout
    assert "<- serving" in listed.stdout
    # The CA bundle alone (no client certificate): `tls-auth-clients optional` lets it in.
    ca_only = secure_redis.target(client_pair=False)
    assert cli("rollback", "--stack", stack, "--list", env=ca_only.environment()).returncode == 0


def test_a_wrong_password_an_untrusted_ca_and_a_url_with_credentials_are_named_as_such(
    secure_redis: tls_redis.SecureRedis,
) -> None:
    wrong = secure_redis.target(password="p@ss:w/rd%41;x")
    with wrong.client() as client, pytest.raises(redis.RedisError) as refused:
        client.ping()
    assert redis_target.explain(refused.value, wrong).reason == "RedisAuthenticationFailed"
    untrusted = secure_redis.target(ca=secure_redis.other_ca)
    with untrusted.client() as client, pytest.raises(redis.RedisError) as unverified:
        client.ping()
    assert redis_target.explain(unverified.value, untrusted).reason == "RedisCertificateUntrusted"
    # The host must be one the certificate names: 127.0.0.1, not localhost (the same server).
    elsewhere = redis_target.RedisTarget.parse(
        f"rediss://localhost:{secure_redis.port}/0", username=tls_redis.USER,
        password=tls_redis.PASSWORD, ca_file=str(secure_redis.ca),
    )  # fmt: skip
    with elsewhere.client() as client, pytest.raises(redis.RedisError) as mismatch:
        client.ping()
    assert redis_target.explain(mismatch.value, elsewhere).reason == "RedisCertificateNameMismatch"

    async def hot_path(target: redis_target.RedisTarget) -> str:
        connection = resp.Connection(target, timeout_seconds=5)
        try:
            await connection.execute([("PING",)])
        except resp.RedisUnavailable as error:
            return redis_target.explain(error, target).reason
        finally:
            await connection.close()
        return "answered"

    assert asyncio.run(hot_path(wrong)) == "RedisAuthenticationFailed"
    assert asyncio.run(hot_path(untrusted)) == "RedisCertificateUntrusted"
    assert asyncio.run(hot_path(secure_redis.target())) == "answered"  # the control

    url = f"rediss://{tls_redis.USER}:{tls_redis.PASSWORD}@127.0.0.1:{secure_redis.port}/0"
    refused_cli = cli("rollback", "--stack", "a/b", "--list", env={"TAILOR_REDIS_URL": url})
    assert refused_cli.returncode == 1
    assert "put no credentials in the Redis URL" in refused_cli.stderr
    assert tls_redis.PASSWORD not in refused_cli.stderr + refused_cli.stdout


@pytest.mark.kafka
@pytest.mark.slow
def test_the_api_decides_and_takes_events_and_the_worker_counts_over_tls(
    secure_redis: tls_redis.SecureRedis, kafka_bootstrap: str
) -> None:
    target = secure_redis.target()
    stack = f"sec-{uuid.uuid4().hex[:8]}/shop"
    published = shoe_fans(stack, kafka_bootstrap)
    kafka = published.config.kafka
    topics.ensure(kafka.bootstrap_servers, [kafka.events_topic, kafka.dead_letter_topic], kafka.partitions)
    publish(target, published)
    port, admin_port = ports.pick(None), ports.pick(None)
    env = {**target.environment(), "TAILOR_ADMIN_TOKEN": "t" * 32}
    api = Process(["api", "--stack", stack, "--host", "127.0.0.1", "--port", str(port),
                   "--admin-port", str(admin_port)], env)  # fmt: skip
    worker = Process(["worker", "--stack", stack, "--metrics-port", "0"],
                     {**env, "TAILOR_WORKER_POLL_SECONDS": "0.1"})  # fmt: skip
    # Beside them, a content API with a wrong password: it stays up, not ready, and says why.
    wrong_port, wrong_admin = ports.pick(None), ports.pick(None)
    wrong = Process(
        [
            "api",
            "--stack",
            stack,
            "--host",
            "127.0.0.1",
            "--port",
            str(wrong_port),
            "--admin-port",
            str(wrong_admin),
        ],
        {**env, "TAILOR_REDIS_PASSWORD": "not-it"},
    )
    base = f"http://127.0.0.1:{port}"

    def outputs() -> str:
        return (
            f"--- api ---\n{api.output()}\n--- worker ---\n{worker.output()}\n--- wrong ---\n{wrong.output()}"
        )

    try:
        with httpx.Client(base_url=base, timeout=5) as http:
            # /readyz/collector: the collector's producer starts after decide is ready (and posts would 503).
            wait_until(lambda: _ready(admin_port, "/readyz/collector") or not api.alive, 60, outputs)
            user = f"u-{uuid.uuid4().hex[:6]}"
            first = http.get("/v1/decide", params={"slot": "hero", "user": user}).json()["decisions"][0]
            assert first["rule"] is None  # the fallback: nothing counted yet
            views = [
                {"id": uuid.uuid4().hex, "type": "page_view", "userId": user, "sessionId": "s1",
                 "properties": {"category": "shoes"}}
                for _ in range(2)
            ]  # fmt: skip
            assert http.post("/v1/events", json={"events": views}).status_code == 202

            def shoes() -> bool:
                reply = http.get("/v1/decide", params={"slot": "hero", "user": user})
                return reply.status_code == 200 and reply.json()["decisions"][0]["variant"] == "shoes"

            wait_until(shoes, 60, outputs)  # the worker counted them, over TLS, as the ACL user
            assert worker.alive, outputs()
            assert api.alive, outputs()

        def says_why() -> bool:
            try:
                reply = httpx.get(f"http://127.0.0.1:{wrong_admin}/readyz", timeout=5)
            except httpx.HTTPError:
                return False
            return reply.status_code == 503 and "RedisAuthenticationFailed" in reply.text

        wait_until(says_why, 60, outputs)
        assert httpx.get(f"http://127.0.0.1:{wrong_admin}/healthz", timeout=5).status_code == 200
        assert wrong.alive, outputs()
        assert "RedisAuthenticationFailed" in wrong.output()
    finally:
        for process in (worker, api, wrong):
            process.close()


@pytest.mark.kafka
@pytest.mark.slow
def test_a_full_redis_refuses_writes_and_the_worker_holds_its_batch_and_the_api_serves_on(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    server = shutil.which("redis-server")
    assert server is not None
    port = ports.pick(None)
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path), "--maxmemory-policy", "noeviction"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    target = redis_target.RedisTarget.parse(f"redis://127.0.0.1:{port}/0")
    admin = target.client()
    wait_until(lambda: _pings(admin), 15, lambda: "redis-server did not start")
    stack = f"full-{uuid.uuid4().hex[:8]}/shop"
    published = shoe_fans(stack, kafka_bootstrap)
    kafka = published.config.kafka
    topics.ensure(kafka.bootstrap_servers, [kafka.events_topic, kafka.dead_letter_topic], kafka.partitions)
    publish(target, published)
    api_port, admin_port = ports.pick(None), ports.pick(None)
    env = target.environment()
    api = Process(["api", "--stack", stack, "--host", "127.0.0.1", "--port", str(api_port),
                   "--admin-port", str(admin_port)], env)  # fmt: skip
    quick = {"TAILOR_WORKER_POLL_SECONDS": "0.1", "TAILOR_WORKER_RETRY_SECONDS": "0.2"}
    worker = Process(["worker", "--stack", stack, "--metrics-port", "0"], {**env, **quick})

    def outputs() -> str:
        return f"--- api ---\n{api.output()}\n--- worker ---\n{worker.output()}"

    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=5) as http:
            wait_until(lambda: _ready(admin_port) or not api.alive, 60, outputs)
            wait_until(lambda: "consuming" in worker.output(), 60, outputs)
            # Full: maxmemory at what Redis holds now, so every write is refused with -OOM.
            admin.config_set("maxmemory", str(int(admin.info("memory")["used_memory"])))
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                admin.set("probe", "x" * 1000)
            user = f"u-{uuid.uuid4().hex[:6]}"
            views = [
                {"id": uuid.uuid4().hex, "type": "page_view", "userId": user, "sessionId": "s1",
                 "properties": {"category": "shoes"}}
                for _ in range(2)
            ]  # fmt: skip
            # Resent on 503, as tailor.js does: /readyz no longer waits for the collector's Kafka and topics.
            accepted = lambda: http.post("/v1/events", json={"events": views}).status_code == 202  # noqa: E731
            wait_until(accepted, 30, outputs)
            wait_until(lambda: "is full and refuses writes" in worker.output(), 30, outputs)
            # Decisions are still served (reads work; their background writes are refused and logged).
            for _ in range(20):
                reply = http.get("/v1/decide", params=[("slot", "hero"), ("slot", "promo"), ("user", user)])
                assert reply.status_code == 200, reply.text
                assert [d["rule"] for d in reply.json()["decisions"]] == [None, "everyone"]
            time.sleep(1.0)
            assert api.alive, outputs()
            assert worker.alive, outputs()
            refusals = api.output().count("Redis refused a background write")
            assert 1 <= refusals <= 2, outputs()  # one line per 10 s, not one per decision

            # Room again: the held batch is written, nothing was lost.
            admin.config_set("maxmemory", "0")

            def counted() -> bool:
                reply = http.get("/v1/decide", params={"slot": "hero", "user": user})
                return reply.json()["decisions"][0]["variant"] == "shoes"

            wait_until(counted, 30, outputs)
    finally:
        worker.close()
        api.close()
        admin.close()
        process.terminate()
        process.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def _ready(admin_port: int, path: str = "/readyz") -> bool:
    """The API's readiness (`path`: /readyz, or /readyz/collector), on its admin port."""
    try:
        return httpx.get(f"http://127.0.0.1:{admin_port}{path}", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
