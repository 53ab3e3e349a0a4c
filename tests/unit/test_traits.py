"""Per-user traits (docs/traits.md): validation against the declared traits, reading (TTL, types),
the CRD and compiler checks, and their use in CEL, audience matchers and explain."""

from __future__ import annotations

from typing import Any

import pytest
import sample

from tailor.core.decision import decide, engine
from tailor.core.profile import Profile
from tailor.core.profile import traits as profile_traits
from tailor.core.rules import compiler, crdschema, ruleset, specs

NOW = 1_800_000_000.0
DECLARED = (
    ruleset.Trait(name="churnRisk", type="number", ttl_seconds=3600, minimum=0, maximum=1),
    ruleset.Trait(name="plan", type="string", ttl_seconds=3600, values=("free", "gold")),
    ruleset.Trait(name="vip", type="boolean", ttl_seconds=60),
)
BY_NAME = profile_traits.declared(DECLARED)


def test_valid_values_pass_with_numbers_as_doubles_and_null_unsetting() -> None:
    assert profile_traits.validate(BY_NAME, {"churnRisk": 1, "plan": "gold", "vip": None}) == {
        "churnRisk": 1.0,
        "plan": "gold",
        "vip": None,
    }


@pytest.mark.parametrize(
    ("values", "trait", "error"),
    [
        ({"churnRisk": 1.5}, "churnRisk", "1.5 is above the maximum 1"),
        ({"churnRisk": -0.1}, "churnRisk", "-0.1 is below the minimum 0"),
        ({"churnRisk": "high"}, "churnRisk", 'number trait must be a number, got "high"'),
        ({"churnRisk": True}, "churnRisk", "must be a number, got true"),
        ({"plan": "platinum"}, "plan", "'platinum' is not one of free, gold"),
        ({"vip": "yes"}, "vip", 'boolean trait must be true or false, got "yes"'),
        ({"ltv": 3}, "ltv", "not a declared trait (the stack declares: churnRisk, plan, vip)"),
    ],
)
def test_a_bad_value_is_refused_naming_the_trait_and_what_was_wrong(
    values: dict[str, Any], trait: str, error: str
) -> None:
    with pytest.raises(profile_traits.Problem) as refused:
        profile_traits.validate(BY_NAME, {"plan": "free", **values})
    assert [p["trait"] for p in refused.value.problems] == [trait]
    assert error in refused.value.problems[0]["error"]


def test_reading_drops_expired_undeclared_and_mistyped_values() -> None:
    def doc(value: Any, expires: float) -> bytes:
        return profile_traits.orjson.dumps({"v": value, "e": expires, "t": NOW - 10})

    raw = [
        b"churnRisk", doc(0.8, NOW + 5),
        b"plan", doc("gold", NOW - 1),  # expired a second ago
        b"vip", doc("not a boolean", NOW + 5),  # written under another declaration
        b"gone", doc(1, NOW + 5),  # no longer declared
    ]  # fmt: skip
    assert profile_traits.parse(raw, BY_NAME, NOW) == {"churnRisk": 0.8}
    assert profile_traits.parse(raw, BY_NAME, NOW + 6) == {}
    assert profile_traits.parse([], BY_NAME, NOW) == {}


def test_the_traits_key_is_under_the_users_hash_tag_beside_its_profile() -> None:
    from tailor.core.profile import store

    assert profile_traits.key("shop/main", "u1") == store.user_prefix("shop/main", "u1") + "traits"
    command = profile_traits.write_command("shop/main", "u1", BY_NAME, {"vip": True}, NOW + 99, NOW)
    assert command[:4] == ("EVALSHA", profile_traits.SCRIPT_SHA, 1, "tailor:shop/main:{u1}:traits")
    # A write from the future is taken as written now: its TTL cannot be stretched by a wrong clock.
    assert profile_traits.orjson.loads(command[6]) == {"v": True, "e": NOW + 60, "t": NOW}


def test_the_traits_event_schema_is_the_committed_one() -> None:
    import json
    from pathlib import Path

    committed = Path(__file__).resolve().parents[2] / profile_traits.SCHEMA_PATH
    assert json.loads(committed.read_text()) == profile_traits.json_schema(), (
        "regenerate with: .venv/bin/python -m tailor.core.profile.traits"
    )


# -- the stack's declaration and the compiler ------------------------------------------------------------


def stack_manifest(traits: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "tailor.dev/v1alpha1",
        "kind": "PersonalizationStack",
        "metadata": {"name": "main", "namespace": "shop"},
        "spec": {"kafka": {"bootstrapServers": "k:9092"}, "redis": {"managed": True}, "traits": traits},
    }


def test_the_crd_defaults_a_trait_and_refuses_bad_declarations_offline() -> None:
    defaulted, errors = crdschema.check(stack_manifest([{"name": "churnRisk", "type": "number"}]))
    assert not errors, errors
    assert defaulted["spec"]["traits"] == [
        {"name": "churnRisk", "type": "number", "ttl": "720h", "maxLength": 256}
    ]
    for bad, message in (
        ({"name": "churn-risk", "type": "number"}, "spec.traits[0].name"),
        ({"name": "x", "type": "date"}, "spec.traits[0].type"),
        ({"name": "x", "type": "number", "ttl": "30d"}, "ttl must be a duration"),
        ({"name": "x", "type": "string", "minimum": 1}, "minimum and maximum apply to number traits only"),
        (
            {"name": "x", "type": "number", "minimum": 2, "maximum": 1},
            "minimum must not be above its maximum",
        ),
    ):
        _, errors = crdschema.check(stack_manifest([bad]))
        assert any(message in str(e) for e in errors), (bad, errors)


def test_the_compiler_publishes_traits_and_their_topic() -> None:
    spec = specs.StackSpec.model_validate(
        stack_manifest([{"name": "churnRisk", "type": "number", "ttl": "24h", "maximum": 1}])["spec"]
    )
    config = compiler.stack_config("shop", "main", spec)
    assert config.features.traits == (
        ruleset.Trait(name="churnRisk", type="number", ttl_seconds=86400, maximum=1),
    )
    assert config.kafka.traits_topic == "tailor.shop.main.traits"
    bare = specs.StackSpec.model_validate(stack_manifest([])["spec"])
    assert compiler.stack_config("shop", "main", bare).kafka.traits_topic == ""


FEATURES = sample.stack_config().features.model_copy(update={"traits": DECLARED})


@pytest.mark.parametrize(
    ("spec", "reason", "message"),
    [
        ({"when": "traits.ltv > 3"}, "TraitNotDeclared", "trait ltv is not one of the stack's spec.traits"),
        ({"audience": [{"trait": "ltv", "op": "gt", "threshold": 1}]}, "TraitNotDeclared", "'ltv'"),
        (
            {"audience": [{"trait": "plan", "op": "gte", "threshold": 1}]},
            "InvalidSpec",
            "op eq or ne and a value",
        ),
        ({"audience": [{"trait": "vip", "op": "eq", "value": "yes"}]}, "InvalidSpec", '"true" or "false"'),
        ({"audience": [{"trait": "churnRisk", "window": "30m"}]}, "InvalidSpec", "no window or dimension"),
    ],
)
def test_rules_on_undeclared_or_miscompared_traits_are_refused(
    spec: dict[str, Any], reason: str, message: str
) -> None:
    source = specs.Source(
        kind="PersonalizationRule", name="r", namespace="shop", generation=1, created="",
        spec={"slot": "hero", "variants": {"names": ["a"]}, **spec},
    )  # fmt: skip
    refused = compiler.compile_rule(source, FEATURES)
    assert isinstance(refused, compiler.Problem), refused
    assert refused.reason == reason, refused
    assert message in refused.message, refused


# -- deciding ------------------------------------------------------------------------------------------


def traits_engine() -> engine.Engine:
    config = sample.stack_config().model_copy(update={"features": FEATURES})
    rules = [
        ruleset.Rule(
            name="at-risk", slot="hero", priority=30, when="traits.churnRisk > 0.7", variants=("save",)
        ),
        ruleset.Rule(
            name="gold", slot="hero", priority=20,
            audience=(ruleset.Matcher(trait="plan", op="eq", value="gold"),), variants=("gold",),
        ),
        ruleset.Rule(
            name="vip", slot="hero", priority=10,
            audience=(ruleset.Matcher(trait="vip", op="eq", value="true"),), variants=("vip",),
        ),
    ]  # fmt: skip
    variants = [
        sample.html_variant(n, "hero", fallback=n == "default") for n in ("default", "save", "gold", "vip")
    ]
    return engine.load(sample.build(variants, rules, config=config))


def served(built: engine.Engine, traits: dict[str, Any], trace: decide.Trace | None = None) -> str | None:
    context = decide.UserContext(Profile(user="u1", traits=traits))
    decision = decide.decide_slot(
        built, built.slots["hero"], context, NOW, {}, decide.CelActivation(built, context.profile), trace
    )
    return decision.candidates[0].rule.name if decision.candidates else None


def test_cel_and_audience_matchers_decide_on_traits_and_unset_ones_never_match() -> None:
    built = traits_engine()
    assert served(built, {"churnRisk": 0.9, "plan": "gold"}) == "at-risk"
    assert served(built, {"churnRisk": 0.5, "plan": "gold"}) == "gold"
    assert served(built, {"plan": "free", "vip": True}) == "vip"
    assert served(built, {"vip": False}) is None
    assert served(built, {}) is None  # traits.churnRisk unset: the `when` errors, and does not match


def test_explain_shows_the_traits_a_rule_used() -> None:
    trace: decide.Trace = []
    assert served(traits_engine(), {"churnRisk": 0.5, "plan": "gold"}, trace) == "gold"
    by_rule = {entry["rule"]: entry for entry in trace}
    assert by_rule["at-risk"]["when"] == {
        "expression": "traits.churnRisk > 0.7", "result": False, "traits": {"churnRisk": 0.5},
    }  # fmt: skip
    assert by_rule["gold"]["audience"] == [
        {
            "op": "eq",
            "threshold": 1.0,
            "trait": "plan",
            "value": "gold",
            "window": "",
            "actual": "gold",
            "matched": True,
        }
    ]


def test_the_reader_adds_the_traits_read_only_when_the_stack_declares_traits() -> None:
    from tailor.core.profile import store

    class Collect:
        def __init__(self) -> None:
            self.commands: list[tuple[Any, ...]] = []

        def execute_command(self, *args: Any) -> None:
            self.commands.append(args)

    plain, with_traits = Collect(), Collect()
    store.ProfileReader(sample.stack_config()).queue_read(plain, "u1", None, NOW)
    config = sample.stack_config().model_copy(update={"features": FEATURES})
    reader = store.ProfileReader(config)
    reader.queue_read(with_traits, "u1", None, NOW)
    assert [c[0] for c in plain.commands] == ["HMGET"]
    assert [c[0] for c in with_traits.commands] == ["HMGET", "HGETALL"]
    assert reader.commands == 2
    raw = [b"churnRisk", profile_traits.orjson.dumps({"v": 0.9, "e": NOW + 9, "t": NOW})]
    assert reader.parse_reads([[None, None, None], raw], "u1", None, NOW).traits == {"churnRisk": 0.9}


def test_has_guards_an_unset_trait_in_cel() -> None:
    program = compiler.compile_when("has(traits.churnRisk) && traits.churnRisk > 0.7", FEATURES)
    assert program.evaluate({"traits": {}}) is False
    assert program.evaluate({"traits": {"churnRisk": 0.8}}) is True
    assert compiler.traits_named('traits["plan"] == "gold" || traits.vip') == ("plan", "vip")
