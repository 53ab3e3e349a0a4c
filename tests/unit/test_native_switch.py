"""TAILOR_NATIVE=off puts the Python references back on the worker's hot path."""

from __future__ import annotations

import functools

import pytest
import tailor_native

from tailor.core import events_lean, native, profile_counting, profile_state
from tailor.devstack import scratch


@pytest.fixture(autouse=True)
def fresh_readers() -> None:
    events_lean.reader.cache_clear()  # readers are cached per dimensions; the switch is read at creation


def test_the_compiled_path_is_used_when_built() -> None:
    assert native.BUILT, "tailor_native is not built: run scripts/setup.sh"
    assert native.enabled()
    plan = profile_state.Plan.of(scratch.stack_config("127.0.0.1:9092", "native").features)
    assert isinstance(profile_counting.counting(plan), tailor_native.Plan)
    read = events_lean.reader(("category",))
    assert isinstance(getattr(read, "__self__", None), tailor_native.EventReader)


@pytest.mark.parametrize("value", ["off", "0", "false", "No"])
def test_tailor_native_off_selects_the_python_references(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(native.ENV, value)
    assert not native.enabled()
    plan = profile_state.Plan.of(scratch.stack_config("127.0.0.1:9092", "native").features)
    assert isinstance(profile_counting.counting(plan), profile_counting.ReferenceCounting)
    read = events_lean.reader(("category",))
    assert isinstance(read, functools.partial)
    assert read.func is events_lean.python_occurrence
    raw = b'{"id": "e1", "type": "page_view", "userId": "u1", "properties": {"category": "hats"}}'
    assert read(raw, 1000.0) == events_lean.native_reader(("category",))(raw, 1000.0)
