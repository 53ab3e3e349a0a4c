"""One writer for each stack's status.

Two reconcilers report on a stack (its children's readiness, and the ruleset publisher), and status
conditions are one list: written by read-modify-write from two places they would overwrite each other.
So both report here; this book keeps the stack's status in memory (seeded from what the API showed),
derives Ready from the other conditions, and patches only when something changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from tailor.core import constants
from tailor_operator import conditions, kube
from tailor_operator import constants as names

READY_INPUTS = (
    names.RECONCILED,
    # Before the components: pods that cannot authenticate are unready too, and the cause is here.
    names.KAFKA_CONNECTED,
    names.WORKERS_READY,
    names.CONTENT_API_READY,
    names.COLLECTOR_READY,
    names.REDIS_READY,
    names.TOPICS_READY,
    names.RULESET_PUBLISHED,
)


def ready_condition(current: list[conditions.Condition], generation: int) -> conditions.Condition:
    """Ready is True when every component and the ruleset are; else it names the first that is not."""
    for type_ in READY_INPUTS:
        condition = conditions.find(current, type_)
        if condition is None or condition.get("status") == "True":
            continue
        # Unknown: the operator could not tell from where it runs (kafka_probe.py); the pods can.
        if type_ == names.KAFKA_CONNECTED and condition.get("status") == "Unknown":
            continue
        return conditions.make(
            names.READY,
            False,
            str(condition.get("reason") or type_),
            f"{type_}: {condition.get('message', '')}",
            generation,
        )
    missing = [t for t in (names.WORKERS_READY, names.CONTENT_API_READY, names.TOPICS_READY,
                           names.RULESET_PUBLISHED)
               if conditions.find(current, t) is None]  # fmt: skip
    if missing:
        return conditions.make(
            names.READY, None, "Reconciling", f"waiting for {', '.join(missing)}", generation
        )
    return conditions.make(
        names.READY, True, "Ready", "all components are ready and the ruleset is published", generation
    )


class StackStatusBook:
    def __init__(self, client: kube.Kube) -> None:
        self._kube = client
        self._statuses: dict[tuple[str, str], dict[str, Any]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def forget(self, namespace: str, name: str) -> None:
        self._statuses.pop((namespace, name), None)

    def has_condition(self, namespace: str, name: str, type_: str) -> bool:
        status = self._statuses.get((namespace, name), {})
        return conditions.find(status.get("conditions") or [], type_) is not None

    def seed(self, namespace: str, name: str, observed: Mapping[str, Any]) -> None:
        """Start from the status the API shows (after an operator restart), once."""
        self._statuses.setdefault((namespace, name), dict(observed))

    async def update(
        self,
        namespace: str,
        name: str,
        generation: int,
        updates: Iterable[conditions.Condition] = (),
        fields: Mapping[str, Any] | None = None,
        remove: Iterable[str] = (),
    ) -> bool:
        """Merge conditions and fields into the stack's status; True if a patch was sent."""
        key = (namespace, name)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            before = self._statuses.get(key, {})
            current = conditions.merge(before.get("conditions"), updates)
            for type_ in remove:
                current = conditions.remove(current, type_)
            current = conditions.merge(current, [ready_condition(current, generation)])
            after = {**before, **(fields or {}), "conditions": current, "observedGeneration": generation}
            unchanged = conditions.same(before.get("conditions"), current) and all(
                before.get(k) == v for k, v in after.items() if k != "conditions"
            )
            if unchanged:
                return False
            await self._kube.patch_status(constants.STACK_KIND, namespace, name, after)
            self._statuses[key] = after
            return True
