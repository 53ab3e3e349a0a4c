"""The API server refuses spec.contentApi.rateLimits values that cannot work, with the field named,
and takes good ones with their defaults filled in."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
STACK = yaml.safe_load((ROOT / "examples" / "shop" / "stack.yaml").read_text())

pytestmark = [pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def crds(kubectl: Callable[..., Any]) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    wait = ("wait", "--for=condition=Established", "crd/personalizationstacks.tailor.dev", "--timeout=30s")
    deadline = time.monotonic() + 30
    while kubectl(*wait, check=False).returncode != 0:  # no conditions yet on a CRD just made
        assert time.monotonic() < deadline, "the CRD was not established"
        time.sleep(0.2)


def stack_with(rate_limits: dict[str, Any]) -> str:
    stack = json.loads(json.dumps(STACK))
    stack["spec"]["contentApi"]["rateLimits"] = rate_limits
    return yaml.safe_dump(stack)


def test_the_api_server_refuses_bad_rate_limits_and_defaults_good_ones(
    crds: None, kubectl: Callable[..., Any], namespace: str
) -> None:
    for limits, message in (
        ({"perClient": {"requests": -1}}, "spec.contentApi.rateLimits.perClient.requests"),
        ({"perUser": {"requests": 10, "per": "soon"}}, "rateLimits per must be a duration"),
        ({"perUser": {"per": "1m"}}, "spec.contentApi.rateLimits.perUser.requests: Required value"),
        ({"trustedProxies": ["proxy.example"]}, "spec.contentApi.rateLimits.trustedProxies[0]"),
    ):
        result = kubectl("apply", "-n", namespace, "-f", "-", input=stack_with(limits), check=False)
        assert result.returncode != 0, limits
        assert message in result.stderr, result.stderr
    kubectl("apply", "-n", namespace, "-f", "-", input=stack_with({"perUser": {"requests": 30}}))
    got = json.loads(kubectl("get", "-n", namespace, "pstack", "shop", "-o", "json").stdout)
    assert got["spec"]["contentApi"]["rateLimits"] == {
        "perClient": {"requests": 1200, "per": "1m"},
        "perUser": {"requests": 30, "per": "1m"},
    }
