"""TAILOR_NATIVE=off puts the Python references back on the worker's hot path."""

from __future__ import annotations

import native_marks
import pytest

from tailor.core import native
from tailor.core.events import lean_check
from tailor.core.profile import counting as profile_counting
from tailor.core.profile import state as profile_state
from tailor.devstack import scratch

FEATURES = scratch.stack_config("127.0.0.1:9092", "native").features


@native_marks.needs_native
def test_the_compiled_path_is_used_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    import tailor_native

    monkeypatch.delenv(native.ENV, raising=False)
    assert native.enabled()
    plan = profile_state.Plan.of(FEATURES)
    assert isinstance(profile_counting.counting(plan), tailor_native.Counting)
    assert isinstance(lean_check.reader(FEATURES.dimensions), tailor_native.EventReader)


@pytest.mark.parametrize("value", ["off", "0", "false", "No"])
def test_tailor_native_off_selects_the_python_references(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(native.ENV, value)
    assert not native.enabled()
    plan = profile_state.Plan.of(FEATURES)
    assert isinstance(profile_counting.counting(plan), profile_counting.ReferenceCounting)
    assert isinstance(lean_check.reader(FEATURES.dimensions), lean_check.PythonReader)
