"""spec.contentApi.rateLimits: the CRD's defaults and checks, and what the compiler publishes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tailor.core.rules import compiler, crdschema, ruleset, specs

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"
NS = "shop"


def shop_manifests(rate_limits: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    documents = []
    for path in sorted(SHOP.glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    if rate_limits is not None:
        stack = next(doc for doc in documents if doc["kind"] == "PersonalizationStack")
        stack["spec"]["contentApi"]["rateLimits"] = rate_limits
    return documents


def compiled(manifests: list[dict[str, Any]]) -> compiler.CompileResult:
    found = []
    for created, manifest in enumerate(manifests):
        defaulted, errors = crdschema.check(manifest)
        assert not errors, errors
        defaulted["metadata"]["creationTimestamp"] = f"2025-01-01T00:00:{created:02d}Z"
        defaulted["metadata"].setdefault("generation", 1)
        found.append(specs.Source.from_manifest(defaulted, NS))
    return compiler.compile_namespace(NS, found)


def test_a_stack_without_rate_limits_gets_the_documented_defaults() -> None:
    result = compiled(shop_manifests())
    assert result.ruleset is not None
    assert result.ruleset.config.api.rate_limits == ruleset.RateLimits(
        per_client=ruleset.RateLimit(requests=1200, seconds=60),
        per_user=ruleset.RateLimit(requests=600, seconds=60),
        trusted_proxies=(),
    )


def test_rate_limits_as_written_are_published() -> None:
    limits = {
        "perClient": {"requests": 50, "per": "10s"},
        "perUser": {"requests": 0},
        "trustedProxies": ["10.0.0.0/8", "fd00::/8"],
    }
    result = compiled(shop_manifests(limits))
    assert result.ruleset is not None
    published = result.ruleset.config.api.rate_limits
    assert published.per_client == ruleset.RateLimit(requests=50, seconds=10)
    assert published.per_user.requests == 0
    assert published.trusted_proxies == ("10.0.0.0/8", "fd00::/8")


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"trustedProxies": ["999.1.1.1/8"]}, "'999.1.1.1/8' is not a CIDR"),
        ({"perClient": {"requests": 10, "per": "2h"}}, "perClient.per: 2h is outside 1s..1h"),
    ],
)
def test_what_the_schema_lets_through_but_cannot_work_holds_the_stack(
    limits: dict[str, Any], message: str
) -> None:
    result = compiled(shop_manifests(limits))
    assert result.ruleset is None
    assert result.held is not None
    assert message in result.held.message


@pytest.mark.parametrize(
    "limits",
    [
        {"perClient": {"requests": -1}},
        {"perUser": {"requests": 10, "per": "soon"}},
        {"perUser": {"per": "1m"}},
        {"trustedProxies": ["proxy.example"]},
        {"somethingElse": True},
    ],
)
def test_the_schema_refuses_bad_rate_limits(limits: dict[str, Any]) -> None:
    stack = copy.deepcopy(next(d for d in shop_manifests(limits) if d["kind"] == "PersonalizationStack"))
    _, errors = crdschema.check(stack)
    assert errors, limits
