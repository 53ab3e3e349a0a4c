"""What replacing one compiled ruleset with another changes, and for which users, in words.

`diff(before, after)` compares two Rulesets — the one being served (or compiled from the base branch)
and the one compiled from a change — resource by resource: rules and variants added, removed or
changed (which fields, old → new), and the stack's data-plane settings. Then, per slot, it says whom
the change affects. It reasons from the slot's serving order, the way the content API decides
(tailor_api.decide): enabled rules by priority (then name), the first that matches wins, else the
slot's fallback. It cannot know how many users two audiences share, so it names the rules whose
users are concerned instead of counting them: `tailor simulate` answers for one concrete user.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import orjson

from tailor.core import constants, ruleset
from tailor.core.describe import (
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

Action = Literal["added", "removed", "changed"]
NOUNS = {constants.RULE_KIND: "rule", constants.VARIANT_KIND: "variant", constants.STACK_KIND: "stack"}
LISTED = 3  # rules named in one effect before "…"
# Labels that deployment tools put on what they apply (Helm, Argo CD, Flux, kustomize): present in the
# cluster, absent from Git, so comparing them would flag every variant. Selectors do not use them.
TOOL_LABEL_PREFIXES = (
    "app.kubernetes.io/",
    "helm.sh/",
    "argocd.argoproj.io/",
    "kustomize.toolkit.fluxcd.io/",
    "kustomize.config.k8s.io/",
)


@dataclass(frozen=True)
class FieldChange:
    """One field of one resource, as plain text (renderers decide how to quote it)."""

    field: str
    before: str
    after: str


@dataclass(frozen=True)
class Change:
    kind: str  # PersonalizationRule, ContentVariant or PersonalizationStack
    name: str
    action: Action
    slot: str | None  # None for the stack
    summary: str  # what the resource is (after the change; before it when removed)
    fields: tuple[FieldChange, ...] = ()


@dataclass(frozen=True)
class SlotDiff:
    slot: str
    changes: tuple[Change, ...]
    effects: tuple[str, ...]  # whom the change affects, in words


@dataclass(frozen=True)
class RulesetDiff:
    before: str | None  # the stacks compared (`namespace/name`), None for nothing
    after: str | None
    stack: tuple[Change, ...]  # at most one: the stack's settings
    stack_effects: tuple[str, ...]
    slots: tuple[SlotDiff, ...]

    @property
    def changes(self) -> list[Change]:
        return [*self.stack, *(change for slot in self.slots for change in slot.changes)]

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def counts(self) -> dict[str, int]:
        """{"rules changed": 1, "variants added": 2, …}, in a fixed order, without zeros."""
        found = Counter(
            f"{NOUNS[c.kind]}s {c.action}" for c in self.changes if c.kind != constants.STACK_KIND
        )
        order = [
            f"{noun}s {action}" for noun in ("rule", "variant") for action in ("added", "removed", "changed")
        ]
        return {key: found[key] for key in order if found[key]}

    def headline(self) -> str:
        parts = [f"{n} {key.replace('s ', ' ', 1) if n == 1 else key}" for key, n in self.counts().items()]
        if self.stack:
            parts.append("stack settings changed")
        return ", ".join(parts) or "no changes"

    def to_json(self) -> dict[str, Any]:
        return {"before": self.before, "after": self.after, "changed": self.changed, "counts": self.counts(),
                "stack": [asdict(c) for c in self.stack], "stackEffects": list(self.stack_effects),
                "slots": [asdict(s) for s in self.slots]}  # fmt: skip


# --- fields ------------------------------------------------------------------------------------------


def rule_fields(rule: ruleset.Rule) -> dict[str, str]:
    """The fields a reviewer compares, named as in the manifest. The generation is bookkeeping."""
    return {
        "slot": rule.slot,
        "priority": str(rule.priority),
        "enabled": str(rule.enabled).lower(),
        "audience": " and ".join(matcher(item) for item in rule.audience) or "none",
        "when": rule.when or "none",
        "variants": ", ".join(rule.variants),
        "rotation.strategy": rule.strategy,
        "rotation.seed": rule.seed,
        "frequencyCap": cap(rule.frequency_cap),
        "rollout.percentage": percent(rule.rollout_percentage),
    }


def _content_key(variant: ruleset.Variant) -> bytes:
    return orjson.dumps([variant.content_type, variant.body, variant.data], option=orjson.OPT_SORT_KEYS)


def variant_fields(variant: ruleset.Variant) -> dict[str, str]:
    return {
        "slot": variant.slot,
        "content": content(variant),
        "weight": number(variant.weight),
        "tags": ", ".join(variant.tags) or "none",
        "labels": ", ".join(
            f"{k}={v}" for k, v in sorted(variant.labels.items()) if not k.startswith(TOOL_LABEL_PREFIXES)
        )
        or "none",
        "fallback": str(variant.fallback).lower(),
        "schedule": schedule(variant),
    }


def config_fields(config: ruleset.StackConfig) -> dict[str, str]:
    """The data plane's settings as dotted paths (`features.windows`, `killSwitch`, …)."""
    document = config.model_dump(mode="json", by_alias=True, exclude={"namespace", "name"})
    document["features"]["windows"] = [window["name"] for window in document["features"]["windows"]]
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else key, item)
        elif isinstance(value, list):
            flat[prefix] = ", ".join(str(item) for item in value) or "none"
        elif isinstance(value, bool):
            flat[prefix] = ("on" if value else "off") if prefix == "killSwitch" else str(value).lower()
        else:
            flat[prefix] = str(value)

    walk("", document)
    return flat


def _field_changes(before: Mapping[str, str], after: Mapping[str, str]) -> tuple[FieldChange, ...]:
    return tuple(
        FieldChange(name, before.get(name, "none"), after.get(name, "none"))
        for name in dict.fromkeys([*before, *after])
        if before.get(name) != after.get(name)
    )


def rule_summary(rule: ruleset.Rule, known: Mapping[str, ruleset.Variant]) -> str:
    state = "" if rule.enabled else ", disabled"
    return f"priority {rule.priority}{state}: {users(rule)} see {variants(rule, known)}"


def variant_summary(variant: ruleset.Variant) -> str:
    role = "fallback, " if variant.fallback else ""
    return f"{role}weight {number(variant.weight)}: {content(variant)}"


# --- the diff ----------------------------------------------------------------------------------------


def diff(
    before: ruleset.Ruleset | None, after: ruleset.Ruleset | None, *, compare_config: bool = True
) -> RulesetDiff:
    """Everything `after` changes relative to `before` (None: nothing published). With
    `compare_config=False` (one side's stack is a stand-in) the stack's settings are not compared and
    the kill switch is taken as unchanged."""
    old = _Side.of(before)
    new = _Side.of(after)
    if not compare_config:
        served = before if before is not None else after
        killed = served.config.kill_switch if served is not None else False
        old.killed = new.killed = killed
    changes: list[Change] = []
    for name in sorted(old.rules.keys() | new.rules.keys()):
        b, a = old.rules.get(name), new.rules.get(name)
        if b is None and a is not None:
            changes.append(Change(constants.RULE_KIND, name, "added", a.slot, rule_summary(a, new.variants)))
        elif a is None and b is not None:
            changes.append(
                Change(constants.RULE_KIND, name, "removed", b.slot, rule_summary(b, old.variants))
            )
        elif a is not None and b is not None:
            fields = _field_changes(rule_fields(b), rule_fields(a))
            if fields:
                summary = rule_summary(a, new.variants)
                changes.append(Change(constants.RULE_KIND, name, "changed", a.slot, summary, fields))
    for name in sorted(old.variants.keys() | new.variants.keys()):
        vb, va = old.variants.get(name), new.variants.get(name)
        if vb is None and va is not None:
            changes.append(Change(constants.VARIANT_KIND, name, "added", va.slot, variant_summary(va)))
        elif va is None and vb is not None:
            changes.append(Change(constants.VARIANT_KIND, name, "removed", vb.slot, variant_summary(vb)))
        elif va is not None and vb is not None:
            before_fields, after_fields = variant_fields(vb), variant_fields(va)
            if _content_key(va) != _content_key(vb) and before_fields["content"] == after_fields["content"]:
                # The change is past what the summary shows: tell the versions apart by a digest.
                before_fields["content"] += f" #{hashlib.sha256(_content_key(vb)).hexdigest()[:8]}"
                after_fields["content"] += f" #{hashlib.sha256(_content_key(va)).hexdigest()[:8]}"
            fields = _field_changes(before_fields, after_fields)
            if fields:
                changes.append(
                    Change(constants.VARIANT_KIND, name, "changed", va.slot, variant_summary(va), fields)
                )

    stack_changes: list[Change] = []
    stack_effects: list[str] = []
    if compare_config and before is not None and after is not None:
        fields = _field_changes(config_fields(before.config), config_fields(after.config))
        if fields:
            stack_changes.append(
                Change(constants.STACK_KIND, after.stack, "changed", None, after.stack, fields)
            )
            stack_effects = _stack_effects(before, after)
    elif compare_config and (before is None) != (after is None):
        gone = after is None
        stack = before.stack if before is not None else after.stack if after is not None else ""
        stack_changes.append(Change(constants.STACK_KIND, stack, "removed" if gone else "added", None, stack))

    slots = []
    for slot in sorted(old.slots() | new.slots()):
        in_slot = tuple(change for change in changes if change.slot == slot)
        effects = tuple(_SlotEffects(slot, old, new).all())
        if in_slot or effects:
            slots.append(SlotDiff(slot, in_slot, effects))
    return RulesetDiff(
        before.stack if before is not None else None,
        after.stack if after is not None else None,
        tuple(stack_changes),
        tuple(stack_effects),
        tuple(slots),
    )


def _stack_effects(before: ruleset.Ruleset, after: ruleset.Ruleset) -> list[str]:
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
    """Serving order in a slot: higher priority first, then name (tailor_api.engine.build)."""
    return (-rule.priority, rule.name)


@dataclass
class _Side:
    rules: dict[str, ruleset.Rule]
    variants: dict[str, ruleset.Variant]
    killed: bool

    @classmethod
    def of(cls, published: ruleset.Ruleset | None) -> _Side:
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


class _SlotEffects:
    """The effects on users of one slot, each a sentence."""

    def __init__(self, slot: str, old: _Side, new: _Side) -> None:
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
            return effects + self._variant_effects(serving=[])
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
        return effects + self._variant_effects(serving=self.new_plan)

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

    def _variant_effects(self, serving: Sequence[ruleset.Rule]) -> list[str]:
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
            if serving and served_before and not via:
                effects.append(f"{code(name)} is no longer served: no enabled rule or fallback uses it")
            if _content_key(old) != _content_key(new):
                if via:
                    effects.append(f"users shown {code(name)} ({' or '.join(via)}) now see: {content(new)}")
                else:
                    effects.append(f"{code(name)} changes, but no enabled rule or fallback serves it")
            if (old.start, old.end) != (new.start, new.end):
                effects.append(f"{code(name)} is now served {schedule(new)} (was {schedule(old)})")
        return effects
