"""The compiler: the shop example, each semantic check, and the last-good policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tailor.core.rules import compiler, crdschema, ruleset, specs

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"
NS = "shop"


BY_CATEGORY = {"feature": "views", "dimension": "category", "window": "24h"}


def shop_manifests() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(SHOP.glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def sources(manifests: list[dict[str, Any]]) -> list[specs.Source]:
    found = []
    for created, manifest in enumerate(manifests):
        defaulted, errors = crdschema.check(manifest)
        assert not errors, errors
        defaulted["metadata"]["creationTimestamp"] = f"2025-01-01T00:00:{created:02d}Z"
        defaulted["metadata"].setdefault("generation", 1)
        found.append(specs.Source.from_manifest(defaulted, NS))
    return found


def rule(name: str, slot: str = "home-hero", priority: int = 0, **spec: Any) -> dict[str, Any]:
    spec = {"slot": slot, "priority": priority, "variants": {"names": ["hero-welcome"]}, **spec}
    return {
        "apiVersion": "tailor.dev/v1alpha1",
        "kind": "PersonalizationRule",
        "metadata": {"name": name},
        "spec": spec,
    }


def replace(manifests: list[dict[str, Any]], new: dict[str, Any]) -> list[dict[str, Any]]:
    name = new["metadata"]["name"]
    return [m for m in manifests if m["metadata"]["name"] != name or m["kind"] != new["kind"]] + [new]


def without(manifests: list[dict[str, Any]], kind: str, name: str) -> list[dict[str, Any]]:
    return [m for m in manifests if not (m["kind"] == kind and m["metadata"]["name"] == name)]


def compile_(
    manifests: list[dict[str, Any]], previous: ruleset.Ruleset | None = None
) -> compiler.CompileResult:
    return compiler.compile_namespace(NS, sources(manifests), previous)


def outcome(result: compiler.CompileResult, kind: str, name: str) -> compiler.ResourceResult:
    return result.resources[(kind, name)]


def test_shop_compiles_every_rule_and_variant_in_order() -> None:
    result = compile_(shop_manifests())
    assert result.problems == []
    compiled = result.ruleset
    assert compiled is not None
    assert compiled.stack == "shop/shop"
    assert [(r.slot, r.priority, r.name) for r in compiled.rules] == [
        ("home-hero", 100, "returning-shoe-browser"),
        ("home-hero", 50, "searcher"),
        ("home-hero", 10, "new-visitor"),
        ("sidebar-promo", 100, "abandoned-cart"),
        ("sidebar-promo", 10, "engaged-browser"),
    ]
    by_name = {r.name: r for r in compiled.rules}
    assert by_name["returning-shoe-browser"].variants == ("hero-shoes-new-arrivals", "hero-shoes-sale")
    assert by_name["abandoned-cart"].rollout_percentage == 50
    assert by_name["returning-shoe-browser"].frequency_cap == ruleset.FrequencyCap(
        per_user_count=20, per_user_window_seconds=86400
    )
    assert len(compiled.variants) == 9
    windows = {w.name: (w.seconds, w.bucket_seconds) for w in compiled.config.features.windows}
    assert windows == {"5m": (300, 5), "30m": (1800, 30), "24h": (86400, 1440)}
    assert compiled.config.kafka.events_topic == "shop.events"


def test_variant_html_is_sanitized_at_compile_time() -> None:
    evil = {
        "apiVersion": "tailor.dev/v1alpha1",
        "kind": "ContentVariant",
        "metadata": {"name": "hero-welcome"},
        "spec": {
            "slot": "home-hero",
            "fallback": True,
            "content": {
                "type": "html",
                "body": '<p onclick="steal()">Hi<script>steal()</script><a href="javascript:x()">x</a></p>',
            },
        },
    }
    compiled = compile_(replace(shop_manifests(), evil)).ruleset
    assert compiled is not None
    body = compiled.variants["hero-welcome"].body
    assert body is not None
    assert "script" not in body
    assert "onclick" not in body
    assert "javascript" not in body
    assert "Hi" in body


def test_variant_html_loses_ids_and_names_that_would_clobber_page_globals() -> None:
    clobbering = {
        "apiVersion": "tailor.dev/v1alpha1",
        "kind": "ContentVariant",
        "metadata": {"name": "hero-welcome"},
        "spec": {
            "slot": "home-hero",
            "fallback": True,
            "content": {
                "type": "html",
                "body": '<img id="config" name="config" src="/a.png" class="hero"><a id="c" href="/c">c</a>',
            },
        },
    }
    compiled = compile_(replace(shop_manifests(), clobbering)).ruleset
    assert compiled is not None
    assert compiled.variants["hero-welcome"].body == (
        '<img src="/a.png" class="hero"><a href="/c" rel="noopener noreferrer">c</a>'
    )


def image_variant(**data: Any) -> dict[str, Any]:
    return {
        "apiVersion": "tailor.dev/v1alpha1",
        "kind": "ContentVariant",
        "metadata": {"name": "hero-shoes-sale"},
        "spec": {"slot": "home-hero", "content": {"type": "image", "data": {"src": "/img/a.webp", **data}}},
    }


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (
            {"href": "javascript:alert(document.cookie)"},
            "content.data.href must be an https URL or a relative path",
        ),
        ({"href": "JaVaScRiPt:alert(1)"}, "not 'JaVaScRiPt:alert(1)'"),
        ({"href": "java\tscript:alert(1)"}, "content.data.href must not hold spaces, control characters"),
        ({"href": " javascript:alert(1)"}, "must not hold spaces"),
        ({"href": "data:text/html,<script>x()</script>"}, "content.data.href must be an https URL"),
        ({"href": "http://shop.example/sale"}, "content.data.href must be an https URL"),
        ({"href": "//evil.example/x"}, "another host with the page's scheme"),
        ({"href": "/\\evil.example/x"}, "backslashes"),
        ({"href": "https://shop.example/" + "x" * 2030}, "content.data.href must be at most 2048 characters"),
        (
            {"href": 42},
            "content.data.href must be an https URL or a relative path (like /sale), a non-empty string",
        ),
        (
            {"src": "data:image/svg+xml;base64,PHN2Zz4="},
            "content.data.src may be a data: URL only as a base64",
        ),
        ({"src": "javascript:x()"}, "content.data.src must be an https URL"),
    ],
)
def test_an_image_variant_with_an_unsafe_url_fails_with_the_field_and_why(
    data: dict[str, Any], fragment: str
) -> None:
    result = compile_(replace(shop_manifests(), image_variant(**data)))
    (problem,) = outcome(result, "ContentVariant", "hero-shoes-sale").problems
    assert problem.reason == "InvalidContent"
    assert fragment in problem.message


@pytest.mark.parametrize(
    "data",
    [
        {"href": "https://shop.example/c/shoes?sale=1#top"},
        {"href": "/c/shoes/sale"},
        {"href": "sale.html"},
        {"href": "#offers"},
        {"src": "https://cdn.example/a.webp", "href": "/c/shoes"},
        {"src": "http://cdn.example/a.webp"},  # images, as before (the page may upgrade them)
        {"src": "data:image/png;base64,iVBORw0KGgo="},
        {},
    ],
)
def test_an_image_variant_with_https_or_relative_urls_publishes(data: dict[str, Any]) -> None:
    result = compile_(replace(shop_manifests(), image_variant(**data)))
    assert outcome(result, "ContentVariant", "hero-shoes-sale").outcome == "published"


@pytest.mark.parametrize(
    ("spec", "reason", "fragment"),
    [
        ({"variants": {"names": ["no-such-variant"]}}, "UnknownVariant", "'no-such-variant' does not exist"),
        ({"variants": {"names": ["promo-bestsellers"]}}, "VariantSlotMismatch", "slot 'sidebar-promo'"),
        ({"audience": [{"feature": "views", "window": "1h"}]}, "WindowNotDeclared", "'1h'"),
        (
            {"audience": [{"feature": "views", "dimension": "color", "window": "5m"}]},
            "DimensionNotDeclared",
            "'color'",
        ),
        ({"when": 'views["5m"].total >= '}, "InvalidCel", "when:"),
        ({"when": 'clickz["5m"].total > 1'}, "InvalidCel", "clickz"),
        (
            {"when": 'views["24h"].category.exists(a, views["24h"].category.exists(b, a < b))'},
            "CelCostExceeded",
            "exceeds the limit of",
        ),
        (
            {"variants": {"selector": {"matchLabels": {"category": "hats"}}}},
            "NoVariantsSelected",
            "matches no",
        ),
        ({"priority": 100}, "PriorityConflict", "'returning-shoe-browser' already has priority 100"),
        (
            {"rotation": {"strategy": "bandit", "context": {"profile": {**BY_CATEGORY, "window": "1h"}}}},
            "WindowNotDeclared",
            "rotation.context.profile.window '1h'",
        ),
        (
            {
                "rotation": {
                    "strategy": "bandit",
                    "context": {"profile": {**BY_CATEGORY, "dimension": "color"}},
                }
            },
            "DimensionNotDeclared",
            "rotation.context.profile.dimension 'color'",
        ),
    ],
)
def test_semantic_errors_are_reported_per_rule_and_the_rest_publishes(
    spec: dict[str, Any], reason: str, fragment: str
) -> None:
    result = compile_([*shop_manifests(), rule("newcomer", **spec)])
    newcomer = outcome(result, "PersonalizationRule", "newcomer")
    assert newcomer.outcome == "omitted"
    assert [p.reason for p in newcomer.problems] == [reason]
    assert fragment in newcomer.problems[0].message
    assert result.ruleset is not None
    assert len(result.ruleset.rules) == 5
    assert all(p.name == "newcomer" for p in result.problems)


def test_a_contextual_bandit_rule_compiles_with_its_segment_source_and_defaults() -> None:
    result = compile_(
        [
            *shop_manifests(),
            rule("newcomer", rotation={"strategy": "bandit", "context": {"profile": BY_CATEGORY}}),
        ]
    )
    (compiled,) = [r for r in result.ruleset.rules if r.name == "newcomer"] if result.ruleset else []
    assert compiled.context == ruleset.BanditContext(
        profile=ruleset.ProfileSegment(feature="views", dimension="category", window="24h"),
        max_segments=8,
        prior_weight=20.0,
    )
    # `tailor validate` refuses a context on another strategy as the API server does.
    _, errors = crdschema.check(
        rule("newcomer", rotation={"strategy": "sticky", "context": {"profile": BY_CATEGORY}})
    )
    assert any("rotation.context needs rotation.strategy bandit" in str(e) for e in errors), errors


def test_a_broken_edit_keeps_the_last_good_form_of_the_rule() -> None:
    good = compile_(shop_manifests()).ruleset
    assert good is not None
    broken = rule("searcher", priority=50, audience=[{"feature": "searches", "window": "7m"}])
    broken["spec"]["variants"] = {"names": ["hero-search-tips"]}
    result = compile_(replace(shop_manifests(), broken), previous=good)
    searcher = outcome(result, "PersonalizationRule", "searcher")
    assert searcher.outcome == "kept"
    assert searcher.problems[0].reason == "WindowNotDeclared"
    assert result.ruleset is not None
    kept = next(r for r in result.ruleset.rules if r.name == "searcher")
    assert kept == next(r for r in good.rules if r.name == "searcher")
    assert result.ruleset.content_checksum() == good.content_checksum()


def test_a_kept_form_that_no_longer_fits_holds_publishing() -> None:
    good = compile_(shop_manifests()).ruleset
    assert good is not None
    # The variant that `searcher` names is deleted: the rule fails, and its last good form names it.
    result = compile_(without(shop_manifests(), "ContentVariant", "hero-search-tips"), previous=good)
    assert result.ruleset is None
    assert result.held is not None
    assert result.held.ref == "PersonalizationRule/searcher"
    assert "nothing is published" in result.held.message


def test_a_stack_whose_bounds_grew_past_a_live_rules_cost_holds_publishing() -> None:
    deep = rule("deep", priority=7, when="recent.category.all(a, recent.query.all(b, a != b))")
    shop = [*shop_manifests(), deep]
    small = [with_recent_limit(manifest, 5) for manifest in shop]
    good = compile_(small).ruleset
    assert good is not None
    assert any(r.name == "deep" for r in good.rules)
    result = compile_([with_recent_limit(manifest, 200) for manifest in shop], previous=good)
    assert result.ruleset is None
    assert result.held is not None
    assert result.held.ref == "PersonalizationRule/deep"
    assert result.held.reason == "CelCostExceeded"
    assert "200 x 200" in result.held.message
    assert "nothing is published" in result.held.message


def with_recent_limit(manifest: dict[str, Any], limit: int) -> dict[str, Any]:
    if manifest["kind"] != "PersonalizationStack":
        return manifest
    spec = manifest["spec"]
    return {**manifest, "spec": {**spec, "features": {**spec.get("features", {}), "recentLimit": limit}}}


def test_deleting_a_rule_or_an_unreferenced_variant_removes_it() -> None:
    good = compile_(shop_manifests()).ruleset
    manifests = without(
        without(shop_manifests(), "PersonalizationRule", "searcher"), "ContentVariant", "hero-search-tips"
    )
    result = compile_(manifests, previous=good)
    assert result.ruleset is not None
    assert "searcher" not in {r.name for r in result.ruleset.rules}
    assert "hero-search-tips" not in result.ruleset.variants


def test_a_selector_rule_loses_a_deleted_variant_and_stays_valid() -> None:
    result = compile_(without(shop_manifests(), "ContentVariant", "hero-shoes-sale"))
    assert result.ruleset is not None
    shoes = next(r for r in result.ruleset.rules if r.name == "returning-shoe-browser")
    assert shoes.variants == ("hero-shoes-new-arrivals",)


def test_a_broken_variant_keeps_its_last_good_form() -> None:
    good = compile_(shop_manifests()).ruleset
    assert good is not None
    broken = {
        "apiVersion": "tailor.dev/v1alpha1",
        "kind": "ContentVariant",
        "metadata": {"name": "hero-shoes-sale", "labels": {"category": "shoes"}},
        "spec": {"slot": "home-hero", "content": {"type": "image", "data": {"alt": "no src"}}},
    }
    result = compile_(replace(shop_manifests(), broken), previous=good)
    variant = outcome(result, "ContentVariant", "hero-shoes-sale")
    assert variant.outcome == "kept"
    assert variant.problems[0].reason == "InvalidContent"
    assert result.ruleset is not None
    assert result.ruleset.variants["hero-shoes-sale"] == good.variants["hero-shoes-sale"]


def test_priority_conflict_keeps_the_rule_that_held_the_place() -> None:
    good = compile_(shop_manifests()).ruleset
    # An older rule moves onto searcher's place: searcher held it, so the mover loses.
    mover = rule("new-visitor", priority=50, when='views["24h"].total <= 1')
    mover["spec"]["variants"] = {"names": ["hero-first-order"]}
    result = compile_(replace(shop_manifests(), mover), previous=good)
    assert outcome(result, "PersonalizationRule", "searcher").outcome == "published"
    loser = outcome(result, "PersonalizationRule", "new-visitor")
    assert loser.outcome == "kept"
    assert loser.problems[0].reason == "PriorityConflict"


def test_no_stack_or_a_broken_stack_publishes_nothing() -> None:
    manifests = without(shop_manifests(), "PersonalizationStack", "shop")
    result = compile_(manifests)
    assert result.ruleset is None
    assert result.held is not None
    assert result.held.reason == "NoStack"
    stack_sources = sources(shop_manifests())
    broken = [
        s.model_copy(
            update={"spec": {**s.spec, "features": {**s.spec["features"], "allowedLateness": "soon"}}}
        )
        if s.kind == "PersonalizationStack"
        else s
        for s in stack_sources
    ]
    result = compiler.compile_namespace(NS, broken)
    assert result.ruleset is None
    assert result.held is not None
    assert result.held.ref == "PersonalizationStack/shop"


def test_a_second_stack_in_a_namespace_is_refused() -> None:
    manifests = shop_manifests()
    second = dict(next(m for m in manifests if m["kind"] == "PersonalizationStack"))
    second = {**second, "metadata": {"name": "zz-second"}}
    result = compile_([*manifests, second])
    assert result.ruleset is not None
    assert result.ruleset.stack == "shop/shop"
    assert outcome(result, "PersonalizationStack", "zz-second").problems[0].reason == "OneStackPerNamespace"


@pytest.mark.parametrize(
    ("window", "bucket"), [(60, 1), (300, 5), (1800, 30), (3600, 60), (86400, 1440), (420, 7)]
)
def test_buckets_divide_windows_into_at_most_60(window: int, bucket: int) -> None:
    assert compiler.bucket_seconds(window) == bucket
    assert window % bucket == 0
    assert window // bucket <= compiler.MAX_BUCKETS


def test_recompiling_with_a_cache_gives_the_same_ruleset() -> None:
    cache = compiler.Cache()
    first = compiler.compile_namespace(NS, sources(shop_manifests()), None, cache)
    second = compiler.compile_namespace(NS, sources(shop_manifests()), None, cache)
    assert first.ruleset is not None
    assert second.ruleset is not None
    assert first.ruleset.content_checksum() == second.ruleset.content_checksum()


def stack_features(**features: Any) -> ruleset.FeatureConfig:
    spec = specs.StackSpec.model_validate(
        {"kafka": {"bootstrapServers": "kafka:9092"}, "redis": {}, "features": features}
    )
    return compiler.stack_config(NS, "shop", spec).features


def test_by_default_an_event_counts_as_late_as_the_largest_window_still_holds_it() -> None:
    default = stack_features()  # windows 5m, 30m, 24h
    assert default.horizon_seconds == 86400
    assert default.allowed_lateness_seconds == 86400
    assert stack_features(windows=["5m", "90m"]).allowed_lateness_seconds == 5400
    assert stack_features(windows=["61m"]).allowed_lateness_seconds == 3660


def test_a_stack_may_count_a_shorter_past_but_never_beyond_its_largest_window() -> None:
    assert stack_features(allowedLateness="2m").allowed_lateness_seconds == 120
    assert stack_features(windows=["5m"], allowedLateness="1h").allowed_lateness_seconds == 300


def test_dedup_marks_outlive_every_event_that_can_still_be_counted() -> None:
    assert stack_features().dedup_ttl_seconds == 86400
    week = stack_features(windows=["5m", "168h"])
    assert week.dedup_ttl_seconds == week.allowed_lateness_seconds == 168 * 3600


def stack_kafka(namespace: str, name: str, **topics: Any) -> ruleset.KafkaConfig:
    spec = specs.StackSpec.model_validate(
        {"kafka": {"bootstrapServers": "kafka:9092", "topics": topics}, "redis": {}}
    )
    return compiler.stack_config(namespace, name, spec).kafka


def test_default_topic_names_are_qualified_by_the_stacks_namespace_and_name() -> None:
    shop, outlet = stack_kafka("shop", "tailor"), stack_kafka("outlet", "tailor")
    assert (shop.events_topic, shop.dead_letter_topic) == (
        "tailor.shop.tailor.events",
        "tailor.shop.tailor.deadletter",
    )
    assert {shop.events_topic, shop.dead_letter_topic}.isdisjoint(
        {outlet.events_topic, outlet.dead_letter_topic}
    )
    # Kafka's metrics spell `.` as `_`: qualified names still differ there (DNS labels have neither).
    assert stack_kafka("a-b", "c").events_topic.replace(".", "_") != stack_kafka(
        "a", "b-c"
    ).events_topic.replace(".", "_")
    longest = stack_kafka("n" * 63, "s" * 50)
    assert len(longest.dead_letter_topic) <= 249


def test_named_topics_are_used_as_named_and_may_not_be_the_same_topic() -> None:
    named = stack_kafka("shop", "tailor", events="tailor.events", deadLetter="tailor.events.deadletter")
    assert (named.events_topic, named.dead_letter_topic) == ("tailor.events", "tailor.events.deadletter")
    assert stack_kafka("shop", "tailor", events="mine").dead_letter_topic == "tailor.shop.tailor.deadletter"
    with pytest.raises(
        ValueError, match=r"events and deadLetter are the same topic, tailor\.shop\.tailor\.deadletter"
    ):
        stack_kafka("shop", "tailor", events="tailor.shop.tailor.deadletter")


def test_topic_retention_must_be_a_duration() -> None:
    with pytest.raises(ValueError, match=r"kafka\.topics\.retention"):
        stack_kafka("shop", "tailor", retention="7d")
