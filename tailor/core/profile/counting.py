"""How a worker counts events into its users' profiles and packs their guarded writes: compiled
(`tailor_native.Counting`, native/src/profile.rs) unless tailor.core.native says otherwise, else the
Python reference here (`ReferenceCounting`, over tailor.core.profile.state) — the same state, the
same stored values, several times the CPU (docs/pipeline.md).

Both are a `Counting`: `decode` the stored fields into a state (opaque to callers), `apply` new
events to it, give its stored `fields`, and gather changed users' writes in a `guarded_call`, whose
RESP bytes go to Redis as they are: one call of the guard function (tailor/core/profile/store.lua,
which declares the first user's profile as its one key, and whose arguments per user are: the
profile, the expected version, the new one, flags, the changed fields as name/JSON pairs, the events'
marks — a prefix and the event's id).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol, TypeVar, cast

import hiredis

from tailor.core import native
from tailor.core.events import occurrence
from tailor.core.profile import state as profile_state

if native.BUILT:  # else (scripts/setup.sh builds it) the reference counts
    import tailor_native

Raw = Sequence[bytes | str | None] | None  # the stored fields in FIELDS order, as HMGET gives them

S = TypeVar("S")
S_contra = TypeVar("S_contra", contravariant=True)

# One command's RESP bytes: the worker's only encoder in Python (hiredis's stub types the argument
# as a 1-tuple, hence the cast).
pack_command: Final = cast(Callable[[tuple[str | int | float | bytes, ...]], bytes], hiredis.pack_command)


class GuardedCall(Protocol[S_contra]):
    """One call of the guard function being gathered, a user at a time."""

    @property
    def users(self) -> int: ...  # added since the last `take`
    def add(
        self, state: S_contra, key: str, expected: str, version: str, flags: str, ids: list[str]
    ) -> None: ...  # the user's changed fields come from `state` (taken: the next write has only new changes)
    def take(self) -> bytes: ...  # the call's RESP bytes; starts the next call


class Counting(Protocol[S]):
    def decode(self, raw: Raw) -> S: ...
    def apply(self, state: S, events: Sequence[profile_state.Counted], now: float) -> bool: ...
    def fields(self, state: S) -> list[bytes]: ...
    def guarded_call(self, function: str, head: list[str], mark_prefix: str) -> GuardedCall[S]: ...


def counting(plan: profile_state.Plan) -> Counting[Any]:
    """The counting that runs: compiled when tailor.core.native says so, else the reference."""
    return compiled(plan) if native.enabled() else ReferenceCounting(plan)


def compiled(plan: profile_state.Plan) -> tailor_native.Counting:
    return tailor_native.Counting(
        [(size, keep) for size, keep, _ in plan.sizes],
        [(window.key, window.size, window.count) for window in plan.windows],
        recent_limit=plan.recent_limit,
        session_timeout=plan.session_timeout,
        prune_every=plan.prune_every,
        max_fields=plan.max_fields,
        occurrence=occurrence.Occurrence,  # read by the positions its _fields name
    )


class ReferenceCounting:
    """tailor.core.profile.state's functions as a Counting: the reference of tailor_native.Counting."""

    def __init__(self, plan: profile_state.Plan) -> None:
        self.plan = plan
        self._spans = plan.spans(0.0)

    def decode(self, raw: Raw) -> profile_state.ProfileState:
        return profile_state.decode(raw, self.plan)

    def apply(
        self, state: profile_state.ProfileState, events: Sequence[profile_state.Counted], now: float
    ) -> bool:
        spans = self._spans
        if spans.now != now:  # a batch counts all its users at one `now`: once per batch
            spans = self._spans = self.plan.spans(now)
        return profile_state.apply(self.plan, state, events, now, spans)

    def fields(self, state: profile_state.ProfileState) -> list[bytes]:
        return profile_state.fields(state)

    def guarded_call(self, function: str, head: list[str], mark_prefix: str) -> ReferenceCall:
        return ReferenceCall(function, head, mark_prefix)


class ReferenceCall:
    """A guard call gathered as a command and packed by hiredis: the reference of
    tailor_native.GuardedCall."""

    def __init__(self, function: str, head: list[str], mark_prefix: str) -> None:
        self.function = function
        self.head = head
        self.mark_prefix = mark_prefix
        self.keys: list[str] = []
        self.args: list[Any] = []
        self.users = 0

    def add(
        self, state: profile_state.ProfileState, key: str, expected: str, version: str, flags: str,
        ids: list[str],
    ) -> None:  # fmt: skip
        changed = profile_state.changes(state)
        if not self.keys:
            self.keys.append(key)  # the call's route (store.lua: KEYS)
        self.args += (key, expected, version, flags, len(changed))
        for name, value in changed:
            self.args += (name, value)
        self.args.append(len(ids))
        self.args += [self.mark_prefix + event_id for event_id in ids]
        self.users += 1

    def take(self) -> bytes:
        call = pack_command(("FCALL", self.function, len(self.keys), *self.keys, *self.head, *self.args))
        self.keys, self.args, self.users = [], [], 0
        return call
