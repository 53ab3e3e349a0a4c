"""Live per-variant stats (impressions, clicks, CTR) copied from Redis into each rule's status."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import redis.asyncio as aioredis

from tailor.core import constants, stats
from tailor_operator import kube, observed


def status_stats(per_variant: Mapping[str, stats.VariantStats]) -> dict[str, dict[str, Any]]:
    return {
        variant: {"impressions": s.impressions, "clicks": s.clicks, "ctr": round(s.ctr, 6)}
        for variant, s in sorted(per_variant.items())
    }


async def copy_stats(
    client: kube.Kube, redis_client: aioredis.Redis, stack: str, rules: Iterable[observed.Observed]
) -> int:
    """Patch `status.stats` of each rule whose numbers changed; the number of rules patched."""
    rules = [item for item in rules if item.source.kind == constants.RULE_KIND]
    if not rules:
        return 0
    async with redis_client.pipeline(transaction=False) as pipe:
        for item in rules:
            pipe.hgetall(stats.key(stack, item.source.name))
        raw = await pipe.execute()
    patched = 0
    for item, hash_ in zip(rules, raw, strict=True):
        fresh = status_stats(stats.parse(hash_))
        if fresh and fresh != (item.status.get("stats") or {}):
            await client.patch_status(
                item.source.kind, item.source.namespace, item.source.name, {"stats": fresh}
            )
            patched += 1
    return patched
