"""Sorting a batch of Kafka messages into what to count per user, what is late, and dead letters.

Pure: no I/O, so it is the unit-tested heart of the worker. Lateness is judged against the message's
Kafka timestamp (when the collector accepted the event), not the worker's clock, so a batch replayed
after a crash is sorted exactly as the first time.

Each value is checked by the lean validator (tailor.core.events_lean: compiled, ~1 µs; ~5 µs in
Python); only what it is unsure of goes through the full model (tailor.core.events), which decides and
words the dead letter's errors. The loop over the batch runs in Rust too when the check is compiled
(the Python interpreter cost as much as the check): `python_sort` is its reference.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message
from pydantic import ValidationError

from tailor.core import events, events_lean, native, profile_store
from tailor.core.rules.ruleset import FeatureConfig
from tailor_worker import deadletter

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SortedBatch:
    by_user: dict[str, list[profile_store.Occurrence]] = field(default_factory=dict)
    partition_of: dict[str, int] = field(default_factory=dict)  # user -> the partition it came from
    dead: list[deadletter.DeadLetter] = field(default_factory=list)
    late: int = 0
    events: int = 0  # messages that carried something (valid or not)
    offsets: dict[int, int] = field(default_factory=dict)  # partition -> its newest offset processed


def ingestion_time(message: Message, default: float) -> float:
    kind, millis = message.timestamp()
    return millis / 1000.0 if kind != TIMESTAMP_NOT_AVAILABLE and millis > 0 else default


def sort(
    messages: list[Message], features: FeatureConfig, now: float, *, compiled: bool | None = None
) -> SortedBatch:
    """Sort `messages` at `now`: in Rust (tailor_native.EventReader.sort) when built and not switched
    off (`compiled`, default tailor.core.native), else `python_sort`; the same result either way."""
    if compiled is None:
        compiled = native.enabled()
    if not compiled:
        return python_sort(messages, features, now)
    result = SortedBatch()
    result.events, result.late = events_lean.compiled_reader(features.dimensions).sort(
        messages, now, features.allowed_lateness_seconds, functools.partial(_fallback, result, features),
        result.by_user, result.partition_of, result.offsets,
    )  # fmt: skip
    return result


def python_sort(messages: Sequence[Message], features: FeatureConfig, now: float) -> SortedBatch:
    """The reference of the compiled loop: each message read by the lean check in Python."""
    result = SortedBatch()
    read_occurrence = events_lean.python_reader(features.dimensions)
    fallback = functools.partial(_fallback, result, features)
    lateness = features.allowed_lateness_seconds
    by_user, partition_of, offsets = result.by_user, result.partition_of, result.offsets
    for message in messages:
        if message.error() is not None:
            fallback(message, now)
            continue
        result.events += 1
        partition, offset = message.partition(), message.offset()
        if partition is not None and offset is not None:
            offsets[partition] = max(offsets.get(partition, -1), offset)
        ingested = ingestion_time(message, now)
        value = message.value()
        occurrence = read_occurrence(value, ingested) if value else None
        if occurrence is None:
            occurrence = fallback(message, ingested)
            if occurrence is None:
                continue
        if ingested - occurrence.at > lateness:  # profile_store.is_late
            result.late += 1
            continue
        user = occurrence.user
        found = by_user.get(user)
        if found is None:
            by_user[user] = [occurrence]
            partition_of[user] = partition if partition is not None else -1
        else:
            found.append(occurrence)
    return result


def _fallback(
    result: SortedBatch, features: FeatureConfig, message: Message, ingested: float
) -> profile_store.Occurrence | None:
    """A message the lean check did not count: an error (logged), no value or an invalid event (a
    dead letter), or an event only the model can read (what it counts)."""
    if message.error() is not None:
        log.warning("consumer error: %s", message.error())
        return None
    value = message.value()
    if not value:
        result.dead.append(deadletter.DeadLetter(message, deadletter.UNDECODABLE, [
            {"field": "(message)", "message": "the message has no value"}
        ]))  # fmt: skip
        return None
    try:
        event = events.Event.model_validate_json(value)
    except ValidationError as error:
        undecodable = any(item["type"] == "json_invalid" for item in error.errors(include_url=False))
        reason = deadletter.UNDECODABLE if undecodable else deadletter.INVALID
        result.dead.append(deadletter.DeadLetter(message, reason, events.field_errors(error)))
        return None
    return profile_store.occurrence(event, ingested, features.dimensions)
