"""The decision for one slot, as a pure function of the engine, the user's context and the time.

It lists the candidates in the order they would be served: rules that match (audience, CEL `when`,
rollout), are not known to be over a frequency cap (tailor.core.decision.caps), and still have a
variant the user may see. The list stops at the first rule without a cap; capped ones before it are
confirmed atomically in Redis (the first whose cap still holds wins: caps.confirm_command). With a
`trace`, it records why each rule did or did not apply: that is what /v1/explain and
`tailor simulate` show.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from tailor.core import cel as cel_language
from tailor.core import constants
from tailor.core.decision import caps, contextual, hashing, rotation
from tailor.core.decision.engine import Engine, LoadedRule, LoadedVariant, SlotPlan
from tailor.core.profile import Profile

COMPARE: Mapping[str, Callable[[Any, Any], bool]] = {
    "gte": operator.ge,
    "gt": operator.gt,
    "lte": operator.le,
    "lt": operator.lt,
    "eq": operator.eq,
    "ne": operator.ne,
}

Trace = list[dict[str, Any]]
NO_SEGMENTS: Mapping[str, contextual.Segments] = MappingProxyType({})


@dataclass(slots=True)
class UserContext:
    """What is known of the user when deciding, for all requested slots: the profile, and the
    per-user decision state (tailor.core.decision.keys) one pipelined Redis read returns."""

    profile: Profile
    session: str = ""
    memory: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # slot -> (rule, variant)
    session_caps: Mapping[str, int] = field(default_factory=dict)  # rule -> impressions this session
    user_caps: Mapping[str, int] = field(default_factory=dict)  # rule -> impressions in its window
    suppressed: frozenset[str] = frozenset()  # "v:<variant>", "t:<tag>"
    round_robin: Mapping[str, int] = field(default_factory=dict)  # rule -> variants served so far

    @property
    def user(self) -> str:
        return self.profile.user


@dataclass(frozen=True, slots=True)
class Candidate:
    rule: LoadedRule
    variant: LoadedVariant
    remembered: bool  # the session already saw this rule's variant in this slot
    segment: str | None = None  # a contextual bandit's segment of the user: its counts take the impression


@dataclass(frozen=True, slots=True)
class SlotDecision:
    plan: SlotPlan
    candidates: tuple[Candidate, ...]
    fallback: LoadedVariant | None

    @property
    def needs_cap_check(self) -> bool:
        return any(c.rule.capped for c in self.candidates)


class _LazyVariables(dict[str, Any]):
    """CEL variables computed on first use: `purchases["24h"].total` builds `purchases` only.

    The compiled CEL function reads `activation[name]`; a dict's __missing__ makes that lazy while
    Profile.as_cel stays the one definition of each variable's value."""

    __slots__ = ("_dimensions", "_profile", "_windows")

    def __init__(self, profile: Profile, windows: tuple[str, ...], dimensions: tuple[str, ...]) -> None:
        super().__init__()
        self._profile, self._windows, self._dimensions = profile, windows, dimensions

    def __missing__(self, name: str) -> Any:
        features = (name,) if name in constants.FEATURES else ()
        variables = self._profile.as_cel(self._windows, features, self._dimensions)
        if name not in variables:
            raise KeyError(name)
        self[name] = variables[name]
        return variables[name]


class CelActivation:
    """The profile as CEL variables, built at most once per request and only if a rule has `when`."""

    __slots__ = ("_engine", "_profile", "_value", "stopped")

    def __init__(self, engine: Engine, profile: Profile) -> None:
        self._engine, self._profile = engine, profile
        self._value: dict[str, Any] | None = None
        # Rules whose `when` spent its cost budget on this profile (tailor.core.rules.environment): they
        # did not match, and the caller counts them.
        self.stopped: list[str] = []

    def get(self) -> dict[str, Any]:
        if self._value is None:
            self._value = _LazyVariables(self._profile, self._engine.cel_windows, self._engine.cel_dimensions)
        return self._value


def trait_holds(matcher: Any, actual: Any) -> bool:
    """A trait matcher: numbers against `threshold`, strings and booleans against `value` (booleans
    as "true"/"false"); never while the trait is unset or expired."""
    if actual is None:
        return False
    if isinstance(actual, bool):
        return COMPARE[matcher.op]("true" if actual else "false", matcher.value)
    if isinstance(actual, str):
        return COMPARE[matcher.op](actual, matcher.value)
    return COMPARE[matcher.op](actual, matcher.threshold)


def audience_matches(rule: LoadedRule, profile: Profile, trace: dict[str, Any] | None) -> bool:
    matched = True
    for matcher in rule.audience:
        actual: Any
        if matcher.trait is not None:
            actual = profile.traits.get(matcher.trait)
            holds = trait_holds(matcher, actual)
        else:
            assert matcher.feature is not None  # the compiler's check: a feature or a trait
            actual = profile.count(matcher.window, matcher.feature, matcher.dimension, matcher.value)
            holds = COMPARE[matcher.op](actual, matcher.threshold)
        if trace is not None:
            trace.setdefault("audience", []).append(
                {**matcher.model_dump(by_alias=True, exclude_none=True), "actual": actual, "matched": holds}
            )
        elif not holds:
            return False
        matched = matched and holds
    return matched


def when_matches(rule: LoadedRule, cel: CelActivation, trace: dict[str, Any] | None) -> bool:
    if rule.when is None:
        return True
    try:
        result = rule.when(cel.get())
    except Exception as error:  # a runtime CEL error (e.g. a missing key) means "does not match"
        if isinstance(error, cel_language.CostLimitExceeded):
            cel.stopped.append(rule.name)
        if trace is not None:
            trace["when"] = {"expression": rule.when_source, "result": None, "error": str(error)}
            _trace_traits(rule, cel, trace["when"])
        return False
    matched = result is True  # a `when` matches only on a boolean true
    if trace is not None:
        trace["when"] = {"expression": rule.when_source, "result": matched}
        _trace_traits(rule, cel, trace["when"])
    return matched


def _trace_traits(rule: LoadedRule, cel: CelActivation, entry: dict[str, Any]) -> None:
    """Explain: the values of the traits the `when` names (null: unset or expired)."""
    if rule.when_traits:
        traits = cel.get()["traits"]
        entry["traits"] = {name: traits.get(name) for name in rule.when_traits}


def rollout_bucket(rule: LoadedRule, user: str) -> float:
    return hashing.percent_bucket(rule.seed, rule.name, "rollout", user)


def visible(variants: tuple[LoadedVariant, ...], context: UserContext, now: float) -> list[LoadedVariant]:
    suppressed = context.suppressed
    return [
        v
        for v in variants
        if v.live(now) and not (suppressed and any(mark in suppressed for mark in v.suppression_marks))
    ]


def pick_fallback(plan: SlotPlan, context: UserContext, now: float) -> LoadedVariant | None:
    choices = visible(plan.fallbacks, context, now)
    if not choices:
        return None
    return rotation.weighted_pick(choices, hashing.unit(plan.name, "fallback", context.user, context.session))


def decide_slot(
    engine: Engine,
    plan: SlotPlan,
    context: UserContext,
    now: float,
    bandit: Mapping[str, rotation.BanditStats],
    cel: CelActivation,
    trace: Trace | None = None,
    segments: Mapping[str, contextual.Segments] = NO_SEGMENTS,
) -> SlotDecision:
    """Candidates for `plan`'s slot in serving order, and its fallback; see the module docstring.
    `bandit` holds each bandit rule's counts, `segments` each contextual one's per segment."""
    candidates: list[Candidate] = []
    remembered_rule, remembered_variant = context.memory.get(plan.name, ("", ""))
    if engine.kill_switch:
        if trace is not None:
            trace.append({"rule": None, "outcome": "killSwitch", "reason": "the stack's kill switch is on"})
        return SlotDecision(plan, (), pick_fallback(plan, context, now))
    for rule in plan.rules:
        entry: dict[str, Any] | None = None
        if trace is not None:
            entry = {"rule": rule.name, "priority": rule.priority, "strategy": rule.strategy}
            trace.append(entry)
        decided = candidates and not candidates[-1].rule.capped
        if decided:
            if entry is not None:
                entry["outcome"] = "notReached"
            continue
        outcome = _consider(
            rule, plan, context, now, bandit, segments, cel, entry, remembered_rule, remembered_variant
        )
        if isinstance(outcome, Candidate):
            candidates.append(outcome)
            if entry is not None:
                entry["outcome"] = "candidate" if rule.capped else "chosen"
                entry["variant"] = outcome.variant.name
                entry["remembered"] = outcome.remembered
        elif entry is not None:
            entry["outcome"] = outcome
    if trace is not None:
        trace.extend({"rule": rule.name, "outcome": "disabled"} for rule in plan.disabled)
    # The fallback is needed only if no candidate is certain to be served (none, or all capped).
    maybe_needed = not candidates or candidates[-1].rule.capped or trace is not None
    return SlotDecision(plan, tuple(candidates), pick_fallback(plan, context, now) if maybe_needed else None)


def _consider(
    rule: LoadedRule,
    plan: SlotPlan,
    context: UserContext,
    now: float,
    bandit: Mapping[str, rotation.BanditStats],
    segments: Mapping[str, contextual.Segments],
    cel: CelActivation,
    entry: dict[str, Any] | None,
    remembered_rule: str,
    remembered_variant: str,
) -> Candidate | str:
    """A candidate, or the name of the first check that failed. Without a trace it stops at the first
    failure; with one it evaluates every check, because a reviewer wants to see them all."""
    tracing = entry is not None
    failed = None if audience_matches(rule, context.profile, entry) else "audience"
    if (failed is None or tracing) and not when_matches(rule, cel, entry):
        failed = failed or "when"
    if failed is None or tracing:
        bucket = rollout_bucket(rule, context.user)
        rolled_in = bucket < rule.rollout_percentage
        if entry is not None:
            entry["rollout"] = {
                "bucket": round(bucket, 4),
                "percentage": rule.rollout_percentage,
                "in": rolled_in,
            }
        if not rolled_in:
            failed = failed or "rollout"
    if failed is None or tracing:
        session_count = context.session_caps.get(rule.name, 0)
        user_count = context.user_caps.get(rule.name, 0)
        if not caps.under_caps(rule, session_count, user_count, entry):
            failed = failed or "frequencyCap"
    if failed is not None:
        return failed
    eligible = visible(rule.variants, context, now)
    if entry is not None:
        entry["variants"] = {
            "eligible": [v.name for v in eligible],
            "hidden": [v.name for v in rule.variants if v not in eligible],
        }
    if not eligible:
        return "noVariant"
    observed = bandit.get(rule.name)
    segment, segment_observed = None, None
    if rule.context is not None:
        known = segments.get(rule.name, contextual.EMPTY)
        segment = contextual.segment_of(rule.context, context.profile, known)
        segment_observed = known.per_segment.get(segment)
        if entry is not None:
            entry["segment"] = segment_trace(rule, segment, observed, segment_observed)
    if remembered_rule == rule.name:
        for variant in eligible:
            if variant.name == remembered_variant:
                return Candidate(rule, variant, remembered=True, segment=segment)
    served_so_far = context.round_robin.get(rule.name, 0)
    variant = rotation.choose(
        rule, eligible, context.user, context.session, served_so_far, observed, segment_observed
    )
    return Candidate(rule, variant, remembered=False, segment=segment)


def segment_trace(
    rule: LoadedRule,
    segment: str,
    observed: rotation.BanditStats | None,
    segment_observed: rotation.BanditStats | None,
) -> dict[str, Any]:
    """What explain shows of a contextual bandit: the user's segment, its counts per variant, and the
    posterior mean each variant is drawn around."""
    assert rule.context is not None
    counts: dict[str, Any] = {}
    for variant in rule.variants:
        own = segment_observed.get(variant.name) if segment_observed else None
        alpha, beta = contextual.posterior(
            observed.get(variant.name) if observed else None, own, rule.context.prior_weight
        )
        counts[variant.name] = {
            "impressions": own.impressions if own else 0,
            "clicks": own.clicks if own else 0,
            "posteriorMean": round(alpha / (alpha + beta), 4),
        }
    profile = rule.context.profile
    source = profile.model_dump(by_alias=True) if profile is not None else {"trait": rule.context.trait}
    return {"name": segment, "source": source, "counts": counts}
