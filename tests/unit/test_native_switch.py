"""TAILOR_NATIVE=off puts the Python references back on the worker's hot path."""

from __future__ import annotations

import pytest
import tailor_native
from confluent_kafka import Message
from tailor_worker import batch

from tailor.core import native, profile_counting, profile_state
from tailor.devstack import scratch

FEATURES = scratch.stack_config("127.0.0.1:9092", "native").features


def sorted_by(monkeypatch: pytest.MonkeyPatch) -> str:
    """Which loop batch.sort ran: the compiled one, or its reference."""
    ran = ["compiled"]

    def reference(messages: list[Message], features: object, now: float) -> batch.SortedBatch:
        ran[0] = "python"
        return batch.SortedBatch()

    monkeypatch.setattr(batch, "python_sort", reference)
    batch.sort([Message(topic="t", partition=0, offset=0, value=b"{")], FEATURES, 1000.0)
    return ran[0]


def test_the_compiled_path_is_used_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    assert native.BUILT, "tailor_native is not built: run scripts/setup.sh"
    assert native.enabled()
    plan = profile_state.Plan.of(FEATURES)
    assert isinstance(profile_counting.counting(plan), tailor_native.Plan)
    assert sorted_by(monkeypatch) == "compiled"


@pytest.mark.parametrize("value", ["off", "0", "false", "No"])
def test_tailor_native_off_selects_the_python_references(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(native.ENV, value)
    assert not native.enabled()
    plan = profile_state.Plan.of(FEATURES)
    assert isinstance(profile_counting.counting(plan), profile_counting.ReferenceCounting)
    assert sorted_by(monkeypatch) == "python"
