"""Frequency caps: how often a rule may be served to one session, and to one user within a window.

Everything about caps is here. A decision reads the counts with the user's state (`count_command`
per rule with a per-user cap; the per-session counts are `c:<rule>` fields of the session hash,
tailor.core.decision.keys) and skips a rule already over a cap (`under_caps`, pure). A capped rule
is then only a candidate: the content API serves it after caps.lua, in one atomic step, checked the
slot's capped candidates again in serving order and counted the first whose caps still hold
(`confirm_command`), so parallel requests can never exceed a cap. caps.lua also remembers the
candidate it served in the session memory, as the API does for uncapped rules. `tailor simulate`
has no per-user state: caps are fresh there.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from importlib import resources
from typing import Any, Final

import orjson

from tailor.core.decision import keys
from tailor.core.decision.engine import LoadedRule, LoadedVariant, SlotPlan

SESSION_COUNT_PREFIX: Final = "c:"  # in the session hash: c:<rule> -> impressions this session
SCRIPT: Final = resources.files("tailor.core.decision").joinpath("caps.lua").read_text()
SCRIPT_SHA: Final = hashlib.sha1(SCRIPT.encode()).hexdigest()

Command = tuple[Any, ...]
# One slot's capped candidates for the confirm: its name and (rule, variant) in serving order.
CappedSlot = tuple[str, Sequence[tuple[LoadedRule, LoadedVariant]]]


def under_caps(rule: LoadedRule, session_count: int, user_count: int, trace: dict[str, Any] | None) -> bool:
    """Whether `rule` is under its caps, given its impressions this session and in its per-user
    window; with a `trace`, what /v1/explain shows of them."""
    session_ok = rule.per_session <= 0 or session_count < rule.per_session
    user_ok = rule.per_user <= 0 or user_count < rule.per_user
    if trace is not None:
        trace["caps"] = {
            "perSession": {"limit": rule.per_session or None, "count": session_count, "ok": session_ok},
            "perUser": {
                "limit": rule.per_user or None,
                "windowSeconds": rule.per_user_window_seconds or None,
                "count": user_count,
                "ok": user_ok,
            },
        }
    return session_ok and user_ok


def user_capped(plans: Sequence[SlotPlan]) -> list[LoadedRule]:
    """The rules of `plans` with a per-user cap, whose windows are read with the user's state."""
    return [rule for plan in plans for rule in plan.capped_rules if rule.per_user > 0]


def count_command(stack: str, user: str, rule: LoadedRule, now: float) -> Command:
    """The read of `rule`'s impressions to `user` within its per-user window (an integer reply)."""
    since = now - rule.per_user_window_seconds
    return ("ZCOUNT", keys.cap_key(stack, user, rule.name), f"({since}", "+inf")


def confirm_command(
    stack: str, user: str, session: str, slots: Sequence[CappedSlot], now: float, session_ttl: int
) -> Command:
    """The caps.lua call that serves, per slot, the first candidate whose caps hold and counts it.
    Its reply: per slot, the 1-based index of the candidate served, or 0 for none."""
    session_key = keys.session_key(stack, user, session)
    cap_keys = [session_key]
    plan = []
    for slot, candidates in slots:
        entries = []
        for rule, variant in candidates:
            key_index = 0
            if rule.per_user > 0:
                cap_keys.append(keys.cap_key(stack, user, rule.name))
                key_index = len(cap_keys)
            entries.append(
                [rule.name, rule.per_session, rule.per_user, rule.per_user_window_seconds, key_index,
                 keys.memory_value(rule.name, variant.name), f"{now:.6f}:{os.urandom(4).hex()}"]
            )  # fmt: skip
        plan.append([keys.memory_field(slot), entries])
    return ("EVALSHA", SCRIPT_SHA, len(cap_keys), *cap_keys, now, session_ttl, orjson.dumps(plan))


def with_source(command: Command) -> Command:
    """The same call as EVAL with the script's source, for a Redis that has not cached it yet."""
    return ("EVAL", SCRIPT, *command[2:])
