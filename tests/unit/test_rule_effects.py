"""Who a ruleset change affects, in words: threshold bands per operator, caps, moves and seeds."""

from __future__ import annotations

import pytest
import sample

from tailor.core.rules import rulediff, ruleeffects, ruleset


def shoes(op: ruleset.Operator, threshold: float, **rule: object) -> ruleset.Rule:
    matcher = ruleset.Matcher(feature="views", dimension="category", value="shoes", window="30m", op=op,
                              threshold=threshold)  # fmt: skip
    fields: dict[str, object] = {
        "name": "shoe-fans",
        "slot": "hero",
        "variants": ("a",),
        "audience": (matcher,),
    }
    return ruleset.Rule.model_validate({**fields, **rule})


@pytest.mark.parametrize(
    ("op", "before", "after", "widened", "narrowed"),
    [
        ("gte", 3, 2, "views[category=shoes] ≥ 2 but < 3 in 30m", None),
        ("gte", 2, 3, None, "views[category=shoes] ≥ 2 but < 3 in 30m"),
        ("gt", 3, 1, "views[category=shoes] > 1 but ≤ 3 in 30m", None),
        ("lte", 3, 5, "views[category=shoes] ≤ 5 but > 3 in 30m", None),
        ("lt", 5, 3, None, "views[category=shoes] < 5 but ≥ 3 in 30m"),
    ],
)
def test_a_threshold_change_names_the_band_of_users_it_moves(
    op: ruleset.Operator, before: float, after: float, widened: str | None, narrowed: str | None
) -> None:
    assert ruleeffects.audience_delta(shoes(op, before), shoes(op, after)) == (widened, narrowed)


def test_other_audience_changes_have_no_band() -> None:
    assert ruleeffects.audience_delta(shoes("eq", 3), shoes("eq", 4)) == (None, None)
    assert ruleeffects.audience_delta(shoes("gte", 3), shoes("gt", 2)) == (None, None)
    assert ruleeffects.audience_delta(shoes("gte", 3), shoes("gte", 2, when="user.id != ''")) == (None, None)


def hero(*rules: ruleset.Rule) -> ruleset.Ruleset:
    variants = [sample.html_variant("a", "hero"), sample.html_variant("b", "hero"),
                sample.html_variant("home", "hero", fallback=True), sample.html_variant("c", "side"),
                sample.html_variant("side-home", "side", fallback=True)]  # fmt: skip
    return sample.build(variants, rules)


def test_caps_moves_and_seeds() -> None:
    before = hero(
        shoes("gte", 3, variants=("a", "b")), ruleset.Rule(name="all", slot="side", variants=("c",))
    )
    capped = ruleset.FrequencyCap(per_session=2)
    after = hero(
        shoes("gte", 3, variants=("a", "b"), frequency_cap=capped, seed="spring"),
        ruleset.Rule(name="all", slot="hero", priority=-1, variants=("a",)),
    )
    diff = rulediff.diff(before, after)
    effects = {slot.slot: list(slot.effects) for slot in diff.slots}
    assert effects["hero"] == [
        "users with views[category=shoes] ≥ 3 in 30m are drawn again among `a`, `b` (rotation seed changed)",
        "rule `shoe-fans` is now shown at most 2 per session (was none); past the cap its users get the "
        "next matching rule (`all`) or the fallback `home`",
        "all users now see `a` (rule `all`, moved here from slot `side`, priority -1), instead of the "
        "fallback `home`; those matched first by `shoe-fans` are not affected",
    ]
    assert effects["side"] == [
        "all users no longer see `c` (rule `all` moved to slot `hero`); they get the fallback `side-home`",
        "`c` is no longer served: no enabled rule or fallback uses it",
    ]
    assert diff.headline() == "2 rules changed"
