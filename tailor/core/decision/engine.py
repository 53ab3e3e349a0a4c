"""Load (the data plane's step): a published Ruleset becomes an immutable Engine, complete before it
is served.

A ruleset is made in two stages with one owner each:

1. **compile** (control plane: the operator, `tailor validate`): tailor.core.rules.compiler turns
   manifests into a Ruleset — every check, default, variant selector, sanitized HTML and the last-good
   policy — which the operator publishes (docs/architecture.md §6).
2. **load** (data plane: every API replica, `tailor simulate`): `load` here derives what deciding
   needs from that Ruleset and nothing else — per-slot plans (the published rules are already in
   serving order), each `when` as a Python function, each variant's content serialized once, the
   caps flattened — and checks nothing again: a published Ruleset is trusted (tailor.core.rules.ruleset).

A `when` is turned into a function by the compiler's own `compile_when`, cached per process, so in
a process that both compiles and loads (`tailor simulate`, tests) an expression is compiled once, and
an unchanged rule's `when` is not compiled again when a new version arrives. The content API swaps a
whole Engine in with one assignment, so a request sees one version from start to end and a half-loaded
engine is never visible.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from tailor.core import constants
from tailor.core.profile import store
from tailor.core.rules import compiler, ruleset


class Expression(Protocol):
    """A `when`, ready to run: evaluated against the profile's CEL variables."""

    def __call__(self, activation: Mapping[str, Any]) -> Any: ...


# How a `when` becomes an Expression: tailor.core.cel through the compiler by default; bench/cel_libraries.py
# plugs other CEL libraries in here.
CompileWhen = Callable[[str, Sequence[str], ruleset.FeatureConfig], Expression]


def compile_when(source: str, variables: Sequence[str], features: ruleset.FeatureConfig) -> Expression:
    return compiler.compile_when(source, features, variables).evaluate


@dataclass(frozen=True, slots=True)
class LoadedVariant:
    """A ruleset.Variant as the engine serves it."""

    name: str
    slot: str
    weight: float
    fallback: bool
    start: float | None
    end: float | None
    content: orjson.Fragment  # {"type": ..., "body" | "data": ...}, serialized once per version
    suppression_marks: tuple[str, ...]  # the suppression members that hide it: "v:<name>", "t:<tag>"

    def live(self, now: float) -> bool:
        return (self.start is None or self.start <= now) and (self.end is None or now < self.end)


@dataclass(frozen=True, slots=True)
class LoadedRule:
    """A ruleset.Rule as the engine decides with it: `when` a function, caps as plain numbers."""

    name: str
    slot: str
    priority: int
    enabled: bool
    audience: tuple[ruleset.Matcher, ...]
    when_source: str | None
    when: Expression | None
    variants: tuple[LoadedVariant, ...]
    strategy: ruleset.Strategy
    seed: str
    context: ruleset.BanditContext | None  # a contextual bandit's segments (decision.contextual)
    per_session: int  # 0: no cap
    per_user: int  # 0: no cap
    per_user_window_seconds: int
    rollout_percentage: float
    when_traits: tuple[str, ...] = ()  # the traits its `when` names (explain shows their values)

    @property
    def capped(self) -> bool:
        return self.per_session > 0 or self.per_user > 0


@dataclass(frozen=True, slots=True)
class SlotPlan:
    name: str
    rules: tuple[LoadedRule, ...]  # enabled, highest priority first
    disabled: tuple[LoadedRule, ...]  # kept for /v1/explain
    fallbacks: tuple[LoadedVariant, ...]
    capped_rules: tuple[LoadedRule, ...]


@dataclass(frozen=True, slots=True)
class Engine:
    stack: str
    version: int
    config: ruleset.StackConfig
    slots: Mapping[str, SlotPlan]
    bandit_rules: tuple[str, ...]
    cel_windows: tuple[str, ...]
    cel_dimensions: tuple[str, ...]
    version_header: bytes
    profile_reader: store.ProfileReader

    @property
    def kill_switch(self) -> bool:
        return self.config.kill_switch


def serialize_content(variant: ruleset.Variant) -> orjson.Fragment:
    content: dict[str, Any] = {"type": variant.content_type}
    if variant.content_type in ("html", "text"):
        content["body"] = variant.body or ""
    else:
        content["data"] = variant.data
    return orjson.Fragment(orjson.dumps(content))


def _load_variant(variant: ruleset.Variant) -> LoadedVariant:
    return LoadedVariant(
        name=variant.name,
        slot=variant.slot,
        weight=variant.weight,
        fallback=variant.fallback,
        start=variant.start,
        end=variant.end,
        content=serialize_content(variant),
        suppression_marks=(f"v:{variant.name}", *(f"t:{tag}" for tag in variant.tags)),
    )


def _load_rule(
    rule: ruleset.Rule,
    variants: Mapping[str, LoadedVariant],
    features: ruleset.FeatureConfig,
    compile_when: CompileWhen,
) -> LoadedRule:
    cap = rule.frequency_cap
    return LoadedRule(
        name=rule.name,
        slot=rule.slot,
        priority=rule.priority,
        enabled=rule.enabled,
        audience=rule.audience,
        when_source=rule.when,
        when=compile_when(rule.when, constants.CEL_VARIABLES, features) if rule.when else None,
        variants=tuple(variants[name] for name in rule.variants),
        strategy=rule.strategy,
        seed=rule.seed or rule.name,  # rulesets built in code may leave it empty; the compiler never does
        context=rule.context if rule.strategy == "bandit" else None,
        per_session=(cap.per_session or 0) if cap else 0,
        per_user=(cap.per_user_count or 0) if cap and cap.per_user_window_seconds else 0,
        per_user_window_seconds=(cap.per_user_window_seconds or 0) if cap else 0,
        rollout_percentage=rule.rollout_percentage,
        when_traits=compiler.traits_named(rule.when) if rule.when else (),
    )


def load(published: ruleset.Ruleset, compile_when: CompileWhen = compile_when) -> Engine:
    """The engine for `published`. Raises, and nothing is swapped, if a part cannot be loaded (a `when`
    this library cannot compile, a rule naming a variant the ruleset does not hold)."""
    variants = {name: _load_variant(variant) for name, variant in published.variants.items()}
    features = published.config.features
    rules = [_load_rule(rule, variants, features, compile_when) for rule in published.rules]
    by_slot: dict[str, list[LoadedRule]] = {}
    for rule in rules:  # the ruleset's order: slot, then priority (highest first), then name
        by_slot.setdefault(rule.slot, []).append(rule)
    slots: dict[str, SlotPlan] = {}
    for slot in sorted({v.slot for v in variants.values()} | by_slot.keys()):
        in_slot = by_slot.get(slot, [])
        enabled = tuple(r for r in in_slot if r.enabled)
        slots[slot] = SlotPlan(
            name=slot,
            rules=enabled,
            disabled=tuple(r for r in in_slot if not r.enabled),
            fallbacks=tuple(v for v in variants.values() if v.slot == slot and v.fallback),
            capped_rules=tuple(r for r in enabled if r.capped),
        )
    features = published.config.features
    return Engine(
        stack=published.stack,
        version=published.version,
        config=published.config,
        slots=slots,
        bandit_rules=tuple(r.name for r in rules if r.enabled and r.strategy == "bandit"),
        cel_windows=tuple(w.name for w in features.windows),
        cel_dimensions=features.dimensions,
        version_header=str(published.version).encode(),
        profile_reader=store.ProfileReader(published.config),
    )
