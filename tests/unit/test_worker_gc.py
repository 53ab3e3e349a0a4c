"""The worker turns automatic garbage collection off and collects between batches instead: cycles
must still be freed, and only when the clock says so."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from tailor_worker import garbage


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: reference counting alone never frees it


def garbage_cycle() -> weakref.ref[Node]:
    """A cycle nothing refers to any more, watched: the watch reads None once it is freed."""
    cycle = Node()
    gone = weakref.ref(cycle)
    del cycle
    assert gone() is not None  # garbage, but nothing collects it with the collector off
    return gone


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()  # the clock freezes what survives; give this process's objects back
        gc.enable()


@pytest.mark.usefixtures("collector_off")
def test_cycles_made_during_batches_are_freed_between_them() -> None:
    clock = garbage.GarbageClock(every=0.0)
    gone = garbage_cycle()
    clock.batch_done()
    assert gone() is None


@pytest.mark.usefixtures("collector_off")
def test_between_collections_batches_cost_nothing() -> None:
    clock = garbage.GarbageClock(every=3600.0)
    gone = garbage_cycle()
    clock.batch_done()
    assert gone() is not None  # not due yet
    clock.next = 0.0  # an hour later
    clock.batch_done()
    assert gone() is None
