"""Per-user traits end to end (docs/traits.md): the admin PUT and the traits topic change the next
decision, a trait stops applying when its TTL passes, bad writes are refused (a 400 naming the trait;
a dead letter with the reason), and the API server refuses bad trait declarations."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import sample
import yaml
from api_harness import ADMIN_TOKEN, Api, running_api
from confluent_kafka import Producer
from pipeline_harness import Process, read_topic

from tailor.core import topics
from tailor.core.rules import ruleset
from tailor.devstack import ports

ROOT = Path(__file__).resolve().parents[2]
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]
on_the_loop = pytest.mark.asyncio(loop_scope="session")

TRAITS = (
    ruleset.Trait(name="churnRisk", type="number", ttl_seconds=3600, minimum=0, maximum=1),
    ruleset.Trait(name="plan", type="string", ttl_seconds=3600, values=("free", "gold")),
    ruleset.Trait(name="flash", type="boolean", ttl_seconds=1),  # expires within the test
)


def traits_ruleset(suffix: str = "") -> ruleset.Ruleset:
    """Rules on traits; with a `suffix`, topics of their own (the traits topic test's worker)."""
    config = sample.stack_config()
    topic_names = {"traits_topic": "tailor.traits"}
    if suffix:
        topic_names = {
            "events_topic": f"traits-events-{suffix}",
            "dead_letter_topic": f"traits-dead-{suffix}",
            "traits_topic": f"traits-{suffix}",
            "partitions": 1,
        }
    config = config.model_copy(
        update={
            "features": config.features.model_copy(update={"traits": TRAITS}),
            "kafka": config.kafka.model_copy(update=topic_names),
        }
    )
    rules = [
        ruleset.Rule(
            name="at-risk", slot="hero", priority=30, when="traits.churnRisk > 0.7", variants=("save",)
        ),
        ruleset.Rule(
            name="gold", slot="hero", priority=20,
            audience=(ruleset.Matcher(trait="plan", op="eq", value="gold"),), variants=("gold",),
        ),
        ruleset.Rule(
            name="flash", slot="hero", priority=10,
            audience=(ruleset.Matcher(trait="flash", op="eq", value="true"),), variants=("flash",),
        ),
    ]  # fmt: skip
    names = ("default", "save", "gold", "flash")
    variants = [sample.html_variant(n, "hero", fallback=n == "default") for n in names]
    return sample.build(variants, rules, config=config)


Live = Callable[[], contextlib.AbstractAsyncContextManager[Api]]


@pytest.fixture
def live(redis_url: str) -> Live:
    """A content API serving traits_ruleset(), started inside the test (its task checks that stop()
    leaves none behind)."""
    return lambda: running_api(redis_url, traits_ruleset())


async def served(api: Api, user: str) -> str | None:
    decided = await api.decide(user)
    assert decided.status_code == 200, decided.text
    return decided.json()["decisions"][0]["rule"]


async def put(api: Api, user: str, body: Any) -> Any:
    return await api.admin.put(f"/v1/profiles/{user}/traits", json=body, headers=ADMIN)


@on_the_loop
async def test_a_put_trait_changes_the_next_decision_and_explain_shows_it(live: Live) -> None:
    async with live() as api:
        user = f"put-{time.monotonic_ns()}"
        assert await served(api, user) is None  # control: no traits, the fallback
        written = await put(api, user, {"churnRisk": 0.9, "plan": "gold"})
        assert written.status_code == 200, written.text
        assert written.json() == {
            "user": user,
            "written": 2,
            "stale": 0,
            "traits": {"churnRisk": 0.9, "plan": "gold"},
        }
        assert await served(api, user) == "at-risk"
        explained = await api.admin.get("/v1/explain", params={"slot": "hero", "user": user}, headers=ADMIN)
        rules = {entry["rule"]: entry for entry in explained.json()["slots"][0]["rules"]}
        assert rules["at-risk"]["when"]["traits"] == {"churnRisk": 0.9}
        assert (await put(api, user, {"churnRisk": 0.2})).status_code == 200
        assert await served(api, user) == "gold"
        explained = await api.admin.get("/v1/explain", params={"slot": "hero", "user": user}, headers=ADMIN)
        rules = {entry["rule"]: entry for entry in explained.json()["slots"][0]["rules"]}
        assert rules["at-risk"]["when"] == {
            "expression": "traits.churnRisk > 0.7", "result": False, "traits": {"churnRisk": 0.2}
        }  # fmt: skip
        assert rules["gold"]["audience"][0]["actual"] == "gold"
        assert (await put(api, user, {"plan": None})).status_code == 200  # null unsets
        assert await served(api, user) is None
        body = (await api.admin.get("/openapi.json")).json()["paths"]["/v1/profiles/{user}/traits"]["put"]
        schema = body["requestBody"]["content"]["application/json"]["schema"]
        assert sorted(schema["properties"]) == ["churnRisk", "flash", "plan"]


@on_the_loop
async def test_a_bad_put_is_a_400_naming_each_bad_trait_and_writes_nothing(live: Live) -> None:
    async with live() as api:
        user = f"bad-{time.monotonic_ns()}"
        refused = await put(api, user, {"churnRisk": 1.7, "plan": "gold", "ltv": 3})
        assert refused.status_code == 400, refused.text
        problem = refused.json()
        assert problem["errors"] == [
            {"trait": "churnRisk", "error": "number trait 1.7 is above the maximum 1"},
            {"trait": "ltv", "error": "not a declared trait (the stack declares: churnRisk, flash, plan)"},
        ]
        assert "nothing was written" in problem["detail"]
        assert await served(api, user) is None  # plan=gold was valid, but the write is all or nothing
        assert (await put(api, user, [1, 2])).status_code == 400
        unauthorized = await api.admin.put(f"/v1/profiles/{user}/traits", json={"plan": "gold"})
        assert unauthorized.status_code == 401


@on_the_loop
async def test_a_trait_stops_applying_when_its_ttl_passes(live: Live) -> None:
    async with live() as api:
        user = f"ttl-{time.monotonic_ns()}"
        assert (await put(api, user, {"flash": True})).status_code == 200
        written_at = time.monotonic()
        assert await served(api, user) == "flash"
        deadline = written_at + 3
        while await served(api, user) == "flash":
            assert time.monotonic() < deadline, "the 1s trait still applied after 3s"
            await asyncio.sleep(0.05)
        assert time.monotonic() - written_at >= 0.9  # not before its TTL


@on_the_loop
async def test_a_put_through_the_real_admin_listener_reads_its_body(redis_url: str) -> None:
    """The admin port's own HTTP server (tailor_api.adminserver), not the ASGI transport: it reads the
    body by its Content-Length."""
    admin_port = ports.pick(None)
    async with running_api(redis_url, traits_ruleset(), admin_port=admin_port) as api:
        await api.app.start_admin()  # what the server's lifespan does
        try:
            user = f"listener-{time.monotonic_ns()}"
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin_port}", headers=ADMIN) as admin:
                written = await admin.put(f"/v1/profiles/{user}/traits", json={"plan": "gold"})
                assert written.status_code == 200, written.text
                assert await served(api, user) == "gold"
                refused = await admin.put(f"/v1/profiles/{user}/traits", content=b'{"plan": "platinum"}')
                assert refused.status_code == 400, refused.text
                assert refused.json()["errors"][0]["trait"] == "plan"
        finally:
            await api.app.stop_admin()


# -- the traits topic ---------------------------------------------------------------------------------


def traits_event(user: str, traits: dict[str, Any], at: float | None = None) -> bytes:
    """A traits CloudEvent in structured JSON mode, as a Flink or Spark job writes it (docs/traits.md)."""
    moment = time.gmtime(at if at is not None else time.time())
    return json.dumps({
        "specversion": "1.0", "type": "dev.tailor.traits.v1", "source": "//tests/churn-model",
        "id": str(uuid.uuid4()), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", moment),
        "datacontenttype": "application/json", "data": {"userId": user, "traits": traits},
    }).encode()  # fmt: skip


@pytest.mark.kafka
@on_the_loop
async def test_a_traits_event_on_the_topic_changes_the_decision_and_a_bad_one_is_dead_lettered(
    redis_url: str, kafka_bootstrap: str
) -> None:
    published = traits_ruleset(uuid.uuid4().hex[:8])
    kafka = published.config.kafka
    await asyncio.to_thread(topics.ensure, kafka_bootstrap, [kafka.traits_topic], 1)  # the operator's job
    async with running_api(redis_url, published, kafka_bootstrap=kafka_bootstrap) as api:
        worker = Process(
            ["worker", "--stack", api.stack, "--metrics-port", "0"],
            {"TAILOR_REDIS_URL": redis_url, "TAILOR_WORKER_POLL_SECONDS": "0.1"},
        )
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
        try:
            user = f"topic-{time.monotonic_ns()}"
            assert await served(api, user) is None
            # An older event after a newer one: the newer value stays (replays never undo a write).
            producer.produce(kafka.traits_topic, traits_event(user, {"churnRisk": 0.95}), key=user)
            producer.produce(
                kafka.traits_topic, traits_event(user, {"churnRisk": 0.1}, time.time() - 60), key=user
            )
            producer.produce(
                kafka.traits_topic, traits_event(user, {"churnRisk": 3, "plan": "gold"}), key=user
            )
            producer.produce(kafka.traits_topic, b"not json", key=user)
            assert producer.flush(10) == 0
            deadline = time.monotonic() + 60
            while await served(api, user) != "at-risk":
                assert worker.alive, worker.output()
                assert time.monotonic() < deadline, worker.output()
                await asyncio.sleep(0.1)

            def letters() -> list[Any]:
                return read_topic(kafka_bootstrap, kafka.dead_letter_topic, 1, timeout=10)

            found = await asyncio.to_thread(letters)
            while len(found) < 2:
                assert time.monotonic() < deadline, worker.output()
                await asyncio.sleep(0.2)
                found = await asyncio.to_thread(letters)
            headers = [dict(m.headers()) for m in found]
            reasons = {h["tailor-dlq-reason"]: json.loads(h["tailor-dlq-error"]) for h in headers}
            assert reasons[b"invalid-trait"] == [
                {"field": "data.traits.churnRisk", "message": "number trait 3.0 is above the maximum 1"}
            ]
            assert b"undecodable" in reasons
            assert await served(api, user) == "at-risk"  # plan=gold came in a refused event: not written
        finally:
            producer.flush(5)
            worker.close()


# -- the declaration, refused by the API server ---------------------------------------------------------

STACK = yaml.safe_load((ROOT / "examples" / "shop" / "stack.yaml").read_text())


def test_the_api_server_refuses_bad_trait_declarations_and_defaults_good_ones(
    kubectl: Callable[..., Any], namespace: str
) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    wait = ("wait", "--for=condition=Established", "crd/personalizationstacks.tailor.dev", "--timeout=30s")
    deadline = time.monotonic() + 30
    while kubectl(*wait, check=False).returncode != 0:  # no conditions yet on a CRD just made
        assert time.monotonic() < deadline, "the CRD was not established"
        time.sleep(0.2)

    def stack_with(traits: list[dict[str, Any]]) -> str:
        stack = json.loads(json.dumps(STACK))
        stack["spec"]["traits"] = traits
        return yaml.safe_dump(stack)

    for traits, message in (
        ([{"name": "churn-risk", "type": "number"}], "spec.traits[0].name"),
        ([{"name": "x", "type": "date"}], "spec.traits[0].type"),
        ([{"name": "x", "type": "number", "ttl": "30d"}], "ttl must be a duration"),
        ([{"name": "x", "type": "string", "maximum": 3}], "minimum and maximum apply to number traits only"),
        ([{"name": "x", "type": "number"}, {"name": "x", "type": "string"}], "Duplicate value"),
    ):
        result = kubectl("apply", "-n", namespace, "-f", "-", input=stack_with(traits), check=False)
        assert result.returncode != 0, traits
        assert message in result.stderr, result.stderr
    kubectl("apply", "-n", namespace, "-f", "-", input=stack_with([{"name": "churnRisk", "type": "number"}]))
    got = json.loads(kubectl("get", "-n", namespace, "pstack", "shop", "-o", "json").stdout)
    assert got["spec"]["traits"] == [{"name": "churnRisk", "type": "number", "ttl": "720h", "maxLength": 256}]
