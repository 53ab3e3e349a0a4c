"""How a worker counts events into its users' profiles: compiled (tailor_native, native/src/profile.rs)
when it is built, else the Python reference (tailor.core.profile.state) — the same state, the same
stored bytes, several times the CPU (docs/pipeline.md).

Both are a `Counting`: `decode` the stored fields into a state, `apply` new events to it, and the
`changes` to write. The state is opaque to callers but for `version` (the store's guard).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from tailor.core import native as native_build
from tailor.core.profile import state as profile_state

if native_build.BUILT:  # else (scripts/setup.sh builds it) the reference counts
    import tailor_native

Raw = Sequence[bytes | str | None] | None  # the stored fields in FIELDS order, as HMGET gives them
Event = tuple[
    str, str, float, str, str, tuple[tuple[str, str], ...]
]  # tailor.core.events.occurrence.Occurrence


class Versioned(Protocol):
    version: str  # the version the store last saw or wrote ("" for none)


S = TypeVar("S")


class Counting(Protocol[S]):
    def decode(self, raw: Raw) -> S: ...
    def apply(self, state: S, events: Sequence[Event], now: float) -> bool: ...
    def changes(self, state: S) -> list[tuple[str, bytes]]: ...
    def fields(self, state: S) -> list[bytes]: ...


class ReferenceCounting:
    """tailor.core.profile.state's functions behind tailor_native.Plan's methods."""

    def __init__(self, plan: profile_state.Plan) -> None:
        self.plan = plan
        self._spans = plan.spans(0.0)

    def decode(self, raw: Raw) -> profile_state.ProfileState:
        return profile_state.decode(raw, self.plan)

    def apply(self, state: profile_state.ProfileState, events: Sequence[Event], now: float) -> bool:
        spans = self._spans
        if spans.now != now:  # a batch counts all its users at one `now`: once per batch
            spans = self._spans = self.plan.spans(now)
        occurrences: Sequence[Any] = events  # Occurrence named tuples: profile_state.Counted
        return profile_state.apply(self.plan, state, occurrences, now, spans)

    def changes(self, state: profile_state.ProfileState) -> list[tuple[str, bytes]]:
        return profile_state.changes(state)

    def fields(self, state: profile_state.ProfileState) -> list[bytes]:
        return profile_state.fields(state)


def counting(plan: profile_state.Plan, *, native: bool | None = None) -> Counting[Any]:
    """The compiled counting of `plan` when `native` (default: when built and not switched off,
    tailor.core.native), else the reference."""
    if native is None:
        native = native_build.enabled()
    if not native:
        return ReferenceCounting(plan)
    if not native_build.BUILT:
        raise RuntimeError("tailor_native is not built: run scripts/setup.sh (or pip install ./native)")
    return native_plan(plan)


def native_plan(plan: profile_state.Plan) -> tailor_native.Plan:
    return tailor_native.Plan(
        [(size, keep) for size, keep, _ in plan.sizes],
        [(window.key, window.size, window.count) for window in plan.windows],
        recent_limit=plan.recent_limit,
        session_timeout=plan.session_timeout,
        prune_every=plan.prune_every,
        max_fields=plan.max_fields,
    )
