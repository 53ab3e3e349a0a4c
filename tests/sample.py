"""Small, complete rulesets built in code, for the tests and the benchmarks (bench/decide.py,
bench/cel_libraries.py put tests/ on their path for it). Not shipped: fixtures, not product.

They are real `Ruleset` documents, published with `tailor.core.rules.versions.publish` as the operator
does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tailor.core.rules import ruleset


def stack_config(stack: str = "shop/main", **api: Any) -> ruleset.StackConfig:
    namespace, _, name = stack.partition("/")
    return ruleset.StackConfig(
        namespace=namespace,
        name=name,
        kafka=ruleset.KafkaConfig(
            bootstrap_servers="127.0.0.1:9092", events_topic="tailor.events", dead_letter_topic="tailor.dlq"
        ),
        features=ruleset.FeatureConfig(
            windows=(
                ruleset.Window(name="5m", seconds=300, bucket_seconds=10),
                ruleset.Window(name="30m", seconds=1800, bucket_seconds=60),
                ruleset.Window(name="24h", seconds=86400, bucket_seconds=3600),
            ),
            dimensions=("category", "productId", "query"),
            allowed_lateness_seconds=30,
        ),
        api=ruleset.ApiConfig(**api),
    )


def html_variant(name: str, slot: str, **fields: Any) -> ruleset.Variant:
    return ruleset.Variant(name=name, slot=slot, content_type="html", body=f"<p>{name}</p>", **fields)


def build(
    variants: Iterable[ruleset.Variant],
    rules: Iterable[ruleset.Rule],
    *,
    stack: str = "shop/main",
    config: ruleset.StackConfig | None = None,
) -> ruleset.Ruleset:
    ordered = sorted(rules, key=lambda r: (r.slot, -r.priority, r.name))
    return ruleset.Ruleset(
        stack=stack,
        config=config or stack_config(stack),
        variants={v.name: v for v in variants},
        rules=tuple(ordered),
    )


def shop(stack: str = "shop/main") -> ruleset.Ruleset:
    """A hero slot: shoe lovers see shoe banners (weighted), everyone else a fallback."""
    return build(
        [
            html_variant("hero-default", "hero", fallback=True),
            html_variant("hero-shoes-a", "hero", weight=3, tags=("shoes",)),
            html_variant("hero-shoes-b", "hero", weight=1, tags=("shoes",)),
        ],
        [
            ruleset.Rule(
                name="shoe-lovers",
                slot="hero",
                priority=10,
                audience=(
                    ruleset.Matcher(
                        feature="views", dimension="category", value="shoes", window="30m", threshold=2
                    ),
                ),
                variants=("hero-shoes-a", "hero-shoes-b"),
            )
        ],
        stack=stack,
    )
