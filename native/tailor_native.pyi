"""Type stubs for tailor_native, the compiled worker hot path (native/src). Python reference:
tailor.core.events_lean and tailor.core.profile_state."""

from collections.abc import Sequence

# -- profile counting (native/src/profile.rs; reference: tailor.core.profile_state) -------------------

# profile_store.Occurrence: (id, user, at, counter, session, ((dimension, value), ...)).
Occurrence = tuple[str, str, float, str, str, tuple[tuple[str, str], ...]]

class State:
    """One user's profile (profile_state.UserState), opaque but for its version."""

    version: str  # the version the store last saw or wrote ("" for none)
    def __init__(self) -> None: ...

class Plan:
    """profile_state.Plan: `sizes` as (size, bucket lifetime), `windows` as (key, size, buckets summed)."""

    def __init__(
        self,
        sizes: Sequence[tuple[int, int]],
        windows: Sequence[tuple[str, int, int]],
        *,
        recent_limit: int,
        session_timeout: int,
        prune_every: float,
        max_fields: int,
    ) -> None: ...
    def decode(self, raw: Sequence[bytes | str | None] | None) -> State: ...
    def apply(self, state: State, events: Sequence[Occurrence], now: float) -> bool: ...
    def changes(self, state: State) -> list[tuple[str, bytes]]: ...
    def fields(self, state: State) -> list[bytes]: ...
