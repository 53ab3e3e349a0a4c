"""A user's recent behaviour as the content API sees it: windowed counts, recent values, session.

Workers write profiles (tailor.core.profile.store holds the Redis layout); the content API reads one per
decision and matches rules against it. This module is the read model only, shared by both and by
`tailor simulate`, so that every place computes a matcher's value the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Counter names inside a window: "views" counts every page view; "views|category|shoes" counts the
# page views whose `category` property was "shoes".
SEPARATOR = "|"


def counter(feature: str, dimension: str | None = None, value: str | None = None) -> str:
    if dimension is None:
        return feature
    return f"{feature}{SEPARATOR}{dimension}{SEPARATOR}{value}"


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    page_views: int = 0
    events: int = 0
    started_at: float = 0.0
    last_seen_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Profile:
    user: str
    counts: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # window -> counter -> n
    recent: Mapping[str, Sequence[str]] = field(default_factory=dict)  # dimension -> newest first
    session: Session | None = None
    traits: Mapping[str, Any] = field(default_factory=dict)  # set and unexpired (profile.traits)

    def count(self, window: str, feature: str, dimension: str | None = None, value: str | None = None) -> int:
        """Events of `feature` in `window`; with a dimension and no value, the top value's count."""
        counts = self.counts.get(window)
        if not counts:
            return 0
        if dimension is not None and value is None:
            return self.top(window, feature, dimension)[1]
        return counts.get(counter(feature, dimension, value), 0)

    def top(self, window: str, feature: str, dimension: str) -> tuple[str | None, int]:
        """The most frequent value of `dimension` among `feature` events in `window`, and its count."""
        prefix = f"{feature}{SEPARATOR}{dimension}{SEPARATOR}"
        best: tuple[str | None, int] = (None, 0)
        for name, n in self.counts.get(window, {}).items():
            if n > best[1] and name.startswith(prefix):
                best = (name[len(prefix) :], n)
        return best

    def as_cel(
        self, windows: Sequence[str], features: Sequence[str], dimensions: Sequence[str]
    ) -> dict[str, Any]:
        """The profile as CEL variables: `views["30m"].total`, `views["30m"].category["shoes"]`,
        `recent.query`, `session.pageViews`, `user.id`, `traits.churnRisk`. Every declared window and
        dimension is present (as 0 or an empty map), so expressions need no `has()` guards for them;
        traits are present only while set and unexpired."""
        activation: dict[str, Any] = {}
        for feature in features:
            per_window: dict[str, Any] = {}
            for window in windows:
                counts = self.counts.get(window, {})
                entry: dict[str, Any] = {"total": counts.get(feature, 0)}
                for dimension in dimensions:
                    prefix = f"{feature}{SEPARATOR}{dimension}{SEPARATOR}"
                    entry[dimension] = {
                        name[len(prefix) :]: n for name, n in counts.items() if name.startswith(prefix)
                    }
                per_window[window] = entry
            activation[feature] = per_window
        activation["recent"] = {dimension: list(self.recent.get(dimension, ())) for dimension in dimensions}
        session = self.session or Session(id="")
        activation["session"] = {
            "id": session.id,
            "pageViews": session.page_views,
            "events": session.events,
            "durationSeconds": max(0, int(session.last_seen_at - session.started_at)),
        }
        activation["user"] = {"id": self.user}
        activation["traits"] = dict(self.traits)
        return activation
