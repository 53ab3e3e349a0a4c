"""tailor.core.cel for CRD validation rules: every rule in crds/ compiles, the examples pass them all,
and broken manifests fail the rule that guards them, as the API server would decide."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tailor.core import cel

ROOT = Path(__file__).resolve().parents[2]


def crd_schemas() -> dict[str, Mapping[str, Any]]:
    """kind -> openAPIV3Schema of the served version, for Tailor's own CRDs in crds/."""
    schemas = {}
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if (
                document
                and document["kind"] == "CustomResourceDefinition"
                and document["spec"]["group"] == "tailor.dev"
            ):
                version = next(v for v in document["spec"]["versions"] if v.get("served", True))
                schemas[document["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return schemas


def rules(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, str]]:
    for rule in schema.get("x-kubernetes-validations", ()):
        yield path or "<root>", rule["rule"]
    for name, child in (schema.get("properties") or {}).items():
        yield from rules(child, f"{path}.{name}")
    if isinstance(schema.get("items"), Mapping):
        yield from rules(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), Mapping):
        yield from rules(schema["additionalProperties"], f"{path}{{}}")


def failures(value: Any, schema: Mapping[str, Any], path: str = "") -> list[str]:
    """The rules that do not hold, each evaluated where it is declared with `self` bound to the value
    there (as the API server does on create, so without oldSelf)."""
    failed = []
    for rule in schema.get("x-kubernetes-validations", ()):
        program = cel.validation_rule(rule["rule"])
        if not program.matches({"self": cel.kubernetes_value(value, schema)}):
            failed.append(f"{path or '<root>'}: {rule['rule']}")
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            child = properties.get(key, additional if isinstance(additional, Mapping) else None)
            if child is not None:
                failed += failures(item, child, f"{path}.{key}")
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            failed += failures(item, schema["items"], f"{path}[{index}]")
    return failed


SCHEMAS = crd_schemas()
ALL_RULES = [(kind, path, rule) for kind, schema in SCHEMAS.items() for path, rule in rules(schema)]
EXAMPLES = [
    document
    for path in sorted((ROOT / "examples").glob("*/*.yaml"))
    for document in yaml.safe_load_all(path.read_text())
    if document and document.get("kind") in SCHEMAS
]


def test_the_crds_have_rules_and_the_examples_use_every_kind() -> None:
    assert len(ALL_RULES) >= 10
    assert {example["kind"] for example in EXAMPLES} == set(SCHEMAS)


@pytest.mark.parametrize(("kind", "path", "rule"), ALL_RULES, ids=[f"{k}{p}" for k, p, _ in ALL_RULES])
def test_every_crd_rule_compiles(kind: str, path: str, rule: str) -> None:
    program = cel.validation_rule(rule)
    assert program.variables == {"self", "oldSelf"}


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"{e['kind']}/{e['metadata']['name']}" for e in EXAMPLES])
def test_the_examples_pass_every_rule(example: dict[str, Any]) -> None:
    assert failures(example, SCHEMAS[example["kind"]]) == []


def example(kind: str) -> dict[str, Any]:
    return copy.deepcopy(next(e for e in EXAMPLES if e["kind"] == kind))


def test_a_window_longer_than_a_week_fails_its_rule() -> None:
    stack = example("PersonalizationStack")
    stack["spec"]["features"]["windows"] = ["5m", "200h"]
    failed = failures(stack, SCHEMAS["PersonalizationStack"])
    assert failed == [
        ".spec.features.windows[1]: !self.matches('^([0-9]+[hms])+$') || duration(self) <= duration('168h')"
    ]


def test_managed_redis_with_a_url_fails_its_rule() -> None:
    stack = example("PersonalizationStack")
    stack["spec"]["redis"] = {"managed": True, "url": "redis://elsewhere:6379"}
    assert failures(stack, SCHEMAS["PersonalizationStack"]) == [".spec.redis: self.managed != has(self.url)"]


def test_a_rollout_percentage_is_a_double_even_when_written_as_an_integer() -> None:
    rule = example("PersonalizationRule")
    schema = SCHEMAS["PersonalizationRule"]
    rule["spec"]["rollout"] = {"percentage": 100}
    assert failures(rule, schema) == []
    rule["spec"]["rollout"] = {"percentage": 150}
    assert [failure.split(":")[0] for failure in failures(rule, schema)] == [".spec.rollout"]
    # Without the schema's conversion, int 100 against 0.0 is a type error in strict CEL.
    program = cel.validation_rule("self.percentage >= 0.0 && self.percentage <= 100.0")
    assert program.matches({"self": {"percentage": 100}}) is False
    assert program.matches(
        {
            "self": cel.kubernetes_value(
                {"percentage": 100}, {"properties": {"percentage": {"type": "number"}}}
            )
        }
    )


def test_kubernetes_value_follows_the_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "weight": {"type": "number"},
            "count": {"type": "integer"},
            "timeout": {"type": "string", "format": "duration"},
            "ratios": {"type": "array", "items": {"type": "number"}},
            "limits": {"type": "object", "additionalProperties": {"type": "number"}},
        },
    }
    value = {"weight": 1, "count": 2, "timeout": "1m30s", "ratios": [1, 0.5], "limits": {"a": 3}, "other": 4}
    converted = cel.kubernetes_value(value, schema)
    assert converted["weight"] == 1.0
    assert type(converted["weight"]) is float
    assert type(converted["count"]) is int
    assert type(converted["other"]) is int
    assert converted["timeout"] == cel.Duration(90 * 10**9)
    assert [type(r) for r in converted["ratios"]] == [float, float]
    assert type(converted["limits"]["a"]) is float
    assert cel.validation_rule("self.timeout > duration('1m')").matches({"self": converted})


def test_transition_rules_see_old_self() -> None:
    rule = cel.validation_rule("self.slot == oldSelf.slot")
    assert rule.matches({"self": {"slot": "hero"}, "oldSelf": {"slot": "hero"}})
    assert not rule.matches({"self": {"slot": "hero"}, "oldSelf": {"slot": "banner"}})
