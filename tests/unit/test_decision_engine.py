"""Loading a published ruleset into the engine: slots resolved, rules in the published order, content
serialized once, each `when` compiled once per process."""

from __future__ import annotations

import orjson
import pytest
import sample

from tailor.core.decision import engine
from tailor.core.rules import compiler, ruleset


def test_rules_are_ordered_by_priority_and_disabled_ones_set_aside() -> None:
    published = sample.build(
        [sample.html_variant("a", "hero"), sample.html_variant("b", "hero", fallback=True)],
        [
            ruleset.Rule(name="low", slot="hero", priority=1, variants=("a",)),
            ruleset.Rule(name="high", slot="hero", priority=9, variants=("a",)),
            ruleset.Rule(name="off", slot="hero", priority=99, enabled=False, variants=("a",)),
        ],
    )
    built = engine.load(published)
    plan = built.slots["hero"]
    assert [r.name for r in plan.rules] == ["high", "low"]
    assert [r.name for r in plan.disabled] == ["off"]
    assert [v.name for v in plan.fallbacks] == ["b"]


def test_content_is_serialized_once_per_version() -> None:
    published = sample.build(
        [
            sample.html_variant("h", "hero", fallback=True),
            ruleset.Variant(name="j", slot="hero", content_type="json", data={"sku": 7}, fallback=True),
        ],
        [],
    )
    fallbacks = {v.name: v for v in engine.load(published).slots["hero"].fallbacks}
    assert orjson.loads(orjson.dumps(fallbacks["h"].content)) == {"type": "html", "body": "<p>h</p>"}
    assert orjson.loads(orjson.dumps(fallbacks["j"].content)) == {"type": "json", "data": {"sku": 7}}
    assert fallbacks["h"].suppression_marks == ("v:h",)


def test_caps_and_cel_are_compiled_with_the_rule() -> None:
    published = sample.build(
        [sample.html_variant("a", "hero")],
        [
            ruleset.Rule(
                name="capped",
                slot="hero",
                variants=("a",),
                when='views["30m"].total > 2',
                frequency_cap=ruleset.FrequencyCap(
                    per_session=2, per_user_count=5, per_user_window_seconds=3600
                ),
            )
        ],
    )
    rule = engine.load(published).slots["hero"].rules[0]
    assert (rule.per_session, rule.per_user, rule.per_user_window_seconds) == (2, 5, 3600)
    assert rule.capped
    assert rule.when is not None
    assert rule.when({"views": {"30m": {"total": 3}}}) is True


def test_a_ruleset_naming_a_variant_it_does_not_hold_is_not_loaded() -> None:
    published = sample.build([sample.html_variant("a", "hero")], [])
    broken = published.model_copy(
        update={"rules": (ruleset.Rule(name="r", slot="hero", variants=("a", "ghost")),)}
    )
    with pytest.raises(KeyError, match="ghost"):
        engine.load(broken)


def test_a_when_is_compiled_once_for_the_compilers_check_and_the_engine() -> None:
    source = 'views["5m"].total > 41 && session.pageViews > 0'
    published = sample.build(
        [sample.html_variant("a", "hero")],
        [ruleset.Rule(name="r", slot="hero", when=source, variants=("a",))],
    )
    features = published.config.features
    assert compiler.when_problem(source, features) is None
    rule = engine.load(published).slots["hero"].rules[0]
    assert rule.when is not None
    assert rule.when.__self__ is compiler.compile_when(source, features)  # type: ignore[attr-defined]
    error = compiler.when_problem("views[", features)
    assert error is not None
    assert compiler.when_problem("views[", features) == error, (
        "a bad `when` is refused alike when checked again"
    )
