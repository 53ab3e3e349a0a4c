"""A shop whose segments prefer different variants, served by the content API's own decision code.

Shared by tests/unit/test_decision_contextual.py and bench/bandit_curve.py (which puts tests/ on its
path, as bench/decide.py does). Each impression: a user drawn from a segment (by traffic share) with a
profile whose top category is the segment's, one `decide.decide_slot` on an engine loaded from a
published-style Ruleset, a click drawn from the segment's hidden click-through rate for the variant
served. The bandit sees the counts as the API does: in batches (the API refreshes them every 2 s),
here every `refresh` impressions. Three policies in the same run: the contextual bandit
(`rotation.context`), the plain bandit, and the per-segment oracle that always serves each segment's
best variant.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import sample

from tailor.core import stats
from tailor.core.decision import contextual, decide, engine
from tailor.core.profile import Profile
from tailor.core.rules import ruleset

Policy = Literal["contextual", "plain", "oracle"]
POLICIES: tuple[Policy, ...] = ("contextual", "plain", "oracle")
VARIANTS = ("hero-a", "hero-b", "hero-c")


@dataclass(frozen=True, slots=True)
class Segment:
    category: str | None  # the top category of its users' profiles; None: no views yet
    share: float  # of the traffic
    ctr: Mapping[str, float]  # hidden click-through rate per variant


# Each segment has its own best variant; the best for everyone at once (hero-a) is far from the best
# per segment: a plain bandit can reach 0.049, the oracle 0.078.
SHOP: tuple[Segment, ...] = (
    Segment("shoes", 0.4, {"hero-a": 0.08, "hero-b": 0.03, "hero-c": 0.02}),
    Segment("bags", 0.3, {"hero-a": 0.02, "hero-b": 0.09, "hero-c": 0.03}),
    Segment("jewellery", 0.2, {"hero-a": 0.03, "hero-b": 0.02, "hero-c": 0.07}),
    Segment(None, 0.1, {"hero-a": 0.05, "hero-b": 0.04, "hero-c": 0.03}),
)


def expected_ctr(segments: Sequence[Segment], policy: Policy) -> float:
    """The click-through rate a policy converges to: the oracle's, or the best single variant's."""
    if policy == "oracle" or policy == "contextual":
        return sum(s.share * max(s.ctr.values()) for s in segments)
    return max(sum(s.share * s.ctr[v] for s in segments) for v in VARIANTS)


def build_engine(context: bool, max_segments: int = 8, prior_weight: float = 20.0) -> engine.Engine:
    bandit_context = (
        ruleset.BanditContext(
            profile=ruleset.ProfileSegment(feature="views", dimension="category", window="24h"),
            max_segments=max_segments,
            prior_weight=prior_weight,
        )
        if context
        else None
    )
    published = sample.build(
        [sample.html_variant(name, "hero") for name in VARIANTS],
        [
            ruleset.Rule(
                name="hero-bandit", slot="hero", variants=VARIANTS, strategy="bandit", context=bandit_context
            )
        ],
    )
    return engine.load(published)


def profile_of(user: str, category: str | None) -> Profile:
    if category is None:
        return Profile(user=user)
    return Profile(
        user=user, counts={"24h": {"views": 4, f"views|category|{category}": 3, "views|category|hats": 1}}
    )


@dataclass(frozen=True, slots=True)
class Run:
    policy: Policy
    seed: int
    expected: tuple[float, ...]  # per impression: the hidden CTR of the variant served
    clicks: tuple[int, ...]  # per impression: 1 if clicked

    def ctr_between(self, start: int, end: int) -> float:
        """The mean hidden CTR of what was served in impressions [start, end)."""
        part = self.expected[start:end]
        return sum(part) / len(part)

    def regret(self, oracle_ctr: Sequence[float]) -> float:
        """Expected clicks lost against the per-segment oracle, summed over the run."""
        return sum(best - got for best, got in zip(oracle_ctr, self.expected, strict=True))


def run(
    policy: Policy,
    seed: int,
    impressions: int = 5000,
    refresh: int = 50,
    segments: Sequence[Segment] = SHOP,
    max_segments: int = 8,
) -> tuple[Run, list[float]]:
    """One policy for `impressions` impressions; also the oracle's CTR per impression (for regret).
    The traffic (users, segments) and the clicks' random numbers depend on `seed` only, so the three
    policies meet the same visitors."""
    built = build_engine(policy == "contextual", max_segments)
    plan = built.slots["hero"]
    traffic, clicker = random.Random(seed), random.Random(seed * 7919 + 1)
    weights = [s.share for s in segments]
    shown: Counter[tuple[str, str]] = Counter()  # (segment, variant)
    clicked: Counter[tuple[str, str]] = Counter()
    bandit: dict[str, dict[str, stats.VariantStats]] = {}
    known: dict[str, contextual.Segments] = {}
    expected: list[float] = []
    clicks: list[int] = []
    best: list[float] = []
    for i in range(impressions):
        if i % refresh == 0:  # what the API's refresh reads: global counts, and per segment
            bandit, known = _snapshot(shown, clicked, max_segments)
        segment = segments[traffic.choices(range(len(segments)), weights)[0]]
        user = f"u{seed}-{i}"
        if policy == "oracle":
            variant, label = max(segment.ctr, key=lambda v: segment.ctr[v]), ""
        else:
            context = decide.UserContext(profile=profile_of(user, segment.category), session=f"s{i}")
            cel = decide.CelActivation(built, context.profile)
            decision = decide.decide_slot(built, plan, context, 0.0, bandit, cel, segments=known)
            candidate = decision.candidates[0]
            variant, label = candidate.variant.name, candidate.segment or ""
        rate = segment.ctr[variant]
        click = int(clicker.random() < rate)
        shown[(label, variant)] += 1
        clicked[(label, variant)] += click
        expected.append(rate)
        clicks.append(click)
        best.append(max(segment.ctr.values()))
    return Run(policy, seed, tuple(expected), tuple(clicks)), best


def _snapshot(
    shown: Counter[tuple[str, str]], clicked: Counter[tuple[str, str]], max_segments: int
) -> tuple[dict[str, dict[str, stats.VariantStats]], dict[str, contextual.Segments]]:
    everyone: dict[str, stats.VariantStats] = {}
    per_segment: dict[str, dict[str, stats.VariantStats]] = {}
    for (label, variant), n in shown.items():
        c = clicked[(label, variant)]
        before = everyone.get(variant, stats.VariantStats())
        everyone[variant] = stats.VariantStats(before.impressions + n, before.clicks + c)
        if label:
            per_segment.setdefault(label, {})[variant] = stats.VariantStats(n, c)
    return {"hero-bandit": everyone}, {"hero-bandit": contextual.bound(per_segment, max_segments)}
