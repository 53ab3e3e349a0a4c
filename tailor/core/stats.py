"""Live per-variant performance of each rule: impressions and clicks, kept in Redis.

The content API adds to them (batched, off the hot path) and feeds its bandit from them; the operator
copies them into each PersonalizationRule's status so that `kubectl get prule` shows how rules do.
A contextual bandit rule (`rotation.context`) also keeps them per segment, in a second hash beside
the first and under the same hash tag (the stack's), so both can be written in one call on Redis
Cluster (docs/architecture.md §7).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis

from tailor.core.rules.versions import stack_prefix

IMPRESSIONS = "impressions"
CLICKS = "clicks"
NO_SEGMENT = "(none)"  # a contextual rule's users with no value to segment by
OTHER_SEGMENT = "(other)"  # its values beyond maxSegments, pooled


def key(stack: str, rule: str) -> str:
    """One hash per rule; fields are `<variant>|impressions` and `<variant>|clicks`."""
    return f"{stack_prefix(stack)}:stats:{rule}"


def field(variant: str, measure: str) -> str:
    return f"{variant}|{measure}"


@dataclass(frozen=True, slots=True)
class VariantStats:
    impressions: int = 0
    clicks: int = 0

    @property
    def ctr(self) -> float:
        return self.clicks / self.impressions if self.impressions else 0.0


def parse(raw: Mapping[bytes | str, bytes | str]) -> dict[str, VariantStats]:
    """Per-variant stats from the HGETALL of a rule's stats hash."""
    impressions: dict[str, int] = {}
    clicks: dict[str, int] = {}
    for name, value in raw.items():
        text = name.decode() if isinstance(name, bytes) else name
        variant, _, measure = text.rpartition("|")
        target = impressions if measure == IMPRESSIONS else clicks if measure == CLICKS else None
        if target is not None:
            target[variant] = int(value)
    return {
        variant: VariantStats(impressions.get(variant, 0), clicks.get(variant, 0))
        for variant in impressions.keys() | clicks.keys()
    }


def segment_key(stack: str, rule: str) -> str:
    """One hash per contextual rule; fields are `<segment>|<variant>|impressions` and `…|clicks`."""
    return f"{stack_prefix(stack)}:stats:{rule}:segments"


def segment_field(segment: str, variant: str, measure: str) -> str:
    return f"{segment}|{variant}|{measure}"


def parse_segments(raw: Mapping[bytes | str, bytes | str]) -> dict[str, dict[str, VariantStats]]:
    """Segment -> variant -> stats from the HGETALL of a rule's segment hash. Variant and measure
    hold no `|` (Kubernetes names), so a segment value may."""
    counts: dict[tuple[str, str], list[int]] = {}
    for name, value in raw.items():
        text = name.decode() if isinstance(name, bytes) else name
        parts = text.rsplit("|", 2)
        if len(parts) != 3 or parts[2] not in (IMPRESSIONS, CLICKS):
            continue
        pair = counts.setdefault((parts[0], parts[1]), [0, 0])
        pair[0 if parts[2] == IMPRESSIONS else 1] = int(value)
    segments: dict[str, dict[str, VariantStats]] = {}
    for (segment, variant), (impressions, clicks) in counts.items():
        segments.setdefault(segment, {})[variant] = VariantStats(impressions, clicks)
    return segments


def bound_segments(
    per_segment: Mapping[str, Mapping[str, VariantStats]], max_segments: int
) -> dict[str, Mapping[str, VariantStats]]:
    """The `max_segments` most served values kept apart (ties by name), NO_SEGMENT as it is, and the
    rest pooled into OTHER_SEGMENT: what a contextual bandit learns from and a rule's status shows."""

    def impressions(segment: str) -> int:
        return sum(s.impressions for s in per_segment[segment].values())

    reserved = (NO_SEGMENT, OTHER_SEGMENT)
    values = sorted((s for s in per_segment if s not in reserved), key=lambda s: (-impressions(s), s))
    kept, beyond = values[:max_segments], values[max_segments:]
    bounded: dict[str, Mapping[str, VariantStats]] = {value: per_segment[value] for value in kept}
    if NO_SEGMENT in per_segment:
        bounded[NO_SEGMENT] = per_segment[NO_SEGMENT]
    pooled: dict[str, VariantStats] = {}
    for segment in (*beyond, OTHER_SEGMENT):
        for variant, s in per_segment.get(segment, {}).items():
            before = pooled.get(variant, VariantStats())
            pooled[variant] = VariantStats(before.impressions + s.impressions, before.clicks + s.clicks)
    if beyond or OTHER_SEGMENT in per_segment:
        bounded[OTHER_SEGMENT] = pooled
    return bounded


async def read(client: aioredis.Redis, stack: str, rule: str) -> dict[str, VariantStats]:
    return parse(await client.hgetall(key(stack, rule)))
