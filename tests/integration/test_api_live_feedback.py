"""Feedback and explain on the real Redis: clicks reach the per-variant stats, notInterested hides a
variant and its tags, a bandit learns from clicks, explain/profiles show what a reviewer needs."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import pytest
import sample
from api_harness import ADMIN_TOKEN, Live, live_factory, page_view

from tailor.core import stats
from tailor.core.profile import traits as profile_traits
from tailor.core.rules import ruleset

pytestmark = [pytest.mark.redis, pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(180)]
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def live(redis_url: str, kafka_bootstrap: str) -> Live:
    return live_factory(redis_url, kafka_bootstrap)


def two_variants(strategy: ruleset.Strategy = "weighted", **api: object) -> ruleset.Ruleset:
    return sample.build(
        [
            sample.html_variant("default", "hero", fallback=True),
            sample.html_variant("a", "hero", tags=("sale",)),
            sample.html_variant("b", "hero", tags=("sale",)),
            sample.html_variant("c", "hero", tags=("new",)),
        ],
        [ruleset.Rule(name="r", slot="hero", variants=("a", "b", "c"), strategy=strategy)],
        config=sample.stack_config(**api),
    )


async def test_clicks_and_impressions_reach_the_variant_stats_once(live: Live) -> None:
    async with live(two_variants()) as api:
        decision = (await api.decide("u1")).json()["decisions"][0]
        for _ in range(3):  # a retried click counts once
            response = await api.client.post(
                "/v1/feedback", json={"decisionId": decision["decisionId"], "type": "click"}
            )
            assert response.status_code == 202
        assert response.json() == {"status": "duplicate"}
        await asyncio.sleep(0.3)  # the impressions flush runs every 50 ms in these tests
        observed = await stats.read(api.redis, api.stack, "r")
        assert observed[decision["variant"]] == stats.VariantStats(impressions=1, clicks=1)


async def test_feedback_with_a_forged_or_malformed_decision_id_is_refused(live: Live) -> None:
    async with live(two_variants()) as api:
        token = (await api.decide("u1")).json()["decisions"][0]["decisionId"]
        payload, mac = token.split(".")
        forged = await api.client.post(
            "/v1/feedback", json={"decisionId": payload + "x." + mac, "type": "click"}
        )
        assert forged.status_code == 403
        malformed = await api.client.post("/v1/feedback", json={"decisionId": "nodot", "type": "click"})
        assert malformed.status_code == 400
        bad_type = await api.client.post("/v1/feedback", json={"decisionId": token, "type": "love"})
        assert (bad_type.status_code, bad_type.json()["parameter"]) == (400, "type")
        not_json = await api.client.post(
            "/v1/feedback", content=b"{", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 400


async def test_not_interested_hides_the_variant_and_its_tags_then_expires(live: Live) -> None:
    async with live(two_variants(suppression_seconds=2)) as api:
        for i in range(50):  # a user whose session shows a "sale" variant
            user = f"u{i}"
            decision = (await api.decide(user, "s0")).json()["decisions"][0]
            if decision["variant"] in ("a", "b"):
                break
        response = await api.client.post(
            "/v1/feedback", json={"decisionId": decision["decisionId"], "type": "notInterested"}
        )
        assert response.status_code == 202
        # a and b share the tag "sale": both are hidden, in this session and new ones.
        seen = {(await api.decide(user, f"s{i}")).json()["decisions"][0]["variant"] for i in range(20)}
        assert seen == {"c"}
        await asyncio.sleep(2.2)
        seen = {(await api.decide(user, f"t{i}")).json()["decisions"][0]["variant"] for i in range(30)}
        assert {"a", "b"} & seen


async def test_bandit_shifts_traffic_toward_the_variant_with_more_clicks(live: Live) -> None:
    """Known click rates: b is clicked 25 % of the time, a 5 %. Clicks go through POST /v1/feedback,
    impressions through the API's own counting; the bandit's view refreshes in the background."""
    published = sample.build(
        [sample.html_variant("a", "hero"), sample.html_variant("b", "hero")],
        [ruleset.Rule(name="learn", slot="hero", variants=("a", "b"), strategy="bandit", seed="sim")],
    )
    rates = {"a": 0.05, "b": 0.25}
    clicker = random.Random(11)
    async with live(published) as api:
        shares = []
        for round_number in range(8):
            users = [f"r{round_number}-u{i}" for i in range(150)]
            responses = await asyncio.gather(*(api.decide(user, "s") for user in users))
            decisions = [r.json()["decisions"][0] for r in responses]
            shares.append(Counter(d["variant"] for d in decisions)["b"] / len(decisions))
            clicks = [d for d in decisions if clicker.random() < rates[d["variant"]]]
            feedback = [{"decisionId": d["decisionId"], "type": "click"} for d in clicks]
            await asyncio.gather(*(api.client.post("/v1/feedback", json=body) for body in feedback))
            await asyncio.sleep(0.3)  # impressions flushed, bandit refreshed
        assert 0.3 < shares[0] < 0.7, shares
        assert min(shares[-2:]) > 0.75, shares


async def test_a_click_counts_for_the_users_segment_and_explain_shows_its_counts(live: Live) -> None:
    """A contextual bandit (rotation.context: the top category in 24h): the decision's id carries the
    user's segment, feedback adds the click to that segment's counts beside the rule's, and explain
    names the segment with its counts; a user without views is in "(none)", which saw nothing."""
    by_category = ruleset.BanditContext(
        profile=ruleset.ProfileSegment(feature="views", dimension="category", window="24h")
    )
    published = sample.build(
        [sample.html_variant("a", "hero"), sample.html_variant("b", "hero")],
        [ruleset.Rule(name="ctx", slot="hero", variants=("a", "b"), strategy="bandit", context=by_category)],
    )
    async with live(published) as api:
        await api.record_events("u1", page_view("u1", "shoes", 3), time.time())
        decision = (await api.decide("u1")).json()["decisions"][0]
        clicked = await api.client.post(
            "/v1/feedback", json={"decisionId": decision["decisionId"], "type": "click"}
        )
        assert clicked.status_code == 202
        variant, deadline = decision["variant"], time.monotonic() + 10
        while True:  # impressions are flushed and the counts re-read in the background
            explained = (
                await api.admin.get("/v1/explain?slot=hero&user=u1&session=s1", headers=ADMIN)
            ).json()
            segment = explained["slots"][0]["rules"][0]["segment"]
            if segment["counts"][variant]["impressions"] == 1 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert segment["name"] == "shoes"
        assert segment["counts"][variant] | {"posteriorMean": 0} == {
            "impressions": 1,
            "clicks": 1,
            "posteriorMean": 0,
        }
        assert explained["slots"][0]["decision"]["segment"] == "shoes"
        raw = await api.redis.hgetall(stats.segment_key(api.stack, "ctx"))
        assert stats.parse_segments(raw) == {"shoes": {variant: stats.VariantStats(1, 1)}}
        assert (await stats.read(api.redis, api.stack, "ctx"))[variant] == stats.VariantStats(1, 1)
        newcomer = (await api.admin.get("/v1/explain?slot=hero&user=u2&session=s1", headers=ADMIN)).json()
        segment = newcomer["slots"][0]["rules"][0]["segment"]
        assert segment["name"] == "(none)"
        assert segment["counts"][variant]["impressions"] == 0


async def test_a_trait_is_the_segment_of_a_contextual_bandit_by_trait(live: Live) -> None:
    """rotation.context.trait: the user's `plan` trait (written as traits are written) is their segment; the
    click counts there, and a user without the trait is "(none)"."""
    config = sample.stack_config()
    plan = ruleset.Trait(name="plan", type="string", ttl_seconds=3600, values=("free", "gold"))
    config = config.model_copy(update={"features": config.features.model_copy(update={"traits": (plan,)})})
    published = sample.build(
        [sample.html_variant("a", "hero"), sample.html_variant("b", "hero")],
        [ruleset.Rule(name="by-plan", slot="hero", variants=("a", "b"), strategy="bandit",
                      context=ruleset.BanditContext(trait="plan"))],
        config=config,
    )  # fmt: skip
    async with live(published) as api:
        now = time.time()  # the trait written as the workers and the admin route write it
        write = profile_traits.write_command(api.stack, "u1", {"plan": plan}, {"plan": "gold"}, now, now)
        await api.redis.execute_command(*profile_traits.with_source(write))
        decision = (await api.decide("u1")).json()["decisions"][0]
        clicked = await api.client.post(
            "/v1/feedback", json={"decisionId": decision["decisionId"], "type": "click"}
        )
        assert clicked.status_code == 202
        expected = {"gold": {decision["variant"]: stats.VariantStats(1, 1)}}
        deadline = time.monotonic() + 10
        while True:  # the impression is flushed in the background
            raw = await api.redis.hgetall(stats.segment_key(api.stack, "by-plan"))
            if stats.parse_segments(raw) == expected or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert stats.parse_segments(raw) == expected
        newcomer = (await api.admin.get("/v1/explain?slot=hero&user=u2&session=s1", headers=ADMIN)).json()
        assert newcomer["slots"][0]["rules"][0]["segment"]["name"] == "(none)"
        assert newcomer["slots"][0]["rules"][0]["segment"]["source"] == {"trait": "plan"}


async def test_explain_needs_the_token_and_shows_every_check(live: Live) -> None:
    async with live(sample.shop()) as api:
        assert (await api.admin.get("/v1/explain?slot=hero&user=u1")).status_code == 401
        wrong = await api.admin.get("/v1/explain?slot=hero&user=u1", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert "bearer" in wrong.headers["www-authenticate"].lower()
        await api.record_events("u1", page_view("u1", "shoes", 3), time.time())
        explained = await api.admin.get("/v1/explain?slot=hero&user=u1&session=s1", headers=ADMIN)
        assert explained.status_code == 200
        body = explained.json()
        (slot,) = body["slots"]
        (rule,) = slot["rules"]
        assert rule["audience"][0]["actual"] == 3
        assert rule["audience"][0]["matched"] is True
        assert rule["outcome"] == "chosen"
        assert 0 <= rule["rollout"]["bucket"] < 100
        assert slot["decision"]["rule"] == "shoe-lovers"
        assert body["profile"]["counts"]["30m"]["views|category|shoes"] == 3


async def test_explain_counts_no_cap(live: Live) -> None:
    capped = sample.build(
        [sample.html_variant("d", "hero", fallback=True), sample.html_variant("p", "hero")],
        [
            ruleset.Rule(
                name="p", slot="hero", variants=("p",), frequency_cap=ruleset.FrequencyCap(per_session=1)
            )
        ],
    )
    async with live(capped) as api:
        for _ in range(3):
            await api.admin.get("/v1/explain?slot=hero&user=u1&session=s1", headers=ADMIN)
        assert (await api.decide("u1", "s1")).json()["decisions"][0]["rule"] == "p"
        explained = (await api.admin.get("/v1/explain?slot=hero&user=u1&session=s1", headers=ADMIN)).json()
        assert explained["slots"][0]["rules"][0]["caps"]["perSession"] == {
            "limit": 1,
            "count": 1,
            "ok": False,
        }


async def test_admin_endpoints_are_disabled_without_a_token(live: Live) -> None:
    async with live(sample.shop(), admin_token=None) as api:
        response = await api.admin.get("/v1/profiles/u1", headers=ADMIN)
        assert response.status_code == 403
        assert "TAILOR_ADMIN_TOKEN" in response.json()["detail"]


async def test_profile_shows_live_features(live: Live) -> None:
    async with live(sample.shop()) as api:
        await api.record_events("u7", page_view("u7", "hats", 2, session="s9"), time.time())
        response = await api.admin.get("/v1/profiles/u7?session=s9", headers=ADMIN)
        assert response.status_code == 200
        body = response.json()
        assert body["counts"]["5m"]["views"] == 2
        assert body["session"]["pageViews"] == 2
        assert response.headers["cache-control"] == "no-store"
