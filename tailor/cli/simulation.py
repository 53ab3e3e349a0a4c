"""The simulation behind `tailor simulate`: a user's events counted offline, then decided by the
content API's own engine.

The events are counted by tailor.core.profile.offline — the workers' own counting code
(tailor.core.profile.state), with what Redis adds around it kept in memory: dedup by event id,
expiry, the read through the stored fields — as if each arrived when it happened. The decision is
tailor.core.decision: `decide.decide_slot` on an engine loaded by `engine.load`, the code that serves
GET /v1/decide and /v1/explain, with a trace, so every rule's checks can be shown. Offline there is
no per-user decision state: frequency caps are fresh (the first candidate is served), nothing is
dismissed, the bandit has no click statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from tailor.core import durations, events
from tailor.core.decision import decide, engine
from tailor.core.events import occurrence
from tailor.core.profile import Profile, offline
from tailor.core.rules import describe, ruleset

CHECK, CROSS = "✓", "✗"


class UsageError(Exception):
    """A problem with the simulation's input, in words."""


@dataclass(frozen=True)
class SlotOutcome:
    slot: str
    rule: str | None
    variant: str | None
    priority: int | None
    content: Any  # the JSON the content API would serve: {"type", "body" | "data"}, or None
    summary: str  # the content in one line
    reasons: tuple[str, ...]  # why the chosen rule applies (or why the fallback is served)
    trace: list[dict[str, Any]]  # every rule considered, as GET /v1/explain shows it


@dataclass(frozen=True)
class Simulation:
    user: str
    session: str
    at: float
    stack: str
    profile: Profile
    counted: int
    duplicates: int
    after_at: int  # events of the user left out: later than `at`
    slots: list[SlotOutcome] = field(default_factory=list)


def simulate(
    published: ruleset.Ruleset,
    loaded: Sequence[events.Event],
    user: str,
    at: float,
    *,
    session: str | None = None,
    slots: Sequence[str] | None = None,
) -> Simulation:
    """What `user` sees at `at` after `loaded` events (only theirs count), decided by the content
    API's engine exactly as GET /v1/decide would, with fresh caps and no click statistics."""
    features = published.config.features
    mine = [e for e in loaded if e.user == user]
    occurrences = []
    for event in mine:
        when = event.epoch_seconds(at)
        if when <= at:
            occurrences.append(occurrence.from_event(event, when, features.dimensions))
    counted_offline = offline.replay(published.config, occurrences)
    counted = len({o.id for o in occurrences})
    if session is None:
        latest = max(occurrences, key=lambda o: o.at, default=None)
        session = latest.session if latest is not None else ""
    profile = counted_offline.read(user, session or None, at)

    served = engine.load(published)
    names = list(slots) if slots else sorted(served.slots)
    unknown = [name for name in names if name not in served.slots]
    if unknown:
        raise UsageError(f"unknown slot {', '.join(unknown)}; slots: {', '.join(sorted(served.slots))}")
    context = decide.UserContext(profile=profile, session=session)
    cel = decide.CelActivation(served, profile)
    outcomes = []
    for name in names:
        trace: decide.Trace = []
        decision = decide.decide_slot(served, served.slots[name], context, at, {}, cel, trace)
        outcomes.append(_outcome(published, decision, trace))
    return Simulation(
        user=user,
        session=session,
        at=at,
        stack=published.stack,
        profile=profile,
        counted=counted,
        duplicates=len(occurrences) - counted,
        after_at=len(mine) - len(occurrences),
        slots=outcomes,
    )


def _content(variant: engine.LoadedVariant) -> Any:
    """The content exactly as the engine serializes it for /v1/decide."""
    return orjson.loads(orjson.dumps(variant.content))


def _outcome(
    published: ruleset.Ruleset, decision: decide.SlotDecision, trace: list[dict[str, Any]]
) -> SlotOutcome:
    slot = decision.plan.name
    if decision.candidates:
        first = decision.candidates[0]  # with fresh caps, the first candidate is served
        entry = next(item for item in trace if item.get("rule") == first.rule.name)
        reasons = [*checks(entry), rotation_reason(first.rule, entry)]
        variant = published.variants[first.variant.name]
        summary = describe.content(variant)
        content = _content(first.variant)
        return SlotOutcome(
            slot, first.rule.name, variant.name, first.rule.priority, content, summary, tuple(reasons), trace
        )
    fallback = decision.fallback
    if any(entry.get("outcome") == "killSwitch" for entry in trace):
        why = "kill switch on: the slot's fallback"
    elif fallback is not None:
        why = "no rule applies: the slot's fallback"
    else:
        why = "no rule applies and no fallback is live"
    if fallback is None:
        return SlotOutcome(slot, None, None, None, None, "nothing", (why,), trace)
    variant = published.variants[fallback.name]
    return SlotOutcome(
        slot, None, variant.name, None, _content(fallback), describe.content(variant), (why,), trace
    )


def checks(entry: dict[str, Any], *, caps: bool = True) -> list[str]:
    """Each check of one rule's trace entry in words, marked ✓ or ✗ (caps: say they are assumed fresh)."""
    parts = []
    for item in entry.get("audience", ()):
        matcher = ruleset.Matcher.model_validate(
            {k: v for k, v in item.items() if k not in ("actual", "matched")}
        )
        parts.append(
            f"{describe.matcher(matcher)}: {describe.number(item['actual'])} {_mark(item['matched'])}"
        )
    when = entry.get("when")
    if when is not None:
        if when.get("error"):
            parts.append(f"{describe.code(when['expression'])}: error ({when['error']}) {CROSS}")
        else:
            parts.append(
                f"{describe.code(when['expression'])}: {str(when['result']).lower()} {_mark(when['result'])}"
            )
    rollout = entry.get("rollout")
    if rollout is not None and rollout["percentage"] < 100:
        relation = "<" if rollout["in"] else "≥"
        parts.append(
            f"rollout bucket {rollout['bucket']:.2f} {relation} {describe.percent(rollout['percentage'])} "
            f"{_mark(rollout['in'])}"
        )
    traced_caps = entry.get("caps") if caps else None
    if traced_caps is not None:
        limits = []
        if traced_caps["perSession"]["limit"]:
            limits.append(f"{traced_caps['perSession']['limit']} per session")
        if traced_caps["perUser"]["limit"]:
            window = traced_caps["perUser"]["windowSeconds"] or 0
            limits.append(f"{traced_caps['perUser']['limit']} per user per {_duration(window)}")
        if limits:
            parts.append(f"frequency cap {', '.join(limits)}: assumed fresh")
    hidden = entry.get("variants", {}).get("hidden")
    if hidden:
        parts.append(f"not live at this time: {describe.names(hidden)}")
    return parts


def rotation_reason(rule: engine.LoadedRule, entry: dict[str, Any]) -> str:
    eligible = entry.get("variants", {}).get("eligible", [])
    if len(eligible) <= 1:
        return "its only live variant"
    among = describe.names(eligible)
    if rule.strategy == "bandit":
        return f"bandit among {among}: no click statistics offline, so a uniform draw for this user"
    if rule.strategy == "roundRobin":
        return f"in turn among {among}: the first, for a user not served by it yet"
    return f"{describe.STRATEGIES[rule.strategy]} among {among}"


def _mark(ok: Any) -> str:
    return CHECK if ok else CROSS


def _duration(seconds: int) -> str:
    return durations.format_seconds(seconds)
