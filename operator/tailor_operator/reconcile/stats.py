"""Live per-variant stats (impressions, clicks, CTR) copied from Redis into each rule's status; for a
contextual bandit rule (spec.rotation.context) also per segment, bounded as the bandit bounds them
(tailor.core.stats.bound_segments: the maxSegments most served, the rest pooled into "(other)")."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import redis.asyncio as aioredis

from tailor.core import constants, stats
from tailor_operator import kube, observed

DEFAULT_MAX_SEGMENTS = 8  # the CRD's default for spec.rotation.context.maxSegments


def status_stats(per_variant: Mapping[str, stats.VariantStats]) -> dict[str, dict[str, Any]]:
    return {
        variant: {"impressions": s.impressions, "clicks": s.clicks, "ctr": round(s.ctr, 6)}
        for variant, s in sorted(per_variant.items())
    }


def _max_segments(item: observed.Observed) -> int | None:
    """The rule's rotation.context.maxSegments (defaulted by the API server), None without a context."""
    rotation = item.source.spec.get("rotation") or {}
    context = rotation.get("context") if rotation.get("strategy") == "bandit" else None
    return int(context.get("maxSegments") or DEFAULT_MAX_SEGMENTS) if isinstance(context, dict) else None


def status_segment_stats(
    per_segment: Mapping[str, Mapping[str, stats.VariantStats]], max_segments: int
) -> dict[str, dict[str, dict[str, Any]]]:
    bounded = stats.bound_segments(per_segment, max_segments)
    return {segment: status_stats(per_variant) for segment, per_variant in sorted(bounded.items())}


async def copy_stats(
    client: kube.Kube, redis_client: aioredis.Redis, stack: str, rules: Iterable[observed.Observed]
) -> int:
    """Patch `status.stats` (and `status.segmentStats`) of each rule whose numbers changed; the number
    of rules patched."""
    rules = [item for item in rules if item.source.kind == constants.RULE_KIND]
    if not rules:
        return 0
    contextual = [(item, m) for item in rules if (m := _max_segments(item)) is not None]
    async with redis_client.pipeline(transaction=False) as pipe:
        for item in rules:
            pipe.hgetall(stats.key(stack, item.source.name))
        for item, _ in contextual:
            pipe.hgetall(stats.segment_key(stack, item.source.name))
        raw = await pipe.execute()
    fresh: dict[str, dict[str, Any]] = {}
    for item, hash_ in zip(rules, raw[: len(rules)], strict=True):
        per_variant = status_stats(stats.parse(hash_))
        if per_variant:
            fresh[item.source.name] = {"stats": per_variant}
    for (item, max_segments), hash_ in zip(contextual, raw[len(rules) :], strict=True):
        per_segment = status_segment_stats(stats.parse_segments(hash_), max_segments)
        if per_segment:
            fresh.setdefault(item.source.name, {})["segmentStats"] = per_segment
    patched = 0
    for item in rules:
        patch = fresh.get(item.source.name)
        if not patch or all(value == (item.status.get(key) or {}) for key, value in patch.items()):
            continue
        if "segmentStats" in patch:  # a merge patch: segments pooled since are removed with a null
            gone = (item.status.get("segmentStats") or {}).keys() - patch["segmentStats"].keys()
            patch = {**patch, "segmentStats": {**patch["segmentStats"], **dict.fromkeys(gone)}}
        await client.patch_status(item.source.kind, item.source.namespace, item.source.name, patch)
        patched += 1
    return patched
