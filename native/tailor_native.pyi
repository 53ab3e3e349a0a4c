"""Type stubs for tailor_native, the compiled worker hot path (native/src). Python reference:
tailor.core.events.lean_check and tailor.core.profile.state."""

from collections.abc import Mapping, Sequence

from confluent_kafka import Message

from tailor.core.events.lean_check import BatchRead

# -- the lean event check (native/src/event.rs; reference: tailor.core.events.lean_check.PythonReader) --

class EventReader:
    """The lean event check for one set of dimensions (tailor.core.events.lean_check.compiled_reader
    makes it with the schema's limits and patterns)."""

    def __init__(
        self,
        dimensions: Sequence[str],
        *,
        occurrence: type[tuple[object, ...]],
        counters: Mapping[str, str],
        limits: Mapping[str, int],
        patterns: Mapping[str, str],
    ) -> None: ...
    def read_batch(self, messages: list[Message], now: float, lateness: float) -> BatchRead:
        """One batch read: lean_check.Reader.read_batch."""

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
