"""The event as counted: an `Occurrence` is what a worker takes from one event into a profile.

It is made by the lean check (`lean_check`, in Python or compiled in tailor_native), or, for the
events only the model can read, from a validated `schema.Event` by `from_event`; the profile's
counting (tailor.core.profile) reads it. Its time is the event's own timestamp, never later than
when the collector received it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, NamedTuple

from tailor.core import constants
from tailor.core.events.schema import Event

# The counter of an event type no feature counts (`custom` events).
CUSTOM_COUNTER: Final = "custom"


class Occurrence(NamedTuple):
    """What a worker counts of one event: its id, user, time, counter name, session and dimension
    values. (A named tuple: a worker makes one per event, and a tuple is the cheapest object to make.)"""

    id: str
    user: str
    at: float
    counter: str
    session: str
    dimensions: tuple[tuple[str, str], ...]


def from_event(event: Event, ingested_at: float, dimensions: Sequence[str]) -> Occurrence:
    """The event as counted. Its time is its own timestamp, never later than when the collector
    received it (`ingested_at`, the Kafka message time): a fast client clock must not push an event
    into a bucket no read looks at yet."""
    at = min(event.epoch_seconds(ingested_at), ingested_at)
    counter = constants.FEATURE_OF_EVENT_TYPE.get(event.type, CUSTOM_COUNTER)
    values = []
    for dimension in dimensions:
        value = event.properties.get(dimension)
        if value is not None:
            values.append((dimension, value))
    return Occurrence(event.id, event.user, at, counter, event.session_id or "", tuple(values))
