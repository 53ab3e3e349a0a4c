"""Classifying a batch of Kafka messages: what to count per user, what is late, what is a dead letter.

Pure: no I/O, so it is the unit-tested heart of the worker. Lateness is judged against the message's
Kafka timestamp (when the collector accepted the event), not the worker's clock, so a batch replayed
after a crash is classified exactly as the first time: an event older than the allowed lateness
when it was received is late.

The batch is read in one call by the lean check (tailor.core.events.lean_check: compiled, or its
Python reference); what it did not read goes through the full model (tailor.core.events.schema),
which decides — counted after the user's other events of the batch — and words the dead letter's
errors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from confluent_kafka import Message
from pydantic import ValidationError

from tailor.core import events
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


def classify(messages: list[Message], features: FeatureConfig, now: float) -> ClassifiedBatch:
    """Classify `messages` at `now`."""
    lateness = features.allowed_lateness_seconds
    read = lean_check.reader(features.dimensions).read_batch(messages, now, lateness)
    result = ClassifiedBatch(
        read["by_user"], read["partition_of"], [], read["late"], read["events"], read["offsets"]
    )
    for index in read["unread"]:
        message = messages[index]
        if message.error() is not None:
            log.warning("consumer error: %s", message.error())
            continue
        ingested = lean_check.ingestion_time(message, now)
        counted = _by_the_model(result, features, message, ingested)
        if counted is None:
            continue
        if ingested - counted.at > lateness:
            result.late += 1
            continue
        user = counted.user
        found = result.by_user.get(user)
        if found is None:
            result.by_user[user] = [counted]
            partition = message.partition()
            result.partition_of[user] = partition if partition is not None else -1
        else:
            found.append(counted)
    return result


def _by_the_model(
    result: ClassifiedBatch, features: FeatureConfig, message: Message, ingested: float
) -> occurrence.Occurrence | None:
    """A message the lean check did not read: no value or an invalid event (a dead letter), or an
    event only the model can read (what it counts)."""
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
