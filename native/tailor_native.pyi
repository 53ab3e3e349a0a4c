"""Type stubs for tailor_native, the compiled worker hot path (native/src). Python reference:
tailor.core.events.lean_check and tailor.core.profile.state."""

from collections.abc import Callable, Sequence

from confluent_kafka import Message

from tailor.core.events.occurrence import Occurrence

# -- the lean event check (native/src/event.rs; reference: tailor.core.events.lean_check) ------------------

class EventReader:
    """The lean event check (tailor.core.events.lean_check.python_occurrence) for one set of dimensions.
    Its limits are read from tailor.core.events.schema when it is made."""

    def __init__(self, dimensions: Sequence[str]) -> None: ...
    def occurrence(self, raw: bytes | str, ingested_at: float) -> Occurrence | None:
        """What is counted of the event in `raw`, or None when not sure it is valid."""
    def sort(
        self,
        messages: list[Message],
        now: float,
        lateness: float,
        fallback: Callable[[Message, float], Occurrence | None],
        by_user: dict[str, list[Occurrence]],
        partition_of: dict[str, int],
        offsets: dict[int, int],
    ) -> tuple[int, int]:
        """tailor_worker.batch.classify's loop (its reference: batch.python_classify): (messages that are
        not errors, late events)."""

# -- profile counting (native/src/profile.rs; reference: tailor.core.profile.state) -------------------

# What is counted of one event: an Occurrence, or any tuple of its shape
# (id, user, at, counter, session, ((dimension, value), ...)).
Counted = tuple[str, str, float, str, str, tuple[tuple[str, str], ...]]

class State:
    """One user's profile (tailor.core.profile.state.ProfileState), opaque but for its version."""

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
    def apply(self, state: State, events: Sequence[Counted], now: float) -> bool: ...
    def changes(self, state: State) -> list[tuple[str, bytes]]: ...
    def fields(self, state: State) -> list[bytes]: ...

# -- Redis commands (native/src/resp.rs; reference: hiredis.pack_command) -----------------------------

def pack_command(args: tuple[str | int | float | bytes, ...]) -> bytes:
    """The RESP bytes of one command, identical to hiredis.pack_command's."""

class GuardedWrites:
    """One call of the guard function (tailor/core/store.lua) being gathered and packed: the
    reference is store.ReferenceCalls packed by hiredis."""

    users: int
    def __init__(self, function: str, head: Sequence[str]) -> None: ...
    def add(self, state: State, key: str, expected: str, flags: str, ids: list[str]) -> None:
        """Add a user's write (its events' ids marked as store.mark does); its changed fields
        as Plan.changes gives them (whose flags it clears)."""
    def take(self) -> bytes:
        """The call's RESP bytes; starts the next call."""
