"""A `when`'s cost: estimated at compile time over the profile's size bounds and refused over the limit;
bounded again at run time by the budget every evaluation carries. Real compiled programs throughout."""

from __future__ import annotations

from typing import Any

import pytest
import sample

from tailor.core import cel, constants
from tailor.core.decision import decide, engine
from tailor.core.profile import Profile
from tailor.core.rules import compiler, environment, ruleset, specs

L30 = "[" + ", ".join(str(i) for i in range(30)) + "]"
FIVE_NESTED_MAPS = (
    f"{L30}.map(a, {L30}.map(b, {L30}.map(c, {L30}.map(d, {L30}.map(e, a + b + c + d + e))))).size() > 0"
)
# Three nested comprehensions over `recent`: cheap at a recentLimit of 5, far over the limit at 200.
DEEP = 'recent.category.all(a, recent.query.all(b, recent.productId.all(c, a + b + c != "")))'


def features(recent_limit: int = 20) -> ruleset.FeatureConfig:
    windows = tuple(
        ruleset.Window(name=name, seconds=seconds, bucket_seconds=compiler.bucket_seconds(seconds))
        for name, seconds in (("5m", 300), ("30m", 1800), ("24h", 86400))
    )
    return ruleset.FeatureConfig(
        windows=windows,
        dimensions=("category", "productId", "query"),
        allowed_lateness_seconds=0,
        recent_limit=recent_limit,
    )


def rule_source(when: str) -> specs.Source:
    manifest = {
        "apiVersion": "tailor.dev/v1alpha1",
        "kind": constants.RULE_KIND,
        "metadata": {"name": "costly", "namespace": "shop", "generation": 1},
        "spec": {"slot": "hero", "when": when, "variants": {"names": ["a"]}},
    }
    return specs.Source.from_manifest(manifest, "shop")


def profile(values: int) -> Profile:
    recent = {
        dimension: tuple(f"{dimension}-{i}" for i in range(values))
        for dimension in ("category", "productId", "query")
    }
    return Profile(user="u1", counts={}, recent=recent)


def activation(values: int) -> dict[str, Any]:
    return profile(values).as_cel(
        ["5m", "30m", "24h"], list(constants.FEATURES), ["category", "productId", "query"]
    )


def test_five_nested_maps_over_30_elements_are_refused_with_the_cost_the_limit_and_the_costly_part() -> None:
    compiled = compiler.compile_rule(rule_source(FIVE_NESTED_MAPS), features())
    assert isinstance(compiled, compiler.Problem)
    assert compiled.reason == "CelCostExceeded"
    message = compiled.message
    assert message.startswith("when: estimated cost ")
    assert f"exceeds the limit of {environment.COST_LIMIT:,} by a factor of " in message
    assert "30 x 30 x 30 x 30 x 30 = 24,300,000 times" in message
    assert "(line 1, column 1)" in message
    # The figures: 30^5 innermost steps and the factor they give against the limit.
    program = compiler.compile_when(FIVE_NESTED_MAPS, features())
    assert program.estimate is not None
    assert program.estimate.cost > 24_300_000
    factor = round(program.estimate.cost / environment.COST_LIMIT)
    assert f"by a factor of {factor:,};" in message


def test_an_expression_just_under_the_limit_is_accepted_and_one_more_comprehension_is_not() -> None:
    # One pass over the largest dimension map a profile can hold (60 buckets x 512 counters).
    near = 'views["24h"].category.filter(c, c.endsWith("zz")).size() >= 0'
    estimate = compiler.compile_when(near, features()).estimate
    assert estimate is not None
    assert 0.8 * environment.COST_LIMIT < estimate.cost <= environment.COST_LIMIT
    assert compiler.when_problem(near, features()) is None
    assert not isinstance(compiler.compile_rule(rule_source(near), features()), compiler.Problem)
    twice = f'{near} && views["30m"].category.exists(c, c == "shoes")'
    refused = compiler.when_problem(twice, features())
    assert refused is not None
    assert refused[0] == "CelCostExceeded"
    assert 'views["24h"].category.filter(c, c.endsWith("zz"))' in refused[1]


def test_the_bounds_follow_the_stacks_recent_limit() -> None:
    assert compiler.when_problem(DEEP, features(recent_limit=5)) is None
    refused = compiler.when_problem(DEEP, features(recent_limit=200))
    assert refused is not None
    assert "200 x 200 x 200 = 8,000,000 times" in refused[1]


def test_a_comprehension_over_what_has_no_bound_is_unbounded() -> None:
    program = cel.compile("l.exists(x, x == 1)", ["l"], schemas={})
    assert program.estimate is not None
    over = program.estimate.over(environment.COST_LIMIT)
    assert over is not None
    assert over.startswith("estimated cost is unbounded")
    bounded = cel.compile("l.exists(x, x == 1)", ["l"], schemas={"l": {"type": "array", "maxItems": 10}})
    assert bounded.estimate is not None
    assert bounded.estimate.over(environment.COST_LIMIT) is None


def test_the_budget_stops_an_evaluation_the_estimate_allowed_when_values_outgrow_their_bounds() -> None:
    """A stack lowered recentLimit from 200 to 5: the rule was accepted at 5, but profiles written
    before still hold 200 values per dimension until their users come back."""
    program = compiler.compile_when(DEEP, features(recent_limit=5))
    assert program.estimate is not None
    assert program.estimate.cost <= environment.COST_LIMIT
    assert program.evaluate(activation(5)) is True  # the control: within bounds it runs to the end
    assert program.matches(activation(5)) is True
    with pytest.raises(cel.CostLimitExceeded, match=f"over the budget of {environment.COST_LIMIT:,}"):
        program.evaluate(activation(200))
    assert program.matches(activation(200)) is False


def test_a_single_comprehension_is_stopped_by_its_length_and_a_wrong_range_stays_an_error() -> None:
    """A program's only comprehension checks its range inline, without a running total."""
    program = compiler.compile_when(
        'recent.category.exists(c, c == "none of these")', features(recent_limit=5)
    )
    assert program.evaluate(activation(5)) is False
    with pytest.raises(cel.CostLimitExceeded):
        program.evaluate(activation(100_000))
    assert program.matches(activation(100_000)) is False
    wrong = compiler.compile_when("user.id.exists(c, true)", features())
    with pytest.raises(cel.EvaluationError, match="cannot range over a string") as raised:
        wrong.evaluate(activation(1))
    assert not isinstance(raised.value, cel.CostLimitExceeded)


def test_a_stopped_evaluation_is_not_absorbed_by_or() -> None:
    """CEL's || turns an error on one side into the other side's true; a budget stop is no error."""
    program = compiler.compile_when(f"{DEEP} || true", features(recent_limit=5))
    assert program.evaluate(activation(5)) is True
    with pytest.raises(cel.CostLimitExceeded):
        program.evaluate(activation(200))


def test_within_its_bounds_an_accepted_expression_is_never_stopped() -> None:
    """What the comprehensions charge never exceeds the estimate: at the largest recentLimit that
    still fits, lists that long run every step to the end (no element matches, nothing exits early)."""
    nested = 'recent.category.all(a, !recent.query.exists(b, b == a + "!"))'
    fitting = max(n for n in range(1, 201) if compiler.when_problem(nested, features(recent_limit=n)) is None)
    program = compiler.compile_when(nested, features(recent_limit=fitting))
    assert program.estimate is not None
    assert program.estimate.cost > 0.9 * environment.COST_LIMIT, "the estimate is close to the limit"
    assert program.evaluate(activation(fitting)) is True
    with pytest.raises(cel.CostLimitExceeded):  # the control: a few more values, and it stops
        program.evaluate(activation(fitting + 5))


def test_a_decision_counts_the_stopped_rule_and_serves_as_if_it_did_not_match() -> None:
    config = sample.stack_config()
    published = sample.build(
        [sample.html_variant("a", "hero"), sample.html_variant("b", "hero")],
        [
            ruleset.Rule(name="deep", slot="hero", priority=2, when=DEEP, variants=("a",)),
            ruleset.Rule(name="everyone", slot="hero", priority=1, variants=("b",)),
        ],
        config=config.model_copy(update={"features": features(recent_limit=5)}),
    )
    served = engine.load(published)
    for values, expected, stopped in ((5, "deep", []), (200, "everyone", ["deep"])):
        context = decide.UserContext(profile=profile(values))
        cel_activation = decide.CelActivation(served, context.profile)
        decision = decide.decide_slot(served, served.slots["hero"], context, 0.0, {}, cel_activation)
        assert decision.candidates[0].rule.name == expected
        assert cel_activation.stopped == stopped
