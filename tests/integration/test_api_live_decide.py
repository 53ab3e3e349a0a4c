"""GET /v1/decide on the real Redis: profiles written the workers' way, caps under concurrency,
rollout, rotation, session stability, the kill switch, and the HTTP contract (headers, problems)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
import sample
from api_harness import Live, live_factory, page_view

from tailor.core.profile import store
from tailor.core.rules import ruleset

SDK_SOURCE = Path(__file__).resolve().parents[2] / "sdk" / "tailor.js"

pytestmark = [pytest.mark.redis, pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(180)]


@pytest.fixture
def live(redis_url: str, kafka_bootstrap: str) -> Live:
    return live_factory(redis_url, kafka_bootstrap)


def capped_shop(cap: ruleset.FrequencyCap) -> ruleset.Ruleset:
    return sample.build(
        [sample.html_variant("default", "hero", fallback=True), sample.html_variant("promo", "hero")],
        [ruleset.Rule(name="promo", slot="hero", variants=("promo",), frequency_cap=cap)],
    )


def served(response_json: dict[str, object]) -> tuple[object, object]:
    (decision,) = response_json["decisions"]  # type: ignore[misc]
    return decision["rule"], decision["variant"]  # type: ignore[index]


async def test_behaviour_changes_right_after_events_are_recorded(live: Live) -> None:
    async with live(sample.shop()) as api:
        first = await api.decide("shopper")
        assert first.status_code == 200
        assert served(first.json()) == (None, None)
        assert first.json()["decisions"][0]["content"]["body"] == "<p>hero-default</p>"
        await api.record_events("shopper", page_view("shopper", "shoes", 2), time.time())
        after = await api.decide("shopper")
        rule, variant = served(after.json())
        assert rule == "shoe-lovers"
        assert variant in ("hero-shoes-a", "hero-shoes-b")


async def test_a_profile_that_cannot_be_read_is_decided_as_a_newcomers(live: Live) -> None:
    """Damaged by hand, or written by an incompatible version: no 500 for that user, the fallback."""
    async with live(sample.shop()) as api:
        await api.record_events("shopper", page_view("shopper", "shoes", 3), time.time())
        assert served((await api.decide("shopper")).json())[0] == "shoe-lovers"
        await api.redis.hset(store.profile_key(api.stack, "shopper"), "c", "{not json")
        response = await api.decide("shopper")
        assert response.status_code == 200
        assert served(response.json()) == (None, None)


async def test_per_session_cap_holds_under_50_concurrent_requests(live: Live) -> None:
    async with live(capped_shop(ruleset.FrequencyCap(per_session=3))) as api:
        responses = await asyncio.gather(*(api.decide("u1", "s1") for _ in range(50)))
        outcomes = Counter(served(r.json()) for r in responses)
        assert outcomes == {("promo", "promo"): 3, (None, None): 47}
        other_session = await api.decide("u1", "s2")
        assert served(other_session.json()) == ("promo", "promo")


async def test_per_user_cap_holds_across_sessions_under_50_concurrent_requests(live: Live) -> None:
    cap = ruleset.FrequencyCap(per_user_count=5, per_user_window_seconds=3600)
    async with live(capped_shop(cap)) as api:
        responses = await asyncio.gather(*(api.decide("u1", f"s{i}") for i in range(50)))
        assert Counter(served(r.json())[0] for r in responses) == {"promo": 5, None: 45}
        assert served((await api.decide("u2", "s1")).json())[0] == "promo"


@pytest.mark.slow
async def test_rollout_of_30_percent_over_10000_users_is_within_2_points_and_sticky(live: Live) -> None:
    published = sample.build(
        [sample.html_variant("default", "hero", fallback=True), sample.html_variant("new", "hero")],
        [ruleset.Rule(name="trial", slot="hero", variants=("new",), rollout_percentage=30)],
    )
    async with live(published) as api:
        included: set[str] = set()
        for start in range(0, 10_000, 500):
            users = [f"user-{i}" for i in range(start, start + 500)]
            responses = await asyncio.gather(*(api.decide(user, "s") for user in users))
            included |= {
                user for user, r in zip(users, responses, strict=True) if served(r.json())[0] == "trial"
            }
        assert abs(len(included) / 10_000 - 0.30) <= 0.02, len(included)
        sample_users = sorted(included)[:100]
        again = await asyncio.gather(*(api.decide(user, "another-session") for user in sample_users))
        assert all(served(r.json())[0] == "trial" for r in again)


async def test_a_slot_stays_stable_within_a_session_and_rotates_across_sessions(live: Live) -> None:
    published = sample.build(
        [sample.html_variant(name, "hero") for name in ("a", "b", "c")],
        [ruleset.Rule(name="rotate", slot="hero", variants=("a", "b", "c"), strategy="weighted")],
    )
    async with live(published) as api:
        for session in ("s1", "s2", "s3"):
            seen = {served((await api.decide("u1", session)).json())[1] for _ in range(10)}
            assert len(seen) == 1
        across = {served((await api.decide("u1", f"x{i}")).json())[1] for i in range(40)}
        assert across == {"a", "b", "c"}


async def test_round_robin_advances_per_user_from_session_to_session(live: Live) -> None:
    published = sample.build(
        [sample.html_variant(name, "hero") for name in ("a", "b", "c")],
        [ruleset.Rule(name="rr", slot="hero", variants=("a", "b", "c"), strategy="roundRobin")],
    )
    async with live(published) as api:
        order = [served((await api.decide("u1", f"s{i}")).json())[1] for i in range(6)]
        assert order == ["a", "b", "c", "a", "b", "c"]
        assert served((await api.decide("u1", "s5")).json())[1] == "c"  # same session: remembered


async def test_a_newly_matching_higher_priority_rule_takes_over_within_the_session(live: Live) -> None:
    published = sample.build(
        [sample.html_variant(name, "hero") for name in ("everyone", "shoes")],
        [
            ruleset.Rule(name="base", slot="hero", priority=1, variants=("everyone",)),
            ruleset.Rule(
                name="shoe-fans", slot="hero", priority=5, variants=("shoes",),
                audience=(ruleset.Matcher(feature="views", dimension="category", value="shoes", window="5m",
                                          threshold=1),),
            ),
        ],
    )  # fmt: skip
    async with live(published) as api:
        assert served((await api.decide("u1", "s1")).json()) == ("base", "everyone")
        assert served((await api.decide("u1", "s1")).json()) == ("base", "everyone")
        await api.record_events("u1", page_view("u1", "shoes", 1), time.time())
        assert served((await api.decide("u1", "s1")).json()) == ("shoe-fans", "shoes")


async def test_kill_switch_serves_fallbacks_only(live: Live) -> None:
    published = sample.shop()
    killed = published.model_copy(
        update={"config": published.config.model_copy(update={"kill_switch": True})}
    )
    async with live(killed) as api:
        await api.record_events("fan", page_view("fan", "shoes", 5), time.time())
        response = await api.decide("fan")
        assert served(response.json()) == (None, None)
        assert response.json()["decisions"][0]["content"]["body"] == "<p>hero-default</p>"


async def test_response_headers_and_several_slots(live: Live) -> None:
    published = sample.build(
        [sample.html_variant("h", "hero", fallback=True), sample.html_variant("f", "footer", fallback=True)],
        [],
    )
    async with live(published) as api:
        response = await api.decide("u1", "s1", "hero", "footer")
        assert response.status_code == 200
        assert [d["slot"] for d in response.json()["decisions"]] == ["hero", "footer"]
        assert response.headers["x-tailor-ruleset-version"] == "1"
        assert response.headers["cache-control"].startswith("private")
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert all(d["rulesetVersion"] == 1 and d["decisionId"] for d in response.json()["decisions"])


@pytest.mark.parametrize(
    ("query", "status", "parameter"),
    [
        ("slot=hero", 400, "user"),
        ("user=u1", 400, "slot"),
        ("slot=nowhere&user=u1", 404, "slot"),
        ("slot=hero&user=%7Bbad%7D", 400, "user"),
        ("slot=hero&user=" + "x" * 200, 400, "user"),
        ("slot=hero&user=u1&session=a%20b", 400, "session"),
        ("slot=hero&user=alice%0A", 400, "user"),  # another user than alice, and a line in the logs
        ("slot=hero&user=u1&session=s1%0A", 400, "session"),
        ("slot=hero%0A&user=u1", 400, "slot"),
        ("slot=hero&user=u1&user=u2", 400, "user"),
        ("slot=he%00ro&user=u1", 400, "slot"),
    ],
)
async def test_bad_requests_get_a_problem_that_names_the_parameter(
    live: Live, query: str, status: int, parameter: str
) -> None:
    async with live(sample.shop()) as api:
        response = await api.client.get(f"/v1/decide?{query}")
        assert response.status_code == status
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert (problem["status"], problem["parameter"]) == (status, parameter)
        assert problem["detail"]


async def test_cors_allowlist_comes_from_the_ruleset(live: Live) -> None:
    published = sample.shop()
    config = published.config.model_copy(
        update={"api": ruleset.ApiConfig(cors_origins=("https://shop.example",))}
    )
    async with live(published.model_copy(update={"config": config})) as api:
        allowed = await api.client.get(
            "/v1/decide?slot=hero&user=u1", headers={"origin": "https://shop.example"}
        )
        assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
        other = await api.client.get(
            "/v1/decide?slot=hero&user=u1", headers={"origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers
        preflight = await api.client.options(
            "/v1/feedback",
            headers={"origin": "https://shop.example", "access-control-request-method": "POST"},
        )
        assert preflight.status_code == 204
        assert "POST" in preflight.headers["access-control-allow-methods"]


async def test_not_ready_until_a_ruleset_is_published(live: Live) -> None:
    async with live(None) as api:
        assert (await api.admin.get("/healthz")).status_code == 200
        ready = await api.admin.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["ruleset"]["ok"] is False
        assert (await api.decide("u1")).status_code == 503
        await api.publish(sample.shop())
        await api.wait_for_version(1)
        deadline = asyncio.get_running_loop().time() + 20
        ready = await api.admin.get("/readyz")
        while ready.status_code != 200 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
            ready = await api.admin.get("/readyz")
        assert ready.status_code == 200, ready.json()
        assert {name for name, check in ready.json()["checks"].items() if check["required"]} == {
            "ruleset", "redis",
        }  # fmt: skip
        assert (await api.decide("u1")).status_code == 200
        # The collector says when it collects (running, Kafka reachable); then events are taken.
        collecting = await api.admin.get("/readyz/collector")
        while collecting.status_code != 200 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
            collecting = await api.admin.get("/readyz/collector")
        assert collecting.status_code == 200, collecting.json()
        posted = await api.client.post("/v1/events", json=page_view("u1", "shoes", 1)[0])
        assert posted.status_code == 202, posted.text


async def test_metrics_use_the_contract_names(live: Live) -> None:
    async with live(sample.shop()) as api:
        await api.decide("u1")
        text = (await api.admin.get("/metrics")).text
        for name in ("tailor_http_requests_total", "tailor_decisions_total", "tailor_decide_duration_seconds",
                     "tailor_ruleset_version", "tailor_ruleset_loaded_timestamp_seconds"):  # fmt: skip
            assert name in text
        assert f'tailor_ruleset_version{{component="api",stack="{api.stack}"}} 1.0' in text


EVERY_TRIPLE = 'recent.category.all(a, recent.category.all(b, recent.category.all(c, a + b + c != "")))'


def every_triple(recent_limit: int) -> ruleset.Ruleset:
    config = sample.stack_config()
    features = config.features.model_copy(update={"recent_limit": recent_limit})
    return sample.build(
        [sample.html_variant("hero-default", "hero", fallback=True), sample.html_variant("triples", "hero")],
        [ruleset.Rule(name="triples", slot="hero", variants=("triples",), when=EVERY_TRIPLE)],
        config=config.model_copy(update={"features": features}),
    )


async def test_a_when_that_spends_its_budget_does_not_match_and_is_counted(live: Live) -> None:
    """The stack lowered recentLimit from 200 to 5: the rule fits at 5 (tailor.core.rules.environment),
    but a profile written before still holds 40 categories. Its `when` stops at the cost budget instead
    of running 64,000 steps on the request loop; the fallback is served and the stop counted."""
    async with live(every_triple(200)) as api:
        now = time.time()
        await api.record_events(
            "collector", [e for i in range(40) for e in page_view("collector", f"c{i}", 1)], now
        )
        await api.record_events("newcomer", page_view("newcomer", "shoes", 1), now)
        await api.wait_for_version((await api.publish(every_triple(5))).version)
        assert served((await api.decide("newcomer")).json()) == ("triples", "triples")
        started = time.perf_counter()
        stopped = (await api.decide("collector")).json()
        assert time.perf_counter() - started < 1.0
        assert served(stopped) == (None, None)
        assert stopped["decisions"][0]["content"]["body"] == "<p>hero-default</p>"
        text = (await api.admin.get("/metrics")).text
        assert 'tailor_cel_budget_stops_total{rule="triples"} 1.0' in text


async def test_sdk_is_served_as_javascript_or_404_with_a_reason(live: Live) -> None:
    async with live(sample.shop()) as api:
        response = await api.client.get("/sdk/tailor.js", headers={"accept-encoding": "gzip"})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/javascript")
        assert response.headers["content-encoding"] == "gzip"
        assert response.content == SDK_SOURCE.read_bytes()  # httpx decoded it
        assert int(response.headers["content-length"]) < len(response.content) / 3
        plain = await api.client.get("/sdk/tailor.js", headers={"accept-encoding": "gzip;q=0, identity"})
        assert "content-encoding" not in plain.headers
        assert plain.content == SDK_SOURCE.read_bytes()
    async with live(None, sdk_path="/nonexistent/tailor.js") as api:
        missing = await api.client.get("/sdk/tailor.js")
        assert missing.status_code == 404
        assert "/nonexistent/tailor.js" in missing.json()["detail"]


async def test_decisions_recover_after_redis_drops_the_connections(live: Live) -> None:
    async with live(sample.shop()) as api:
        assert (await api.decide("u1")).status_code == 200
        await api.redis.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        statuses = [(await api.decide("u1")).status_code for _ in range(3)]
        assert statuses[-1] == 200, statuses
        assert set(statuses) <= {200, 503}  # at most the request caught mid-drop is refused, and says why
