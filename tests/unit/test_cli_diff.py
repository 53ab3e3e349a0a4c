"""`tailor diff`: examples/shop against edited copies lists exactly what changed, and for whom."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from tailor.cli import main

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"


def edited(tmp_path: Path, **replacements: tuple[str, str]) -> Path:
    """A copy of examples/shop with `file=(old, new)` text replacements (each must apply)."""
    copy = tmp_path / "shop"
    shutil.copytree(SHOP, copy)
    for stem, (old, new) in replacements.items():
        path = copy / f"{stem}.yaml"
        text = path.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new, 1))
    return copy


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main.main(["diff", *args])
    return code, capsys.readouterr().out


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code, out = run(capsys, *args, "--format", "json")
    (namespace,) = orjson.loads(out)
    return code, namespace


def changes(document: dict[str, Any]) -> list[tuple[str, str, str, list[tuple[str, str, str]]]]:
    return [
        (c["kind"], c["name"], c["action"], [(f["field"], f["before"], f["after"]) for f in c["fields"]])
        for slot in document["slots"]
        for c in slot["changes"]
    ]


def effects(document: dict[str, Any], slot: str) -> list[str]:
    return next(s["effects"] for s in document["slots"] if s["slot"] == slot)


def test_the_same_manifests_change_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, str(SHOP), "--against", str(SHOP))
    assert code == 0
    assert out.strip() == "namespace default (stack default/shop) against the base manifests: no changes"


def test_a_threshold_edit_lists_exactly_that_rule_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shoe_views = "value: shoes, window: 24h, op: gte, threshold: {}"
    copy = edited(tmp_path, rules=(shoe_views.format(3), shoe_views.format(2)))
    code, document = run_json(capsys, str(copy), "--against", str(SHOP))
    assert code == 2
    assert document["counts"] == {"rules changed": 1}
    assert changes(document) == [
        (
            "PersonalizationRule",
            "returning-shoe-browser",
            "changed",
            [("audience", "views[category=shoes] ≥ 3 in 24h", "views[category=shoes] ≥ 2 in 24h")],
        )
    ]
    (effect,) = effects(document, "home-hero")
    assert effect.startswith(
        "users with views[category=shoes] ≥ 2 but < 3 in 24h now also see one of "
        "`hero-shoes-new-arrivals` 75%, `hero-shoes-sale` 25% (sticky per user)"
    )
    assert "instead of what lower-priority rules gave them (`searcher`: `hero-search-tips`; " in effect
    assert effect.endswith("or the fallback `hero-welcome`")


def test_narrowing_an_audience_says_who_loses_the_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = edited(tmp_path, rules=("threshold: 3}", "threshold: 5}"))
    code, document = run_json(capsys, str(copy), "--against", str(SHOP))
    assert code == 2
    (effect,) = effects(document, "home-hero")
    assert effect.startswith("users with views[category=shoes] ≥ 3 but < 5 in 24h no longer see one of")
    assert effect.endswith(
        "they get the next matching rule (`searcher`, `new-visitor`) or the fallback `hero-welcome`"
    )


def test_other_variants_for_a_rule_say_what_users_now_see_instead(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = edited(tmp_path, rules=("names: [hero-search-tips]", "names: [hero-welcome]"))
    code, document = run_json(capsys, str(copy), "--against", str(SHOP))
    assert code == 2
    assert changes(document) == [
        ("PersonalizationRule", "searcher", "changed", [("variants", "hero-search-tips", "hero-welcome")])
    ]
    assert effects(document, "home-hero") == [
        "users with searches ≥ 2 in 30m and purchases = 0 in 30m now see `hero-welcome` instead of "
        "`hero-search-tips`",
        "`hero-search-tips` is no longer served: no enabled rule or fallback uses it",
    ]


def test_rollout_and_kill_switch_are_described(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = edited(tmp_path, rules=("rollout: {percentage: 50}", "rollout: {percentage: 20}"))
    _, document = run_json(capsys, str(copy), "--against", str(SHOP))
    (effect,) = effects(document, "sidebar-promo")
    assert effect.startswith(
        "rollout of `abandoned-cart` narrows from 50% to 20%: 30% of users with cartAdds ≥ 1 in 24h and "
        "purchases < 1 in 24h (rollout buckets 20 to 50) no longer see one of"
    )
    assert effect.endswith(
        "and get the next matching rule (`engaged-browser`) or the fallback `promo-free-shipping`"
    )

    killed = edited(tmp_path / "k", stack=("  kafka:", "  killSwitch: true\n  kafka:"))
    code, document = run_json(capsys, str(killed), "--against", str(SHOP))
    assert code == 2
    assert [(c["name"], c["fields"]) for c in document["stack"]] == [
        ("default/shop", [{"field": "killSwitch", "before": "off", "after": "on"}])
    ]
    assert document["stackEffects"] == [
        "kill switch ON: every slot serves only its fallback, to everyone, until it is off again"
    ]
    assert effects(document, "sidebar-promo") == [
        "kill switch on: everyone sees the fallback `promo-free-shipping`; no rule of this slot is served "
        "(`abandoned-cart`, `engaged-browser`)"
    ]


def test_added_removed_and_reordered_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new_rule = """---
apiVersion: tailor.dev/v1alpha1
kind: PersonalizationRule
metadata: {name: big-spender}
spec:
  slot: sidebar-promo
  priority: 50
  audience: [{feature: purchases, window: 24h, op: gte, threshold: 2}]
  variants: {names: [promo-bestsellers]}
"""
    copy = edited(tmp_path, rules=("  priority: 50\n", "  priority: 150\n"))
    rules = copy / "rules.yaml"
    text = rules.read_text()
    engaged = text.index(
        "---\napiVersion: tailor.dev/v1alpha1\nkind: PersonalizationRule\nmetadata:\n  name: engaged-browser"
    )
    rules.write_text(text[:engaged] + new_rule)
    code, document = run_json(capsys, str(copy), "--against", str(SHOP))
    assert code == 2
    assert document["counts"] == {"rules added": 1, "rules removed": 1, "rules changed": 1}
    assert [(kind, name, action) for kind, name, action, _ in changes(document)] == [
        ("PersonalizationRule", "searcher", "changed"),
        ("PersonalizationRule", "big-spender", "added"),
        ("PersonalizationRule", "engaged-browser", "removed"),
    ]
    assert effects(document, "home-hero") == [
        "users matching both `searcher` and `returning-shoe-browser` now see `hero-search-tips` from "
        "`searcher` (priority 150) instead of one of `hero-shoes-new-arrivals` 75%, `hero-shoes-sale` 25% "
        "(sticky per user) from `returning-shoe-browser` (priority 100)"
    ]
    assert effects(document, "sidebar-promo") == [
        "users with purchases ≥ 2 in 24h now see `promo-bestsellers` (new rule `big-spender`, priority 50), "
        "instead of what lower-priority rules gave them (`engaged-browser`: `promo-bestsellers`) or the "
        "fallback `promo-free-shipping`; those matched first by `abandoned-cart` are not affected",
        "users with views ≥ 5 in 30m where `session.pageViews >= 3` no longer see `promo-bestsellers` "
        "(rule `engaged-browser` removed); they get the fallback `promo-free-shipping`",
    ]


def test_content_edits_name_who_sees_the_variant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = edited(
        tmp_path,
        variants=("Free shipping on orders over 50 EUR.", "Free shipping on orders over 40 EUR."),
    )
    code, document = run_json(capsys, str(copy), "--against", str(SHOP))
    assert code == 2
    before, after = (
        'text "Free shipping on orders over 50 EUR."',
        'text "Free shipping on orders over 40 EUR."',
    )
    assert changes(document) == [
        ("ContentVariant", "promo-free-shipping", "changed", [("content", before, after)])
    ]
    assert effects(document, "sidebar-promo") == [
        f"users shown `promo-free-shipping` (as the fallback) now see: {after}"
    ]


def test_markdown_is_a_pr_comment_with_escaped_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    when = "when: session.pageViews >= 3"
    copy = edited(tmp_path, rules=(when, f"{when} || recent.query.size() > 0"))
    code, out = run(capsys, str(copy), "--against", str(SHOP), "--format", "markdown")
    assert code == 2
    lines = out.splitlines()
    assert lines[:3] == ["<!-- tailor-diff -->", "## Tailor diff", ""]
    assert "Compared with the base manifests: **1 rule changed**." in lines
    assert (
        "| changed | rule `engaged-browser` | `when` | `session.pageViews >= 3` | "
        "`session.pageViews >= 3 \\|\\| recent.query.size() > 0` |"
    ) in lines


def test_invalid_manifests_exit_1_with_the_lines_of_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = edited(tmp_path, rules=("names: [hero-search-tips]", "names: [hero-nope]"))
    assert main.main(["validate", str(copy)]) == 1
    validate_lines = capsys.readouterr().out
    code, out = run(capsys, str(copy), "--against", str(SHOP))
    assert code == 1
    assert out == validate_lines
    assert "rules.yaml: PersonalizationRule/searcher: variant 'hero-nope' does not exist" in out


def test_without_a_baseline_everything_is_new(capsys: pytest.CaptureFixture[str]) -> None:
    code, document = run_json(capsys, str(SHOP))
    assert code == 2
    assert document["counts"] == {"rules added": 5, "variants added": 9}
    assert [c["action"] for c in document["stack"]] == ["added"]
    assert (
        "users no rule matches now see the fallback `hero-welcome` instead of nothing (a new slot)"
        in effects(document, "home-hero")
    )


def test_rules_without_their_stack_compare_rules_only(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    copy = edited(tmp_path, rules=("threshold: 3}", "threshold: 4}"))
    (copy / "stack.yaml").unlink()
    code, document = run_json(capsys, str(copy), "--against", str(SHOP))
    assert code == 2
    assert document["stack"] == []
    assert [name for _, name, _, _ in changes(document)] == ["returning-shoe-browser"]
