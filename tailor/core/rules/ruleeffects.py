"""Whom a ruleset change affects, in words: the "who is affected" half of `tailor diff`.

tailor.core.rules.rulediff finds what changed; this module says, per slot, what users see differently. It
reasons from the slot's serving order, the way the content API decides (tailor.core.decision.decide): enabled
rules by priority (then name), the first whose audience, `when` and rollout admit the user wins, else
the slot's fallback. Audiences are not sets it can intersect, so it names the rules involved rather
than counting users; `tailor simulate` answers for one concrete user.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from tailor.core.rules import ruleset
from tailor.core.rules.describe import (
    OPERATORS,
    cap,
    code,
    content,
    fallbacks,
    matcher,
    names,
    number,
    percent,
    schedule,
    users,
    variants,
)

LISTED = 3  # rules named in one effect before "…"


def content_key(variant: ruleset.Variant) -> bytes:
    """What the variant serves, for comparing two versions of it."""
    return orjson.dumps([variant.content_type, variant.body, variant.data], option=orjson.OPT_SORT_KEYS)


def stack_effects(before: ruleset.Ruleset, after: ruleset.Ruleset) -> list[str]:
    effects = []
    if after.config.kill_switch and not before.config.kill_switch:
        effects.append(
            "kill switch ON: every slot serves only its fallback, to everyone, until it is off again"
        )
    elif before.config.kill_switch and not after.config.kill_switch:
        effects.append("kill switch OFF: rules are served again")
    old_features, new_features = before.config.features, after.config.features
    old_windows = [w.name for w in old_features.windows]
    added = [w.name for w in new_features.windows if w.name not in old_windows]
    removed = [name for name in old_windows if name not in {w.name for w in new_features.windows}]
    if added:
        effects.append(
            f"new window(s) {names(added)}: until workers have counted for that long, "
            "they may hold fewer events than happened"
        )
    if removed:
        effects.append(f"window(s) {names(removed)} are no longer counted")
    added = [d for d in new_features.dimensions if d not in old_features.dimensions]
    removed = [d for d in old_features.dimensions if d not in new_features.dimensions]
    if added:
        effects.append(f"workers start counting dimension(s) {names(added)}: their counts start at zero")
    if removed:
        effects.append(f"workers stop counting dimension(s) {names(removed)}")
    return effects


# For a threshold change of one matcher: the comparison that holds between the old and new thresholds.
_BETWEEN = {"gte": ("≥", "<"), "gt": (">", "≤"), "lte": ("≤", ">"), "lt": ("<", "≥")}


def audience_delta(old: ruleset.Rule, new: ruleset.Rule) -> tuple[str | None, str | None]:
    """(newly matched, no longer matched) users, in words, when the audiences differ only in one
    matcher's threshold (the common edit: "3 shoe views" becomes "2"); (None, None) otherwise."""
    if old.when != new.when or len(old.audience) != len(new.audience):
        return None, None
    differing = [(a, b) for a, b in zip(old.audience, new.audience, strict=True) if a != b]
    if len(differing) != 1:
        return None, None
    before, after = differing[0]
    if before.model_copy(update={"threshold": after.threshold}) != after or after.op not in _BETWEEN:
        return None, None
    lower_bound, upper_bound = sorted((before.threshold, after.threshold))
    inside, outside = _BETWEEN[after.op]
    # For ≥/>, a lower threshold lets more users in; for ≤/<, a higher one does.
    first, second = (lower_bound, upper_bound) if after.op in ("gte", "gt") else (upper_bound, lower_bound)
    band = matcher(after).replace(
        f"{OPERATORS[after.op]} {number(after.threshold)}",
        f"{inside} {number(first)} but {outside} {number(second)}",
    )
    others = [matcher(m) for m in new.audience if m != after]
    text = " and ".join([band, *others])
    widened = (after.threshold < before.threshold) == (after.op in ("gte", "gt"))
    return (text, None) if widened else (None, text)


def _rank(rule: ruleset.Rule) -> tuple[int, str]:
    """Serving order in a slot: higher priority first, then name (tailor.core.decision.engine.load)."""
    return (-rule.priority, rule.name)


@dataclass
class Side:
    rules: dict[str, ruleset.Rule]
    variants: dict[str, ruleset.Variant]
    killed: bool

    @classmethod
    def of(cls, published: ruleset.Ruleset | None) -> Side:
        if published is None:
            return cls({}, {}, False)
        return cls(
            {r.name: r for r in published.rules}, dict(published.variants), published.config.kill_switch
        )

    def slots(self) -> set[str]:
        return {r.slot for r in self.rules.values()} | {v.slot for v in self.variants.values()}

    def plan(self, slot: str) -> list[ruleset.Rule]:
        return sorted((r for r in self.rules.values() if r.slot == slot and r.enabled), key=_rank)

    def fallbacks(self, slot: str) -> list[ruleset.Variant]:
        return sorted(
            (v for v in self.variants.values() if v.slot == slot and v.fallback), key=lambda v: v.name
        )


def _listed(rules: Sequence[ruleset.Rule]) -> str:
    shown = names([r.name for r in rules[:LISTED]])
    return shown + (", …" if len(rules) > LISTED else "")


class SlotEffects:
    """The effects on users of one slot, each a sentence."""

    def __init__(self, slot: str, old: Side, new: Side) -> None:
        self.slot, self.old, self.new = slot, old, new
        self.old_plan, self.new_plan = old.plan(slot), new.plan(slot)
        self.old_fallback = fallbacks(old.fallbacks(slot)) if slot in old.slots() else "nothing (a new slot)"
        self.new_fallback = fallbacks(new.fallbacks(slot))

    def all(self) -> list[str]:
        effects: list[str] = []
        if self.new.killed:
            if not self.old.killed and self.old_plan:
                effects.append(
                    f"kill switch on: everyone sees {self.new_fallback}; "
                    f"no rule of this slot is served ({_listed(self.old_plan)})"
                )
            elif self.old_fallback != self.new_fallback:
                effects.append(
                    f"everyone (kill switch on) now sees {self.new_fallback} instead of {self.old_fallback}"
                )
            return effects + self._variant_effects(serving=[], killed=True)
        if self.old.killed:
            served = "; ".join(f"{users(r)} see {variants(r, self.new.variants)}" for r in self.new_plan)
            if served:
                effects.append(f"kill switch off, rules are served again: {served}")
        else:
            old_by = {r.name: r for r in self.old_plan}
            new_names = {r.name for r in self.new_plan}
            for rule in self.new_plan:
                previous = old_by.get(rule.name)
                if previous is None:
                    effects.append(self._arrived(rule))
                else:
                    effects.extend(self._changed(previous, rule))
            effects.extend(self._left(rule) for rule in self.old_plan if rule.name not in new_names)
            effects.extend(self._order_flips())
        if self.old_fallback != self.new_fallback:
            effects.append(
                f"users no rule matches now see {self.new_fallback} instead of {self.old_fallback}"
            )
        return effects + self._variant_effects(serving=self.new_plan, killed=False)

    def _next(self, rules: Sequence[ruleset.Rule]) -> str:
        if rules:
            return f"the next matching rule ({_listed(rules)}) or {self.new_fallback}"
        return self.new_fallback

    def _instead(self, rule: ruleset.Rule) -> str:
        """What users a rule newly reaches got before: the old plan below it, then the fallback."""
        lower = [r for r in self.old_plan if _rank(r) > _rank(rule) and r.name != rule.name]
        if not lower:
            return f"instead of {self.old_fallback}"
        gave = "; ".join(f"{code(r.name)}: {variants(r, self.old.variants)}" for r in lower[:LISTED])
        return f"instead of what lower-priority rules gave them ({gave}) or {self.old_fallback}"

    def _retargeted(self, old: ruleset.Rule, new: ruleset.Rule) -> list[str]:
        served_before, served_after = variants(old, self.old.variants), variants(new, self.new.variants)
        lower = [r for r in self.new_plan if _rank(r) > _rank(new)]
        widened, narrowed = audience_delta(old, new)
        if widened is None and narrowed is None:
            return [
                f"rule {code(new.name)} now targets {users(new)} (was {users(old)}): users it newly matches "
                f"see {served_after} {self._instead(new)}; users it no longer matches get {self._next(lower)}"
            ]
        share = f"{percent(new.rollout_percentage)} of " if new.rollout_percentage < 100 else ""
        effects = []
        if widened is not None:
            effects.append(
                f"{share}users with {widened} now also see {served_after} (audience of {code(new.name)} "
                f"widened), {self._instead(new)}"
            )
        if narrowed is not None:
            effects.append(
                f"{share}users with {narrowed} no longer see {served_before} (audience of {code(new.name)} "
                f"narrowed); they get {self._next(lower)}"
            )
        return effects

    def _arrived(self, rule: ruleset.Rule) -> str:
        earlier = self.old.rules.get(rule.name)
        if earlier is None:
            how = f"new rule {code(rule.name)}"
        elif earlier.slot != self.slot:
            how = f"rule {code(rule.name)}, moved here from slot {code(earlier.slot)}"
        else:
            how = f"rule {code(rule.name)}, now enabled"
        text = f"{users(rule)} now see {variants(rule, self.new.variants)} ({how}, priority {rule.priority})"
        text += f", {self._instead(rule)}"
        higher = [r for r in self.new_plan if _rank(r) < _rank(rule)]
        if higher:
            text += f"; those matched first by {_listed(higher)} are not affected"
        return text

    def _left(self, rule: ruleset.Rule) -> str:
        now = self.new.rules.get(rule.name)
        if now is None:
            how = "removed"
        elif now.slot != self.slot:
            how = f"moved to slot {code(now.slot)}"
        else:
            how = "disabled"
        lower = [r for r in self.new_plan if _rank(r) > _rank(rule)]
        return (
            f"{users(rule)} no longer see {variants(rule, self.old.variants)} "
            f"(rule {code(rule.name)} {how}); they get {self._next(lower)}"
        )

    def _changed(self, old: ruleset.Rule, new: ruleset.Rule) -> list[str]:
        effects = []
        served_before, served_after = variants(old, self.old.variants), variants(new, self.new.variants)
        if (old.audience, old.when) != (new.audience, new.when):
            effects.extend(self._retargeted(old, new))
        if served_before != served_after:
            effects.append(f"{users(new)} now see {served_after} instead of {served_before}")
        elif old.seed != new.seed and len(new.variants) > 1 and new.strategy != "roundRobin":
            effects.append(
                f"{users(new)} are drawn again among {names(new.variants)} (rotation seed changed)"
            )
        if old.rollout_percentage != new.rollout_percentage or (
            old.seed != new.seed and new.rollout_percentage < 100
        ):
            effects.append(self._rollout(old, new))
        if old.frequency_cap != new.frequency_cap:
            lower = [r for r in self.new_plan if _rank(r) > _rank(new)]
            was = cap(old.frequency_cap)
            effects.append(
                f"rule {code(new.name)} is now shown at most {cap(new.frequency_cap)} (was {was}); "
                f"past the cap its users get {self._next(lower)}"
                if new.frequency_cap is not None
                else f"rule {code(new.name)} is no longer capped (was {was})"
            )
        return effects

    def _rollout(self, old: ruleset.Rule, new: ruleset.Rule) -> str:
        who, what = users(new, rollout=False), variants(new, self.new.variants)
        before, after = old.rollout_percentage, new.rollout_percentage
        name = code(new.name)
        if old.seed != new.seed:
            return (
                f"rollout of {name} is drawn again (seed changed): a different {percent(after)} of {who} "
                f"see {what} (was {percent(before)})"
            )
        if after > before:
            return (
                f"rollout of {name} widens from {percent(before)} to {percent(after)}: another "
                f"{percent(after - before)} of {who} (rollout buckets {number(before)} to {number(after)}) "
                f"now see {what}; users already in keep it"
            )
        lower = [r for r in self.new_plan if _rank(r) > _rank(new)]
        return (
            f"rollout of {name} narrows from {percent(before)} to {percent(after)}: "
            f"{percent(before - after)} of {who} (rollout buckets {number(after)} to {number(before)}) "
            f"no longer see {what} and get {self._next(lower)}"
        )

    def _order_flips(self) -> list[str]:
        """Pairs of rules, in both plans, whose order a priority change swapped."""
        old_position = {r.name: i for i, r in enumerate(self.old_plan)}
        common = [r for r in self.new_plan if r.name in old_position]
        old_by = {r.name: r for r in self.old_plan}
        effects = []
        for i, winner in enumerate(common):
            for loser in common[i + 1 :]:
                if old_position[winner.name] > old_position[loser.name]:
                    was = old_by[loser.name]
                    effects.append(
                        f"users matching both {code(winner.name)} and {code(loser.name)} now see "
                        f"{variants(winner, self.new.variants)} from {code(winner.name)} "
                        f"(priority {winner.priority}) instead of {variants(was, self.old.variants)} "
                        f"from {code(loser.name)} (priority {was.priority})"
                    )
        return effects

    def _variant_effects(self, serving: Sequence[ruleset.Rule], *, killed: bool) -> list[str]:
        effects = []
        for name in sorted(self.old.variants.keys() | self.new.variants.keys()):
            old, new = self.old.variants.get(name), self.new.variants.get(name)
            if new is None or new.slot != self.slot:
                continue
            servers = [r.name for r in serving if name in r.variants]
            via = ([f"by {names(servers)}"] if servers else []) + (
                ["as the fallback"] if new.fallback else []
            )
            if old is None or old.slot != self.slot:
                if not via:
                    effects.append(f"{code(name)} is new here, but no enabled rule or fallback serves it yet")
                continue
            served_before = old.fallback or any(name in r.variants for r in self.old_plan)
            if not killed and served_before and not via:
                effects.append(f"{code(name)} is no longer served: no enabled rule or fallback uses it")
            if content_key(old) != content_key(new):
                if via:
                    effects.append(f"users shown {code(name)} ({' or '.join(via)}) now see: {content(new)}")
                else:
                    effects.append(f"{code(name)} changes, but no enabled rule or fallback serves it")
            if (old.start, old.end) != (new.start, new.end):
                effects.append(f"{code(name)} is now served {schedule(new)} (was {schedule(old)})")
        return effects
