"""Contextual rotation: a Thompson-sampling bandit that learns per segment of users.

A rule with `rotation.context` (tailor.core.rules.ruleset.BanditContext) puts each user in a segment —
their most frequent value of a profile dimension in a window (e.g. their top category in 24h), or
"(none)" when they have none — and its clicks and impressions are kept per segment and variant
(tailor.core.stats.segment_key) beside the rule's global ones.

Segments are bounded. The content API reads a rule's segment counts every few seconds and `bound`
keeps the `max_segments` most served values apart, pooling the rest into "(other)". A user whose value
is not among them is served, and counted, as "(other)" — unless there is still room, and then the
value becomes a segment with its first impressions. Replicas admit on what they last read, so for a
moment a few more values than the maximum may be written; the next read pools them.

Each segment's posterior for a variant is a Beta whose prior is the *other* segments' click-through
estimate scaled to `prior_weight` impressions (never more than those segments saw): a small segment
starts where everyone else is and moves away as its own clicks come in, a large one is ruled by its
own data, and with no data at all the prior is Beta(1, 1), as for the plain bandit.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from tailor.core import stats
from tailor.core.decision.engine import LoadedVariant
from tailor.core.profile import SEPARATOR, Profile
from tailor.core.rules import ruleset

NONE: Final = stats.NO_SEGMENT  # users with no value of the dimension in the window
OTHER: Final = stats.OTHER_SEGMENT  # values beyond max_segments
RESERVED: Final = (NONE, OTHER)
# A segment rides in the decision id (for feedback to count the click there): longer values are
# pooled into OTHER rather than lengthen every id.
MAX_SEGMENT_BYTES: Final = 64

BanditStats = Mapping[str, stats.VariantStats]  # variant -> impressions and clicks


@dataclass(frozen=True, slots=True)
class Segments:
    """A contextual rule's counts as deciding reads them: per segment, bounded."""

    per_segment: Mapping[str, BanditStats]  # the learned values, NONE and OTHER (when seen)
    learned: frozenset[str]  # the values learned apart (not NONE, not OTHER)


EMPTY: Final = Segments({}, frozenset())
_NOTHING: Final = stats.VariantStats()


def bound(per_segment: Mapping[str, BanditStats], max_segments: int) -> Segments:
    """The `max_segments` most served values kept apart, the rest pooled into OTHER (stats.bound_segments)."""
    bounded = stats.bound_segments(per_segment, max_segments)
    return Segments(bounded, frozenset(s for s in bounded if s not in RESERVED))


def raw_value(context: ruleset.BanditContext, profile: Profile) -> str | None:
    """The user's trait value (a boolean as "true"/"false"), or their most frequent value of the
    context's dimension (ties: the first by name); None without one."""
    if context.trait is not None:
        value = profile.traits.get(context.trait)
        if isinstance(value, bool):
            return "true" if value else "false"
        return value if isinstance(value, str) and value else None
    source = context.profile
    if source is None:
        return None
    counts = profile.counts.get(source.window)
    if not counts:
        return None
    prefix = f"{source.feature}{SEPARATOR}{source.dimension}{SEPARATOR}"
    start = len(prefix)
    best, best_n = None, 0
    for name, n in counts.items():
        if n >= best_n and n > 0 and name.startswith(prefix):
            value = name[start:]
            if n > best_n or best is None or value < best:
                best, best_n = value, n
    return best


def segment_of(context: ruleset.BanditContext, profile: Profile, known: Segments) -> str:
    """The user's segment: their value if it is learned apart or there is room for it, else OTHER
    (and for values longer than MAX_SEGMENT_BYTES); NONE without a value."""
    value = raw_value(context, profile)
    if value is None:
        return NONE
    if value in known.learned:
        return value
    if value in RESERVED or len(value.encode()) > MAX_SEGMENT_BYTES:
        return OTHER
    return value if len(known.learned) < context.max_segments else OTHER


def prior(
    everyone: stats.VariantStats | None, own: stats.VariantStats | None, weight: float
) -> tuple[float, float]:
    """Beta(alpha, beta) before the segment's own data: the other segments' smoothed CTR, worth at most
    `weight` impressions (and no more than they saw)."""
    others_impressions = (everyone.impressions if everyone else 0) - (own.impressions if own else 0)
    others_clicks = (everyone.clicks if everyone else 0) - (own.clicks if own else 0)
    others_impressions = max(0, others_impressions)
    others_clicks = min(max(0, others_clicks), others_impressions)
    rate = (others_clicks + 1) / (others_impressions + 2)
    n = min(weight, float(others_impressions))
    return 1.0 + n * rate, 1.0 + n * (1.0 - rate)


def posterior(
    everyone: stats.VariantStats | None, own: stats.VariantStats | None, weight: float
) -> tuple[float, float]:
    alpha, beta = prior(everyone, own, weight)
    clicks = own.clicks if own else 0
    misses = max(0, own.impressions - clicks) if own else 0
    return alpha + clicks, beta + misses


def pick(
    variants: Sequence[LoadedVariant],
    everyone: BanditStats | None,
    segment: BanditStats | None,
    weight: float,
    rng: random.Random,
) -> LoadedVariant:
    """The variant with the highest draw from its segment posterior (`posterior`, inlined: this runs
    on every decision of a contextual rule)."""
    best, best_draw = variants[0], -1.0
    nothing = _NOTHING
    for variant in variants:
        seen = everyone.get(variant.name, nothing) if everyone else nothing
        own = segment.get(variant.name, nothing) if segment else nothing
        others_impressions = max(0, seen.impressions - own.impressions)
        others_clicks = min(max(0, seen.clicks - own.clicks), others_impressions)
        rate = (others_clicks + 1) / (others_impressions + 2)
        n = min(weight, others_impressions)
        alpha = 1.0 + n * rate + own.clicks
        beta = 1.0 + n * (1.0 - rate) + max(0, own.impressions - own.clicks)
        draw = rng.betavariate(alpha, beta)
        if draw > best_draw:
            best, best_draw = variant, draw
    return best
