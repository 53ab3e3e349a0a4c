"""Type stubs for tailor_native, the compiled worker hot path (native/src). Python references:
tailor.core.events.lean_check.PythonReader and tailor.core.profile.counting.ReferenceCounting."""

from collections.abc import Mapping, Sequence

from confluent_kafka import Message

from tailor.core.events.lean_check import BatchRead
from tailor.core.profile.state import Counted

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

# -- profile counting (native/src/profile.rs; reference: tailor.core.profile.counting.ReferenceCounting) --

class State:
    """One user's profile (tailor.core.profile.state.ProfileState), opaque."""

    def __init__(self) -> None: ...

class GuardedCall:
    """One call of the guard function (tailor/core/profile/store.lua) being gathered and packed:
    profile.counting.GuardedCall."""

    users: int
    def add(
        self, state: State, key: str, expected: str, version: str, flags: str, marks: list[str]
    ) -> None: ...
    def take(self) -> bytes: ...

class Counting:
    """The counting of a profile_state.Plan: `sizes` as (size, bucket lifetime), `windows` as (key,
    size, buckets summed); `occurrence`, the named tuple whose instances are read by the positions its
    `_fields` name (other events by attribute). profile.counting.Counting."""

    def __init__(
        self,
        sizes: Sequence[tuple[int, int]],
        windows: Sequence[tuple[str, int, int]],
        *,
        recent_limit: int,
        session_timeout: int,
        prune_every: float,
        max_fields: int,
        occurrence: type[tuple[object, ...]],
    ) -> None: ...
    def decode(self, raw: Sequence[bytes | str | None] | None) -> State: ...
    def apply(self, state: State, events: Sequence[Counted], now: float) -> bool: ...
    def fields(self, state: State) -> list[bytes]: ...
    def guarded_call(self, function: str, head: list[str], mark_prefix: str) -> GuardedCall: ...
