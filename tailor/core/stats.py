"""Live per-variant performance of each rule: impressions and clicks, kept in Redis.

The content API adds to them (batched, off the hot path) and feeds its bandit from them; the operator
copies them into each PersonalizationRule's status so that `kubectl get prule` shows how rules do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis

from tailor.core.rules.versions import stack_prefix

IMPRESSIONS = "impressions"
CLICKS = "clicks"


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


async def read(client: aioredis.Redis, stack: str, rule: str) -> dict[str, VariantStats]:
    return parse(await client.hgetall(key(stack, rule)))
