"""Choosing one of a rule's variants: weighted, sticky, round-robin or a Thompson-sampling bandit
(for everyone at once, or per segment of users: tailor.core.decision.contextual).

Every strategy draws its randomness from `hashing`, keyed by the rule's seed and the user (and session),
so the same inputs give the same variant on every replica and in every test run.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence

from tailor.core.decision import contextual, hashing
from tailor.core.decision.engine import LoadedRule, LoadedVariant

BanditStats = contextual.BanditStats  # variant -> impressions and clicks


def weighted_pick(variants: Sequence[LoadedVariant], u: float) -> LoadedVariant:
    """The variant whose share of the total weight contains `u` in [0, 1); equal shares if all weigh 0."""
    total = sum(v.weight for v in variants)
    if total <= 0:
        return variants[min(int(u * len(variants)), len(variants) - 1)]
    bounds = list(itertools.accumulate(v.weight for v in variants))
    index = bisect.bisect_right(bounds, u * total)
    return variants[min(index, len(variants) - 1)]


def thompson_pick(
    variants: Sequence[LoadedVariant], observed: BanditStats | None, rng: random.Random
) -> LoadedVariant:
    """The variant with the highest draw from Beta(1 + clicks, 1 + impressions - clicks)."""
    best, best_draw = variants[0], -1.0
    for variant in variants:
        seen = observed.get(variant.name) if observed else None
        clicks = seen.clicks if seen else 0
        misses = max(0, seen.impressions - clicks) if seen else 0
        draw = rng.betavariate(1 + clicks, 1 + misses)
        if draw > best_draw:
            best, best_draw = variant, draw
    return best


def choose(
    rule: LoadedRule,
    eligible: Sequence[LoadedVariant],
    user: str,
    session: str,
    round_robin_count: int,
    observed: BanditStats | None,
    segment: BanditStats | None = None,
) -> LoadedVariant:
    """One of `eligible` (non-empty) by the rule's strategy; a contextual bandit draws from the user's
    segment's counts (`segment`) with the rule's global ones (`observed`) as the prior."""
    if len(eligible) == 1:
        return eligible[0]
    strategy = rule.strategy
    if strategy == "sticky":
        return weighted_pick(eligible, hashing.unit(rule.seed, rule.name, "sticky", user))
    if strategy == "roundRobin":
        return eligible[round_robin_count % len(eligible)]
    if strategy == "bandit":
        rng = random.Random(hashing.hash64(rule.seed, rule.name, "bandit", user, session))
        if rule.context is not None:
            return contextual.pick(eligible, observed, segment, rule.context.prior_weight, rng)
        return thompson_pick(eligible, observed, rng)
    return weighted_pick(eligible, hashing.unit(rule.seed, rule.name, "weighted", user, session))
