"""Classifying a batch of Kafka messages: what to count per user, what is late, what is a dead letter.

Pure: no I/O, so it is the unit-tested heart of the worker. Lateness is judged against the message's
Kafka timestamp (when the collector accepted the event), not the worker's clock, so a batch replayed
after a crash is classified exactly as the first time: an event older than the allowed lateness
when it was received is late.

Each value is checked by the lean check (tailor.core.events.lean_check); only what it is unsure of
goes through the full model (tailor.core.events.schema), which decides and words the dead letter's
errors. The loop over the batch runs in Rust too when the check is compiled (the interpreter's loop
cost as much as the check): `python_classify` is its reference.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message
from pydantic import ValidationError

from tailor.core import events, native
from tailor.core.events import lean_check, occurrence
from tailor.core.rules.ruleset import FeatureConfig
from tailor_worker import deadletter

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ClassifiedBatch:
    by_user: dict[str, list[occurrence.Occurrence]] = field(default_factory=dict)
    partition_of: dict[str, int] = field(default_factory=dict)  # user -> the partition it came from
    dead: list[deadletter.DeadLetter] = field(default_factory=list)
    late: int = 0
    events: int = 0  # messages that carried something (valid or not)
    offsets: dict[int, int] = field(default_factory=dict)  # partition -> its newest offset processed


def ingestion_time(message: Message, default: float) -> float:
    kind, millis = message.timestamp()
    return millis / 1000.0 if kind != TIMESTAMP_NOT_AVAILABLE and millis > 0 else default


def classify(
    messages: list[Message], features: FeatureConfig, now: float, *, compiled: bool | None = None
) -> ClassifiedBatch:
    """Classify `messages` at `now`: in Rust (tailor_native.EventReader.sort) when built and not
    switched off (`compiled`, default tailor.core.native), else `python_classify`; the same result
    either way."""
    if compiled is None:
        compiled = native.enabled()
    if not compiled:
        return python_classify(messages, features, now)
    result = ClassifiedBatch()
    result.events, result.late = lean_check.compiled_reader(features.dimensions).sort(
        messages, now, features.allowed_lateness_seconds, functools.partial(_fallback, result, features),
        result.by_user, result.partition_of, result.offsets,
    )  # fmt: skip
    return result


def python_classify(messages: Sequence[Message], features: FeatureConfig, now: float) -> ClassifiedBatch:
    """The reference of the compiled loop: each message read by the lean check in Python."""
    result = ClassifiedBatch()
    read_occurrence = lean_check.python_reader(features.dimensions)
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
        counted = read_occurrence(value, ingested) if value else None
        if counted is None:
            counted = fallback(message, ingested)
            if counted is None:
                continue
        if ingested - counted.at > lateness:
            result.late += 1
            continue
        user = counted.user
        found = by_user.get(user)
        if found is None:
            by_user[user] = [counted]
            partition_of[user] = partition if partition is not None else -1
        else:
            found.append(counted)
    return result


def _fallback(
    result: ClassifiedBatch, features: FeatureConfig, message: Message, ingested: float
) -> occurrence.Occurrence | None:
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
    return occurrence.from_event(event, ingested, features.dimensions)
