"""The decision engine for one ruleset version: immutable, built completely before it is served.

`build` turns a published Ruleset into per-slot plans: enabled rules in priority order, CEL compiled
once, variants resolved to objects with their content already serialized, fallbacks per slot. The
content API swaps a whole Engine in with one assignment, so a request sees one version from start to end
and a half-built engine is never visible.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from tailor.core import cel, constants
from tailor.core.profile import store
from tailor.core.rules import ruleset


class Expression(Protocol):
    """A compiled CEL `when`: evaluated against the profile's CEL variables."""

    def __call__(self, activation: Mapping[str, Any]) -> Any: ...


CompileWhen = Callable[[str, Sequence[str]], Expression]


def compile_when(source: str, variables: Sequence[str]) -> Expression:
    """tailor.core.cel: compiled to a Python function once per expression (programs are immutable,
    so an unchanged rule's `when` is not parsed again when a new version arrives)."""
    return _compiled(source, tuple(variables)).evaluate


@functools.lru_cache(maxsize=1024)
def _compiled(source: str, variables: tuple[str, ...]) -> cel.Program:
    return cel.compile(source, variables)


@dataclass(frozen=True, slots=True)
class CompiledVariant:
    name: str
    slot: str
    weight: float
    tags: tuple[str, ...]
    fallback: bool
    start: float | None
    end: float | None
    content: orjson.Fragment  # {"type": ..., "body" | "data": ...}, serialized once per version
    suppression_marks: tuple[str, ...]  # the suppression members that hide it: "v:<name>", "t:<tag>"

    def live(self, now: float) -> bool:
        return (self.start is None or self.start <= now) and (self.end is None or now < self.end)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str
    slot: str
    priority: int
    enabled: bool
    audience: tuple[ruleset.Matcher, ...]
    when_source: str | None
    when: Expression | None
    variants: tuple[CompiledVariant, ...]
    strategy: ruleset.Strategy
    seed: str
    per_session: int  # 0: no cap
    per_user: int  # 0: no cap
    per_user_window_seconds: int
    rollout_percentage: float

    @property
    def capped(self) -> bool:
        return self.per_session > 0 or self.per_user > 0


@dataclass(frozen=True, slots=True)
class SlotPlan:
    name: str
    rules: tuple[CompiledRule, ...]  # enabled, highest priority first
    disabled: tuple[CompiledRule, ...]  # kept for /v1/explain
    fallbacks: tuple[CompiledVariant, ...]
    capped_rules: tuple[CompiledRule, ...]
    needs_cel: bool


@dataclass(frozen=True, slots=True)
class Engine:
    stack: str
    version: int
    checksum: str
    config: ruleset.StackConfig
    slots: Mapping[str, SlotPlan]
    bandit_rules: tuple[str, ...]
    cel_windows: tuple[str, ...]
    cel_dimensions: tuple[str, ...]
    version_header: bytes
    profile_reader: store.ProfileReader
    built_at: float = field(default_factory=time.time)

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


def _compile_variant(variant: ruleset.Variant) -> CompiledVariant:
    return CompiledVariant(
        name=variant.name,
        slot=variant.slot,
        weight=max(0.0, variant.weight),
        tags=variant.tags,
        fallback=variant.fallback,
        start=variant.start,
        end=variant.end,
        content=serialize_content(variant),
        suppression_marks=(f"v:{variant.name}", *(f"t:{tag}" for tag in variant.tags)),
    )


def _compile_rule(
    rule: ruleset.Rule, variants: Mapping[str, CompiledVariant], compile_when: CompileWhen
) -> CompiledRule:
    cap = rule.frequency_cap
    missing = [name for name in rule.variants if name not in variants]
    if missing:
        raise ValueError(f"rule {rule.name}: unknown variants {missing}")
    return CompiledRule(
        name=rule.name,
        slot=rule.slot,
        priority=rule.priority,
        enabled=rule.enabled,
        audience=rule.audience,
        when_source=rule.when,
        when=compile_when(rule.when, constants.CEL_VARIABLES) if rule.when else None,
        variants=tuple(variants[name] for name in rule.variants),
        strategy=rule.strategy,
        seed=rule.seed or rule.name,
        per_session=(cap.per_session or 0) if cap else 0,
        per_user=(cap.per_user_count or 0) if cap and cap.per_user_window_seconds else 0,
        per_user_window_seconds=(cap.per_user_window_seconds or 0) if cap else 0,
        rollout_percentage=rule.rollout_percentage,
    )


def build(published: ruleset.Ruleset, compile_when: CompileWhen = compile_when) -> Engine:
    """The engine for `published`; raises (and nothing is swapped) if any part cannot be compiled."""
    variants = {name: _compile_variant(variant) for name, variant in published.variants.items()}
    rules = [_compile_rule(rule, variants, compile_when) for rule in published.rules]
    slot_names = sorted({v.slot for v in variants.values()} | {r.slot for r in rules})
    slots: dict[str, SlotPlan] = {}
    for slot in slot_names:
        in_slot = sorted((r for r in rules if r.slot == slot), key=lambda r: (-r.priority, r.name))
        enabled = tuple(r for r in in_slot if r.enabled)
        slots[slot] = SlotPlan(
            name=slot,
            rules=enabled,
            disabled=tuple(r for r in in_slot if not r.enabled),
            fallbacks=tuple(v for v in variants.values() if v.slot == slot and v.fallback),
            capped_rules=tuple(r for r in enabled if r.capped),
            needs_cel=any(r.when is not None for r in enabled),
        )
    features = published.config.features
    return Engine(
        stack=published.stack,
        version=published.version,
        checksum=published.checksum,
        config=published.config,
        slots=slots,
        bandit_rules=tuple(r.name for r in rules if r.enabled and r.strategy == "bandit"),
        cel_windows=tuple(w.name for w in features.windows),
        cel_dimensions=features.dimensions,
        version_header=str(published.version).encode(),
        profile_reader=store.ProfileReader(published.config),
    )
