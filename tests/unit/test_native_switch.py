"""TAILOR_NATIVE=off puts the Python references back on the worker's hot path."""

from __future__ import annotations

import native_marks
import pytest
from confluent_kafka import Message
from tailor_worker import batch

from tailor.core import native
from tailor.core.profile import counting as profile_counting
from tailor.core.profile import state as profile_state
from tailor.devstack import scratch

FEATURES = scratch.stack_config("127.0.0.1:9092", "native").features


def classified_by(monkeypatch: pytest.MonkeyPatch) -> str:
    """Which loop batch.classify ran: the compiled one, or its reference."""
    ran = ["compiled"]

    def reference(messages: list[Message], features: object, now: float) -> batch.ClassifiedBatch:
        ran[0] = "python"
        return batch.ClassifiedBatch()

    monkeypatch.setattr(batch, "python_classify", reference)
    batch.classify([Message(topic="t", partition=0, offset=0, value=b"{")], FEATURES, 1000.0)
    return ran[0]


@native_marks.needs_native
def test_the_compiled_path_is_used_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    import tailor_native

    monkeypatch.delenv(native.ENV, raising=False)
    assert native.enabled()
    plan = profile_state.Plan.of(FEATURES)
    assert isinstance(profile_counting.counting(plan), tailor_native.Plan)
    assert classified_by(monkeypatch) == "compiled"


@pytest.mark.parametrize("value", ["off", "0", "false", "No"])
def test_tailor_native_off_selects_the_python_references(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(native.ENV, value)
    assert not native.enabled()
    plan = profile_state.Plan.of(FEATURES)
    assert isinstance(profile_counting.counting(plan), profile_counting.ReferenceCounting)
    assert classified_by(monkeypatch) == "python"
