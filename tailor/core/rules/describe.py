"""Compiled rules and variants in words, for the people who review them.

`tailor diff` says which users a change affects and `tailor simulate` says why a user sees what they
see; both need one way of writing a matcher (`views[category=shoes] ≥ 3 in 24h`), an audience, a
rule's variants with their shares, a variant's content in a line. Names and CEL are in backticks:
readable in a terminal, rendered as code in a pull-request comment.
"""

from __future__ import annotations

import datetime
import html
import re
from collections.abc import Mapping, Sequence
from typing import Final

import orjson

from tailor.core import durations
from tailor.core.rules import ruleset

OPERATORS: Final = {"gte": "≥", "gt": ">", "lte": "≤", "lt": "<", "eq": "=", "ne": "≠"}
STRATEGIES: Final = {
    "weighted": "weighted per session",
    "sticky": "sticky per user",
    "roundRobin": "in turn",
    "bandit": "bandit, learning from clicks",
}
SUMMARY_LENGTH: Final = 72
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def code(text: str) -> str:
    """`text` as a code span; backticks inside it get a longer fence, as CommonMark allows."""
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def names(items: Sequence[str]) -> str:
    return ", ".join(code(item) for item in items)


def number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def percent(value: float) -> str:
    return f"{number(round(value, 2))}%"


def matcher(item: ruleset.Matcher) -> str:
    """`views[category=shoes] ≥ 3 in 24h`; without a value the dimension's top value counts; a trait's
    `traits.churnRisk > 0.7` or `traits.plan = gold`."""
    if item.trait is not None:
        compared = number(item.threshold) if item.value is None else item.value
        return f"traits.{item.trait} {OPERATORS[item.op]} {compared}"
    counted: str = item.feature or ""
    if item.dimension is not None:
        counted += f"[{item.dimension}={item.value}]" if item.value is not None else f"[top {item.dimension}]"
    return f"{counted} {OPERATORS[item.op]} {number(item.threshold)} in {item.window}"


def audience(rule: ruleset.Rule) -> str:
    """The rule's conditions joined by "and"; empty when it matches everyone."""
    parts = [matcher(item) for item in rule.audience]
    if rule.when:
        parts.append(code(rule.when))
    return " and ".join(parts)


def users(rule: ruleset.Rule, *, rollout: bool = True) -> str:
    """Who the rule is for: "users with views[…] ≥ 3 in 24h", "50% of all users", "all users"."""
    matchers = " and ".join(matcher(item) for item in rule.audience)
    if matchers and rule.when:
        who = f"users with {matchers} where {code(rule.when)}"
    elif matchers:
        who = f"users with {matchers}"
    elif rule.when:
        who = f"users where {code(rule.when)}"
    else:
        who = "all users"
    if rollout and rule.rollout_percentage < 100:
        if rule.rollout_percentage <= 0:
            return f"no one (rollout 0% of {who})"
        return f"{percent(rule.rollout_percentage)} of {who} (rollout)"
    return who


def shares(items: Sequence[ruleset.Variant]) -> list[float]:
    """Each variant's share of a weighted draw, in percent (equal shares when all weigh 0), as
    tailor.core.decision.rotation.weighted_pick draws."""
    weights = [max(0.0, item.weight) for item in items]
    total = sum(weights)
    if total <= 0:
        return [100.0 / len(items)] * len(items) if items else []
    return [100.0 * weight / total for weight in weights]


def variants(rule: ruleset.Rule, known: Mapping[str, ruleset.Variant]) -> str:
    """What the rule serves: "`a`", or "one of `a` 75%, `b` 25% (sticky per user)"."""
    chosen = [known[name] for name in rule.variants if name in known]
    if len(rule.variants) == 1 or not chosen:
        return names(rule.variants)
    if rule.strategy in ("weighted", "sticky"):
        listed = ", ".join(
            f"{code(item.name)} {percent(share)}" for item, share in zip(chosen, shares(chosen), strict=True)
        )
    else:
        listed = names([item.name for item in chosen])
    how = STRATEGIES[rule.strategy]
    if rule.context is not None:  # a contextual bandit (docs/content-api.md#contextual-bandit)
        source = rule.context.profile
        if source is not None:
            how += f" per segment: the top {code(source.dimension)} of {source.feature} in {source.window}"
        else:
            how += f" per segment: the trait {code(rule.context.trait or '')}"
    return f"one of {listed} ({how})"


def fallbacks(items: Sequence[ruleset.Variant]) -> str:
    if not items:
        return "nothing (the slot has no fallback variant)"
    if len(items) == 1:
        return f"the fallback {code(items[0].name)}"
    listed = ", ".join(
        f"{code(item.name)} {percent(share)}" for item, share in zip(items, shares(items), strict=True)
    )
    return f"one of the fallbacks {listed} (weighted per session)"


def cap(frequency_cap: ruleset.FrequencyCap | None) -> str:
    if frequency_cap is None:
        return "none"
    parts = []
    if frequency_cap.per_session:
        parts.append(f"{frequency_cap.per_session} per session")
    if frequency_cap.per_user_count and frequency_cap.per_user_window_seconds:
        window = durations.format_seconds(frequency_cap.per_user_window_seconds)
        parts.append(f"{frequency_cap.per_user_count} per user per {window}")
    return ", ".join(parts) or "none"


def moment(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def schedule(variant: ruleset.Variant) -> str:
    if variant.start is None and variant.end is None:
        return "always"
    if variant.end is None:
        return f"from {moment(variant.start)}"
    if variant.start is None:
        return f"until {moment(variant.end)}"
    return f"from {moment(variant.start)} until {moment(variant.end)}"


def content(variant: ruleset.Variant, limit: int = SUMMARY_LENGTH) -> str:
    """One line a reviewer recognizes: `html "New running shoes are in Shop new arrivals"`."""
    kind = variant.content_type
    if kind in ("html", "text"):
        text = variant.body or ""
        if kind == "html":
            text = html.unescape(_TAG.sub(" ", text))
        return f'{kind} "{clip(_SPACE.sub(" ", text).strip(), limit)}"'
    data = variant.data
    if kind == "image" and isinstance(data, dict):
        alt = f' "{clip(str(data["alt"]), limit // 2)}"' if data.get("alt") else ""
        return f"image {data.get('src', '')}{alt}"
    return f"{kind} {clip(orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode(), limit)}"


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
