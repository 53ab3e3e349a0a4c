"""What replacing one compiled ruleset with another changes: the data behind `tailor diff`.

`diff(before, after)` compares two Rulesets — the one being served (or compiled from the base branch)
and the one compiled from a change — resource by resource: rules and variants added, removed or
changed (which fields, old → new, as plain text), and the stack's data-plane settings; then, per slot,
whom the change affects, in words (tailor.core.rules.ruleeffects).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from tailor.core import constants
from tailor.core.rules import ruleeffects, ruleset
from tailor.core.rules.describe import (
    cap,
    content,
    matcher,
    number,
    percent,
    schedule,
    users,
    variants,
)

Action = Literal["added", "removed", "changed"]
NOUNS = {constants.RULE_KIND: "rule", constants.VARIANT_KIND: "variant", constants.STACK_KIND: "stack"}
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
    old = ruleeffects.Side.of(before)
    new = ruleeffects.Side.of(after)
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
            old_key, new_key = ruleeffects.content_key(vb), ruleeffects.content_key(va)
            if old_key != new_key and before_fields["content"] == after_fields["content"]:
                # The change is past what the summary shows: tell the versions apart by a digest.
                before_fields["content"] += f" #{hashlib.sha256(old_key).hexdigest()[:8]}"
                after_fields["content"] += f" #{hashlib.sha256(new_key).hexdigest()[:8]}"
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
            stack_effects = ruleeffects.stack_effects(before, after)
    elif compare_config and (before is None) != (after is None):
        gone = after is None
        stack = before.stack if before is not None else after.stack if after is not None else ""
        stack_changes.append(Change(constants.STACK_KIND, stack, "removed" if gone else "added", None, stack))

    slots = []
    for slot in sorted(old.slots() | new.slots()):
        in_slot = tuple(change for change in changes if change.slot == slot)
        effects = tuple(ruleeffects.SlotEffects(slot, old, new).all())
        if in_slot or effects:
            slots.append(SlotDiff(slot, in_slot, effects))
    return RulesetDiff(
        before.stack if before is not None else None,
        after.stack if after is not None else None,
        tuple(stack_changes),
        tuple(stack_effects),
        tuple(slots),
    )
