"""The API server refuses a PersonalizationRule's rotation.context that cannot work, with the field
named, and takes a good one with its defaults filled in."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROFILE = {"feature": "views", "dimension": "category", "window": "24h"}

pytestmark = [pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def crds(kubectl: Callable[..., Any]) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    wait = ("wait", "--for=condition=Established", "crd/personalizationrules.tailor.dev", "--timeout=30s")
    deadline = time.monotonic() + 30
    while kubectl(*wait, check=False).returncode != 0:  # no conditions yet on a CRD just made
        assert time.monotonic() < deadline, "the CRD was not established"
        time.sleep(0.2)


def rule_with(rotation: dict[str, Any]) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "tailor.dev/v1alpha1",
            "kind": "PersonalizationRule",
            "metadata": {"name": "hero-by-category"},
            "spec": {"slot": "home-hero", "variants": {"names": ["a", "b"]}, "rotation": rotation},
        }
    )


def test_the_api_server_refuses_a_bad_bandit_context_and_defaults_a_good_one(
    crds: None, kubectl: Callable[..., Any], namespace: str
) -> None:
    bandit = {"strategy": "bandit"}
    for rotation, message in (
        ({"strategy": "sticky", "context": {"profile": PROFILE}}, "rotation.context needs rotation.strategy"),
        ({**bandit, "context": {"profile": {**PROFILE, "window": "a day"}}}, "must be a duration"),
        ({**bandit, "context": {"profile": {**PROFILE, "feature": "likes"}}}, "context.profile.feature"),
        ({**bandit, "context": {"profile": PROFILE, "maxSegments": 0}}, "spec.rotation.context.maxSegments"),
        ({**bandit, "context": {"profile": PROFILE, "priorWeight": -1}}, "spec.rotation.context.priorWeight"),
        ({**bandit, "context": {"maxSegments": 4}}, "exactly one source, profile or trait"),
        ({**bandit, "context": {"profile": PROFILE, "trait": "plan"}}, "exactly one source"),
        ({**bandit, "context": {"trait": "churn-risk"}}, "spec.rotation.context.trait"),
    ):  # fmt: skip
        result = kubectl("apply", "-n", namespace, "-f", "-", input=rule_with(rotation), check=False)
        assert result.returncode != 0, rotation
        assert message in result.stderr, result.stderr
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=rule_with({"strategy": "bandit", "context": {"profile": PROFILE}}),
    )
    got = json.loads(kubectl("get", "-n", namespace, "prule", "hero-by-category", "-o", "json").stdout)
    assert got["spec"]["rotation"] == {
        "strategy": "bandit",
        "context": {"profile": PROFILE, "maxSegments": 8, "priorWeight": 20},
    }
