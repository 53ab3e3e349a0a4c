"""The compiled profile counting (tailor_native.Counting, native/src/profile.rs) is the Python
reference (tailor.core.profile.counting.ReferenceCounting over tailor.core.profile.state): the same
stored values, keys in the same order (the JSON is compared decoded, not byte for byte).

Generated plans (several windows and bucket sizes, sometimes sharing a size or a stored sum, a
bucket's counter cap small enough to hit, a short recent list) count generated batches: time moving
on by seconds or by hours, late events and events ahead of the clock, sessions, repeated and
escaped dimension values, far-off event times. After every batch both must have pruned alike and
give the same guarded write (its call's arguments), the same stored fields and the same reads; now
and then both reload from the stored fields, as a worker does on a cache miss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import hiredis
import native_marks
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailor.core import native
from tailor.core.events import occurrence
from tailor.core.profile import counting as profile_counting
from tailor.core.profile import state as profile_state
from tailor.core.profile import store
from tailor.core.rules.ruleset import FeatureConfig, Window

tailor_native = pytest.importorskip("tailor_native", reason=native_marks.MISSING)

START = 1_800_000_000.0
SIZES = (1, 5, 10, 60, 3600)
DIMENSIONS = ("category", "query")
VALUES = ("a", "b", "c", 'q"uote', "back\\slash", "new\nline", "\x01ctl", "ünï")


@st.composite
def plans(draw: st.DrawFn) -> profile_state.Plan:
    windows = []
    for k in range(draw(st.integers(1, 4))):
        size = draw(st.sampled_from(SIZES))
        whole = draw(st.booleans())  # a whole number of buckets, or not
        seconds = size * draw(st.integers(1, 12)) if whole else draw(st.integers(size, 30 * size))
        windows.append(Window(name=f"w{k}", seconds=seconds, bucket_seconds=size))
    features = FeatureConfig(
        windows=tuple(windows),
        dimensions=DIMENSIONS,
        allowed_lateness_seconds=600,
        recent_limit=draw(st.integers(1, 4)),
        session_timeout_seconds=draw(st.sampled_from([30, 600, 1800])),
    )
    return profile_state.Plan.of(features, max_fields=draw(st.sampled_from([1, 2, 3, 5, 512])))


# Seconds the clock moves before a batch: not at all, a little, past buckets, by hours.
moves = st.one_of(
    st.just(0.0),
    st.floats(0, 3, allow_nan=False),
    st.integers(1, 120).map(float),
    st.integers(3600, 30_000).map(float),
)
# Event times against the clock: of the moment, late, ahead of it, or far off in either direction.
offsets = st.one_of(
    st.just(0.0),
    st.floats(-5, 0, allow_nan=False),
    st.floats(-4000, 0, allow_nan=False),
    st.floats(0, 200, allow_nan=False),
    st.integers(-90_000, 60).map(float),
)
far_times = st.one_of(
    st.floats(-1e30, 2e9, allow_nan=False),
    st.sampled_from([0.0, -0.0, 1e-7, 1e-5, 123.456, 1e16, -1e16, 1.5e15, -9.3e18, 5e-324]),
)


@dataclass(frozen=True)
class Planned:
    """An event to count: at `now + at`, or at `at` itself when `absolute`."""

    at: float
    absolute: bool
    counter: str
    session: str
    dimensions: tuple[tuple[str, str], ...]

    def occurrence(self, now: float) -> occurrence.Occurrence:
        at = self.at if self.absolute else now + self.at
        return occurrence.Occurrence("-", "u", at, self.counter, self.session, self.dimensions)


@dataclass(frozen=True)
class Batch:
    move: float
    events: list[Planned]
    reload: bool  # both reload their state from the stored fields first

    def occurrences(self, now: float) -> list[occurrence.Occurrence]:
        return [event.occurrence(now) for event in self.events]


def planned(at: st.SearchStrategy[float], absolute: bool) -> st.SearchStrategy[Planned]:
    return st.builds(
        Planned,
        at=at,
        absolute=st.just(absolute),
        counter=st.sampled_from(["views", "clicks", "custom"]),
        session=st.sampled_from(["", "s1", "s2"]),
        dimensions=st.lists(st.tuples(st.sampled_from(DIMENSIONS), st.sampled_from(VALUES)), max_size=3).map(
            tuple
        ),
    )


# One event in twenty at a far-off time of its own.
events = st.integers(0, 19).flatmap(lambda n: planned(far_times, True) if n == 0 else planned(offsets, False))
batches = st.builds(
    Batch,
    move=moves,
    events=st.lists(events, min_size=1, max_size=4),
    reload=st.integers(0, 4).map(lambda n: n == 0),
)


HEAD = ["1800000000.25", "90060", "1799913600.25", "1799996400.25"]


def ordered(value: Any) -> Any:
    """A decoded JSON value with its objects as lists of pairs: equal only with the keys in order."""
    if isinstance(value, dict):
        return [(key, ordered(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [ordered(item) for item in value]
    return value


def decoded(fields: list[bytes]) -> list[Any]:
    return [ordered(orjson.loads(field)) for field in fields]


def arguments(call: bytes) -> list[Any]:
    """The command a guard call's RESP bytes carry, as Redis reads it, its JSON fields decoded."""
    reader = hiredis.Reader()
    reader.feed(call)
    command = reader.gets()
    assert isinstance(command, list)
    assert reader.gets() is False  # nothing after it
    at = 3 + int(command[2]) + len(HEAD)  # FCALL, function, number of keys, keys, head
    out: list[Any] = command[:at]
    while at < len(command):  # per user: profile, expected, version, flags, number of fields
        fields = int(command[at + 4])
        out += command[at : at + 5]
        at += 5
        for _ in range(fields):
            out += [command[at], ordered(orjson.loads(command[at + 1]))]
            at += 2
        marks = int(command[at])
        out += command[at : at + 1 + marks]
        at += 1 + marks
    return out


class Pair:
    """One user's state counted by both implementations."""

    def __init__(self, plan: profile_state.Plan) -> None:
        self.plan = plan
        self.reference = profile_counting.ReferenceCounting(plan)
        self.native = profile_counting.compiled(plan)
        self.expected: profile_state.ProfileState = profile_state.ProfileState()
        self.actual = tailor_native.State()

    def count(self, events: list[occurrence.Occurrence], now: float) -> None:
        pruned = self.reference.apply(self.expected, events, now)
        assert self.native.apply(self.actual, events, now) == pruned
        self.assert_same_write()
        self.assert_same(now)

    def assert_same_write(self) -> None:
        """The guarded write of the changed fields (which it takes: the next write has only new changes)."""
        expected = self.reference.guarded_call(store.WRITE_FUNCTION, HEAD, store.MARK_PREFIX)
        actual = self.native.guarded_call(store.WRITE_FUNCTION, HEAD, store.MARK_PREFIX)
        expected.add(self.expected, "key", "1", "2", "dp", ["e1"])
        actual.add(self.actual, "key", "1", "2", "dp", ["e1"])
        assert arguments(actual.take()) == arguments(expected.take())

    def reload(self) -> None:
        """Each from what the other wrote: either reads the other's fields (a worker restarted with
        TAILOR_NATIVE changed)."""
        written_by_native = self.native.fields(self.actual)
        self.actual = self.native.decode(self.reference.fields(self.expected))
        self.expected = self.reference.decode(written_by_native)

    def assert_same(self, now: float) -> None:
        stored = self.reference.fields(self.expected)
        assert decoded(self.native.fields(self.actual)) == decoded(stored)
        for session in (None, "s1", "s2"):
            expected = profile_state.read_profile(self.plan, stored, "u", session, now)
            actual = profile_state.read_profile(self.plan, self.native.fields(self.actual), "u", session, now)
            assert actual == expected


@settings(max_examples=300, deadline=None)
@given(plans(), st.lists(batches, min_size=1, max_size=12))
def test_native_counting_writes_what_the_reference_writes(
    plan: profile_state.Plan, steps: list[Batch]
) -> None:
    pair = Pair(plan)
    now = START
    for step in steps:
        now += step.move
        if step.reload:
            pair.reload()
            pair.assert_same(now)
        pair.count(step.occurrences(now), now)


@settings(max_examples=100, deadline=None)
@given(plans(), plans(), st.lists(batches, min_size=1, max_size=6))
def test_a_state_written_under_other_windows_decodes_alike(
    written_under: profile_state.Plan, plan: profile_state.Plan, steps: list[Batch]
) -> None:
    """A stack whose windows changed: sums of windows gone are dropped, buckets of sizes gone kept
    until the next prune, new windows summed from the buckets there are."""
    before = Pair(written_under)
    now = START
    for step in steps:
        now += step.move
        before.count(step.occurrences(now), now)
    after = Pair(plan)
    stored = before.reference.fields(before.expected)
    after.expected, after.actual = after.reference.decode(stored), after.native.decode(stored)
    after.assert_same(now)
    for step in steps:
        now += step.move
        after.count(step.occurrences(now), now)


def test_bucket_starts_use_pythons_float_floor_division() -> None:
    """`at // size` rounds through fmod: 0.3 // 0.1 is 2.0 (0.3 / 0.1 is 2.9999999999999996, but
    near-integral quotients differ from floor(a / b) elsewhere too); starts of negative times go down."""
    plan = profile_state.Plan.of(
        FeatureConfig(windows=(Window(name="w", seconds=30, bucket_seconds=10),), dimensions=(),
                      allowed_lateness_seconds=0)
    )  # fmt: skip
    pair = Pair(plan)
    for at in (-0.5, -10.0, -10.000000000000002, 9.999999999999998, 1e17 + 3, 2.5e15 - 0.5):
        now = at + 1
        pair.count([occurrence.Occurrence("-", "u", at, "views", "s", ())], now)


def test_a_counting_refuses_sizes_it_cannot_count() -> None:
    with pytest.raises(ValueError, match="sizes must be positive"):
        tailor_native.Counting([(0, 10)], [], recent_limit=1, session_timeout=1, prune_every=60, max_fields=1,
                               occurrence=occurrence.Occurrence)  # fmt: skip
    with pytest.raises(ValueError, match="not in sizes"):
        tailor_native.Counting([(10, 30)], [("30/5", 5, 6)], recent_limit=1, session_timeout=1,
                               prune_every=60, max_fields=1, occurrence=occurrence.Occurrence)  # fmt: skip


@settings(max_examples=50, deadline=None)
@given(plans(), st.lists(batches, min_size=1, max_size=6))
def test_events_that_are_not_occurrences_are_read_by_attribute_alike(
    plan: profile_state.Plan, steps: list[Batch]
) -> None:
    """The compiled counting reads an Occurrence by the positions of its fields, anything else by
    their names (as the reference does): the same profile either way."""
    counting = profile_counting.compiled(plan)
    by_position, by_name = tailor_native.State(), tailor_native.State()
    now = START
    for step in steps:
        now += step.move
        events = step.occurrences(now)
        assert counting.apply(by_position, events, now) == counting.apply(
            by_name, [Planned(o.at, True, o.counter, o.session, o.dimensions) for o in events], now
        )
        assert counting.fields(by_position) == counting.fields(by_name)


def test_decode_refuses_a_field_that_is_not_a_profile() -> None:
    counting = profile_counting.compiled(
        profile_state.Plan.of(FeatureConfig(windows=(Window(name="w", seconds=30, bucket_seconds=10),),
                                            dimensions=(), allowed_lateness_seconds=0))
    )  # fmt: skip
    assert counting.fields(counting.decode(None)) == counting.fields(tailor_native.State())
    assert counting.fields(counting.decode([None, None, None])) == counting.fields(tailor_native.State())
    with pytest.raises(ValueError, match="not JSON of a profile"):
        counting.decode([None, b"{", None])
    with pytest.raises(KeyError):
        counting.decode([None, b"{}", None])
    with pytest.raises(ValueError, match="not JSON of a profile"):
        counting.decode([None, b'{"n":{"10":5},"r":{},"t":{},"s":{},"p":0}', None])


def test_the_writer_counts_natively_when_built_and_in_python_when_switched_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(native.ENV, raising=False)  # not switched off (TAILOR_NATIVE=off runs of the suite)
    features = FeatureConfig(windows=(Window(name="w", seconds=30, bucket_seconds=10),), dimensions=(),
                             allowed_lateness_seconds=0)  # fmt: skip
    config: Any = type("Config", (), {"key": "ns/stack", "features": features})()
    assert isinstance(store.ProfileWriter(config).counting, tailor_native.Counting)
    monkeypatch.setenv(native.ENV, "off")
    assert isinstance(store.ProfileWriter(config).counting, profile_counting.ReferenceCounting)


@settings(max_examples=300, deadline=None)
@given(plans(), st.lists(batches, min_size=1, max_size=4), st.data())
def test_damaged_stored_fields_are_refused_with_an_error_never_a_crash(
    plan: profile_state.Plan, steps: list[Batch], data: st.DataObject
) -> None:
    """Whatever Redis hands back, decode and the next count work or raise a plain error — which the
    profile writer meets by counting the user afresh — never a panic, which would end the worker."""
    pair = Pair(plan)
    now = START
    for step in steps:
        now += step.move
        pair.count(step.occurrences(now), now)
    fields = [bytearray(field) for field in pair.native.fields(pair.actual)]
    damaged = data.draw(st.sampled_from(range(3)))
    for _ in range(data.draw(st.integers(1, 3))):
        if fields[damaged]:
            at = data.draw(st.integers(0, len(fields[damaged]) - 1))
            fields[damaged][at] = data.draw(st.sampled_from(b'0123456789-.e"{}[]:,\\ \xff'))
    try:
        state = pair.native.decode([bytes(field) for field in fields])
        pair.native.apply(state, steps[-1].occurrences(now + 60), now + 60)
        pair.native.guarded_call(store.WRITE_FUNCTION, HEAD, store.MARK_PREFIX).add(
            state, "key", "", "1", "", []
        )
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        pass  # tailor.core.profile.store's _UNREADABLE: the user is counted afresh


@settings(max_examples=150, deadline=None)
@given(plans(), st.lists(st.lists(batches, min_size=1, max_size=4), min_size=1, max_size=5))
def test_a_compiled_guard_call_carries_the_reference_calls_arguments(
    plan: profile_state.Plan, users: list[list[Batch]]
) -> None:
    """tailor_native.GuardedCall writes each user's changed fields straight into the call's RESP
    bytes: the command Redis reads is the reference call's, packed by hiredis."""
    counting, native_counting = profile_counting.ReferenceCounting(plan), profile_counting.compiled(plan)
    reference = counting.guarded_call(store.WRITE_FUNCTION, HEAD, store.MARK_PREFIX)
    compiled = native_counting.guarded_call(store.WRITE_FUNCTION, HEAD, store.MARK_PREFIX)
    for k, steps in enumerate(users):
        expected, actual = profile_state.ProfileState(), tailor_native.State()
        now = START
        for n, step in enumerate(steps):
            now += step.move
            events = step.occurrences(now)
            assert native_counting.apply(actual, events, now) == counting.apply(expected, events, now)
            key = f"tailor:s/x:{{u{k}}}:profile"
            ids = [f"e{k}-{n}-{i}" for i in range(len(events))]
            reference.add(expected, key, f"{2**52 + n - 1}" if n else "", f"{2**52 + n}", "dpx", ids)
            compiled.add(actual, key, f"{2**52 + n - 1}" if n else "", f"{2**52 + n}", "dpx", ids)
    assert compiled.users == reference.users == sum(len(steps) for steps in users)
    assert arguments(compiled.take()) == arguments(reference.take())
    assert compiled.users == reference.users == 0
    assert compiled.take() == reference.take()  # an empty call alike
