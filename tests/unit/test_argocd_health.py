"""The Argo CD health checks (docs/argocd/*.lua) on Lua 5.1, Argo CD's language, against statuses
the operator wrote on the real node (tests/unit/argocd_statuses/, saved by tests/integration/
test_helm_e2e.py with TAILOR_E2E_SAVE_STATUSES), and the argocd-cm snippet that ships them."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import argocd_health
import pytest
import yaml

EXAMPLES = sorted((Path(__file__).parent / "argocd_statuses").glob("*.json"))


def example_id(path: Path) -> str:
    return path.stem


@pytest.mark.parametrize("path", EXAMPLES, ids=example_id)
def test_each_saved_status_gets_the_health_it_had_on_the_real_node(path: Path) -> None:
    saved = json.loads(path.read_text())
    status, message = argocd_health.health(saved["object"])
    assert status == saved["health"]
    if status != "Progressing" or saved["object"].get("status"):
        assert message, "Argo CD shows the reason beside the status"


def test_the_saved_statuses_cover_every_health_of_every_kind() -> None:
    seen = {tuple(path.stem.split("-")[:2]) for path in EXAMPLES}
    assert seen >= {
        ("personalizationstack", "progressing"), ("personalizationstack", "healthy"),
        ("personalizationstack", "degraded"), ("personalizationstack", "suspended"),
        ("personalizationrule", "progressing"), ("personalizationrule", "healthy"),
        ("personalizationrule", "degraded"),
        ("contentvariant", "progressing"), ("contentvariant", "healthy"), ("contentvariant", "degraded"),
    }  # fmt: skip


def saved(kind: str, health: str) -> dict[str, Any]:
    path = next(p for p in EXAMPLES if p.stem.startswith(f"{kind}-{health}-"))
    obj: dict[str, Any] = json.loads(path.read_text())["object"]
    return obj


def test_a_healthy_stack_edited_since_is_progressing_until_the_operator_catches_up() -> None:
    stack = copy.deepcopy(saved("personalizationstack", "healthy"))
    stack["metadata"]["generation"] = stack["status"]["observedGeneration"] + 1
    status, message = argocd_health.health(stack)
    assert status == "Progressing"
    assert str(stack["metadata"]["generation"]) in str(message)


def test_a_managed_redis_still_starting_is_progressing_and_an_unreachable_own_redis_is_degraded() -> None:
    stack = copy.deepcopy(saved("personalizationstack", "healthy"))
    conditions = stack["status"]["conditions"]
    for condition in conditions:
        if condition["type"] == "Ready":
            condition.update(status="False", reason="RedisUnavailable", message="RulesetPublished: no Redis")
        if condition["type"] == "RedisReady":
            condition.update(status="False", reason="Progressing")
    assert argocd_health.health(stack)[0] == "Progressing"
    stack["spec"]["redis"] = {"managed": False, "url": "redis://redis:6379/0"}
    stack["status"]["conditions"] = [c for c in conditions if c["type"] != "RedisReady"]
    assert argocd_health.health(stack)[0] == "Degraded"


def test_a_rule_changed_since_it_was_compiled_is_progressing() -> None:
    rule = copy.deepcopy(saved("personalizationrule", "healthy"))
    rule["metadata"]["generation"] += 1
    assert argocd_health.health(rule)[0] == "Progressing"


def test_argocd_cm_snippet_carries_the_scripts_verbatim_under_argocds_keys() -> None:
    config = yaml.safe_load((argocd_health.ARGOCD_DOCS / "argocd-cm.yaml").read_text())
    assert config["kind"] == "ConfigMap"
    assert config["metadata"]["name"] == "argocd-cm"
    data = config["data"]
    assert set(data) == {
        f"resource.customizations.health.tailor.dev_{kind}" for kind in argocd_health.SCRIPTS
    }
    for kind, script in argocd_health.SCRIPTS.items():
        assert (
            data[f"resource.customizations.health.tailor.dev_{kind}"]
            == (argocd_health.ARGOCD_DOCS / script).read_text()
        )
