"""`tailor validate`: the shop example is clean; schema, CEL and semantic problems become file lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailor.cli import main
from tailor.core.rules import crdschema

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"

BAD = """\
apiVersion: tailor.dev/v1alpha1
kind: PersonalizationRule
metadata: {name: bad-schema}
spec:
  slot: home-hero
  audience: [{feature: views, window: 5mins, op: ">="}]
  variants: {names: [hero-welcome], selector: {matchLabels: {a: b}}}
  rollout: {percentage: 150}
  colour: red
---
apiVersion: tailor.dev/v1alpha1
kind: PersonalizationRule
metadata: {name: bad-meaning}
spec:
  slot: home-hero
  priority: 7
  audience: [{feature: views, window: 1h}]
  variants: {names: [hero-welcome]}
"""


def test_the_shop_example_is_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["validate", str(SHOP)]) == 0
    assert capsys.readouterr().out == ""


def test_problems_are_file_kind_name_message_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    assert main.main(["validate", str(SHOP), str(bad)]) == 1
    lines = capsys.readouterr().out.splitlines()
    prefix = f"{bad}: PersonalizationRule/bad-schema: "
    assert f"{prefix}spec.audience[0].window: window must be a duration like 5m, 24h or 1h30m" in lines
    assert (
        f"{prefix}spec.audience[0].op: unsupported value '>=': must be one of gte, gt, lte, lt, eq, ne"
        in lines
    )
    assert f"{prefix}spec.rollout: rollout.percentage must be between 0 and 100" in lines
    assert any(line.startswith(f"{prefix}spec.variants: variants must be named") for line in lines)
    assert f"{prefix}spec.colour: unknown field (not in the CRD's schema)" in lines
    meaning = [line for line in lines if "bad-meaning" in line]
    assert len(meaning) == 1
    assert meaning[0].startswith(
        f"{bad}: PersonalizationRule/bad-meaning: audience[0].window '1h' is not one of"
    )


def test_rules_without_their_stack_are_checked_against_default_features(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    only_rules = tmp_path / "rules.yaml"
    only_rules.write_text((SHOP / "rules.yaml").read_text() + "---\n" + (SHOP / "variants.yaml").read_text())
    assert main.main(["validate", str(only_rules)]) == 0
    assert "has no PersonalizationStack" in capsys.readouterr().err


def test_defaults_are_the_crds_and_numbers_are_doubles() -> None:
    manifest = {
        "apiVersion": "tailor.dev/v1alpha1",
        "kind": "PersonalizationRule",
        "metadata": {"name": "r"},
        "spec": {
            "slot": "s",
            "variants": {"names": ["v"]},
            "audience": [{"feature": "views", "window": "5m"}],
        },
    }
    defaulted, errors = crdschema.check(manifest)
    assert errors == []
    spec = defaulted["spec"]
    assert spec["rollout"] == {"percentage": 100.0}
    assert spec["rotation"] == {"strategy": "weighted"}
    assert spec["audience"][0] == {"feature": "views", "window": "5m", "op": "gte", "threshold": 1}
    assert spec["priority"] == 0
    assert spec["enabled"] is True


def test_stack_redis_needs_exactly_one_of_managed_or_url() -> None:
    stack = {
        "apiVersion": "tailor.dev/v1alpha1",
        "kind": "PersonalizationStack",
        "metadata": {"name": "s"},
        "spec": {"kafka": {"bootstrapServers": "k:9092"}, "redis": {}},
    }
    _, errors = crdschema.check(stack)
    assert [str(e) for e in errors] == ["spec.redis: set exactly one of redis.managed: true or redis.url"]
    stack["metadata"]["name"] = "Not_A_Label"
    stack["spec"]["redis"] = {"url": "redis://r:6379/0"}
    _, errors = crdschema.check(stack)
    assert len(errors) == 1
    assert "DNS label" in errors[0].message
