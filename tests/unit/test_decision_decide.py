"""Decisions for one slot: matchers, CEL, rollout, caps, suppression, schedules, memory, kill switch."""

from __future__ import annotations

import time
from typing import Any

import sample

from tailor.core.decision import decide, engine
from tailor.core.profile import Profile, Session
from tailor.core.rules import ruleset

NOW = 1_800_000_000.0


def shoe_profile(user: str = "u1", shoe_views: int = 3) -> Profile:
    return Profile(
        user=user,
        counts={
            "30m": {"views": shoe_views + 1, "views|category|shoes": shoe_views, "views|category|hats": 1}
        },
        session=Session(id="s1", page_views=4, started_at=NOW - 120, last_seen_at=NOW),
    )


def decide_one(
    built: engine.Engine, state: decide.UserContext, slot: str = "hero", trace: decide.Trace | None = None
) -> decide.SlotDecision:
    cel = decide.CelActivation(built, state.profile)
    return decide.decide_slot(built, built.slots[slot], state, NOW, {}, cel, trace)


def served(decision: decide.SlotDecision) -> tuple[str | None, str | None]:
    """(rule, variant) as the API would serve it when no cap interferes."""
    if decision.candidates:
        first = decision.candidates[0]
        return first.rule.name, first.variant.name
    return None, decision.fallback.name if decision.fallback else None


def two_rules(**high: Any) -> engine.Engine:
    published = sample.build(
        [
            sample.html_variant("default", "hero", fallback=True),
            sample.html_variant("shoes", "hero", tags=("footwear",)),
            sample.html_variant("shoes-2", "hero", tags=("footwear",)),
            sample.html_variant("vip", "hero"),
        ],
        [
            ruleset.Rule(
                name="shoe-lovers",
                slot="hero",
                priority=10,
                audience=(
                    ruleset.Matcher(
                        feature="views", dimension="category", value="shoes", window="30m", threshold=2
                    ),
                ),
                variants=("shoes", "shoes-2"),
            ),
            ruleset.Rule(
                name="vip",
                slot="hero",
                priority=20,
                when='purchases["24h"].total >= 1',
                variants=("vip",),
                **high,
            ),
        ],
    )
    return engine.load(published)


def test_audience_matcher_selects_the_rule_and_others_get_the_fallback() -> None:
    built = two_rules()
    assert served(decide_one(built, decide.UserContext(shoe_profile(shoe_views=3))))[0] == "shoe-lovers"
    assert served(decide_one(built, decide.UserContext(shoe_profile(shoe_views=1)))) == (None, "default")
    assert served(decide_one(built, decide.UserContext(Profile(user="new")))) == (None, "default")


def test_top_value_matcher_without_value_uses_the_most_viewed_category() -> None:
    published = sample.build(
        [sample.html_variant("a", "hero"), sample.html_variant("d", "hero", fallback=True)],
        [
            ruleset.Rule(
                name="browsers",
                slot="hero",
                audience=(
                    ruleset.Matcher(
                        feature="views", dimension="category", window="30m", op="gte", threshold=3
                    ),
                ),
                variants=("a",),
            )
        ],
    )
    built = engine.load(published)
    assert served(decide_one(built, decide.UserContext(shoe_profile(shoe_views=3))))[0] == "browsers"
    assert served(decide_one(built, decide.UserContext(shoe_profile(shoe_views=2))))[0] is None


def test_cel_when_is_evaluated_against_the_profile_and_higher_priority_wins() -> None:
    built = two_rules()
    buyer = Profile(user="u1", counts={"24h": {"purchases": 1}, "30m": {"views|category|shoes": 5}})
    assert served(decide_one(built, decide.UserContext(buyer))) == ("vip", "vip")


def test_a_newly_matching_higher_priority_rule_switches_even_a_remembered_slot() -> None:
    built = two_rules()
    buyer = Profile(user="u1", counts={"24h": {"purchases": 1}, "30m": {"views|category|shoes": 5}})
    state = decide.UserContext(buyer, memory={"hero": ("shoe-lovers", "shoes-2")})
    assert served(decide_one(built, state)) == ("vip", "vip")


def test_the_remembered_variant_stays_while_its_rule_still_matches() -> None:
    built = two_rules()
    for remembered in ("shoes", "shoes-2"):
        state = decide.UserContext(shoe_profile(), session="s1", memory={"hero": ("shoe-lovers", remembered)})
        decision = decide_one(built, state)
        assert served(decision) == ("shoe-lovers", remembered)
        assert decision.candidates[0].remembered


def test_rollout_of_30_percent_lands_within_2_points_and_is_sticky() -> None:
    published = sample.build(
        [sample.html_variant("a", "hero"), sample.html_variant("d", "hero", fallback=True)],
        [ruleset.Rule(name="trial", slot="hero", variants=("a",), rollout_percentage=30)],
    )
    built = engine.load(published)
    included = {
        user
        for user in (f"user-{i}" for i in range(10_000))
        if served(decide_one(built, decide.UserContext(Profile(user=user))))[0] == "trial"
    }
    assert abs(len(included) / 10_000 - 0.30) <= 0.02
    for user in list(included)[:200]:
        elsewhere = decide.UserContext(Profile(user=user), session="other")
        assert served(decide_one(built, elsewhere))[0] == "trial"


def test_a_cap_already_reached_skips_the_rule_and_capped_rules_queue_for_the_atomic_check() -> None:
    cap = ruleset.FrequencyCap(per_session=2)
    built = two_rules(frequency_cap=cap)
    buyer = Profile(user="u1", counts={"24h": {"purchases": 1}, "30m": {"views|category|shoes": 5}})
    decision = decide_one(built, decide.UserContext(buyer, session_caps={"vip": 1}))
    assert [c.rule.name for c in decision.candidates] == ["vip", "shoe-lovers"]
    assert decision.needs_cap_check
    decision = decide_one(built, decide.UserContext(buyer, session_caps={"vip": 2}))
    assert [c.rule.name for c in decision.candidates] == ["shoe-lovers"]


def test_not_interested_suppresses_the_variant_and_its_tags() -> None:
    built = two_rules()
    only_shoes_2_hidden = decide.UserContext(shoe_profile(), suppressed=frozenset({"v:shoes-2"}))
    assert served(decide_one(built, only_shoes_2_hidden)) == ("shoe-lovers", "shoes")
    tag_hidden = decide.UserContext(shoe_profile(), suppressed=frozenset({"t:footwear"}))
    assert served(decide_one(built, tag_hidden)) == (None, "default")


def test_variants_outside_their_schedule_are_not_served() -> None:
    published = sample.build(
        [
            sample.html_variant("later", "hero", start=NOW + 60),
            sample.html_variant("over", "hero", end=NOW - 60),
            sample.html_variant("now", "hero", start=NOW - 60, end=NOW + 60),
        ],
        [ruleset.Rule(name="r", slot="hero", variants=("later", "over", "now"))],
    )
    built = engine.load(published)
    assert {served(decide_one(built, decide.UserContext(Profile(user=f"u{i}"))))[1] for i in range(50)} == {
        "now"
    }


def test_kill_switch_serves_fallbacks_only() -> None:
    published = sample.shop()
    killed = published.model_copy(
        update={"config": published.config.model_copy(update={"kill_switch": True})}
    )
    built = engine.load(killed)
    assert served(decide_one(built, decide.UserContext(shoe_profile()))) == (None, "hero-default")


def test_trace_explains_every_rule_with_values_and_outcomes() -> None:
    built = two_rules(rollout_percentage=50)
    trace: decide.Trace = []
    decide_one(built, decide.UserContext(shoe_profile()), trace=trace)
    by_rule = {entry["rule"]: entry for entry in trace}
    assert by_rule["vip"]["outcome"] in ("when",)
    assert by_rule["vip"]["when"]["result"] is False
    assert 0 <= by_rule["vip"]["rollout"]["bucket"] < 100
    matcher = by_rule["shoe-lovers"]["audience"][0]
    assert (matcher["actual"], matcher["matched"], matcher["threshold"]) == (3, True, 2)
    assert by_rule["shoe-lovers"]["outcome"] == "chosen"
    assert by_rule["shoe-lovers"]["caps"]["perSession"]["ok"] is True


def test_a_cel_runtime_error_means_no_match_and_is_explained() -> None:
    published = sample.build(
        [sample.html_variant("a", "hero"), sample.html_variant("d", "hero", fallback=True)],
        [ruleset.Rule(name="r", slot="hero", variants=("a",), when='views["30m"].category["shoes"] > 1')],
    )
    built = engine.load(published)
    trace: decide.Trace = []
    decision = decide_one(built, decide.UserContext(Profile(user="u")), trace=trace)
    assert served(decision) == (None, "d")
    assert trace[0]["when"]["error"]


def test_the_cel_activation_is_not_built_when_no_rule_needs_it() -> None:
    built = engine.load(sample.shop())
    state = decide.UserContext(shoe_profile())
    cel = decide.CelActivation(built, state.profile)
    decide.decide_slot(built, built.slots["hero"], state, time.time(), {}, cel)
    assert cel._value is None
