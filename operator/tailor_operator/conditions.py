"""status.conditions as Kubernetes API conventions want them, computed without touching the API."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Condition = dict[str, Any]


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make(type_: str, status: bool | None, reason: str, message: str, generation: int) -> Condition:
    return {
        "type": type_,
        "status": "Unknown" if status is None else ("True" if status else "False"),
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def merge(existing: Sequence[Mapping[str, Any]] | None, updates: Iterable[Condition]) -> list[Condition]:
    """`existing` with `updates` replacing conditions of the same type. lastTransitionTime moves only
    when a condition's status changes; other condition types are kept as they are."""
    result = [dict(condition) for condition in existing or ()]
    index = {condition.get("type"): position for position, condition in enumerate(result)}
    for update in updates:
        position = index.get(update["type"])
        if position is None:
            index[update["type"]] = len(result)
            result.append({**update, "lastTransitionTime": now()})
            continue
        old = result[position]
        changed = old.get("status") != update["status"]
        result[position] = {
            **update,
            "lastTransitionTime": now()
            if changed or "lastTransitionTime" not in old
            else old["lastTransitionTime"],
        }
    return result


def find(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    return next((condition for condition in conditions or () if condition.get("type") == type_), None)


def same(left: Sequence[Mapping[str, Any]] | None, right: Sequence[Mapping[str, Any]] | None) -> bool:
    """Equal but for lastTransitionTime: whether a status patch would say anything new."""

    def strip(conditions: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
        return sorted(
            ({k: v for k, v in c.items() if k != "lastTransitionTime"} for c in conditions or ()),
            key=lambda c: str(c.get("type")),
        )

    return strip(left) == strip(right)


def remove(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> list[Condition]:
    return [dict(condition) for condition in conditions or () if condition.get("type") != type_]
