"""The traits topic (docs/traits.md): per-user traits that data pipelines publish as CloudEvents.

A worker whose stack declares traits runs this loop beside its events loop, in a thread of its own,
with a consumer group of its own (`<worker group>.traits`): a Spark job's burst of a million traits
never holds up the events, and the events never hold up a trait. Each message is one traits event
(structured JSON CloudEvent, schemas/traits-v1.json); one that does not parse, or whose traits do not
fit the stack's declarations, goes to the dead-letter topic with the reason and the per-trait errors
(tailor.core.profile.traits.validate). Valid ones are written with the traits script — the newer
write of a trait wins by the event's `time`, so a replay never undoes a later value — and offsets are
stored only once the writes and dead letters are done: nothing acknowledged is lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
from confluent_kafka import KafkaException, Message
from pydantic import ValidationError

from tailor.core import events
from tailor.core.profile import traits as profile_traits
from tailor.core.rules.ruleset import StackConfig, Trait
from tailor_worker import deadletter, metrics
from tailor_worker.consumer import EventConsumer

log = logging.getLogger(__name__)

INVALID_TRAIT = "invalid-trait"  # a dead letter's reason: a well-formed event whose traits do not fit
BATCH = 500


@dataclass(slots=True)
class TraitsBatch:
    commands: list[profile_traits.Command] = field(default_factory=list)
    dead: list[deadletter.DeadLetter] = field(default_factory=list)
    offsets: dict[int, int] = field(default_factory=dict)  # partition -> newest offset taken


def classify(messages: list[Message], stack: str, declared: Mapping[str, Trait], now: float) -> TraitsBatch:
    """Pure: the writes and the dead letters of a batch of traits messages."""
    batch = TraitsBatch()
    for message in messages:
        if message.error() is not None:
            log.warning("traits consumer error: %s", message.error())
            continue
        partition, offset = message.partition(), message.offset()
        if partition is not None and offset is not None:
            batch.offsets[partition] = max(offset, batch.offsets.get(partition, -1))
        value = message.value()
        if not value:
            batch.dead.append(deadletter.DeadLetter(message, deadletter.UNDECODABLE, [
                {"field": "(message)", "message": "the message has no value"}
            ]))  # fmt: skip
            continue
        try:
            event = profile_traits.parse_event(value)
        except ValidationError as error:
            undecodable = any(item["type"] == "json_invalid" for item in error.errors(include_url=False))
            reason = deadletter.UNDECODABLE if undecodable else deadletter.INVALID
            batch.dead.append(deadletter.DeadLetter(message, reason, events.field_errors(error)))
            continue
        try:
            values = profile_traits.validate(declared, event.data.traits)
        except profile_traits.Problem as problem:
            errors = [{"field": f"data.traits.{p['trait']}", "message": p["error"]} for p in problem.problems]
            batch.dead.append(deadletter.DeadLetter(message, INVALID_TRAIT, errors))
            continue
        at = event.time.timestamp()
        batch.commands.append(
            profile_traits.write_command(stack, event.data.user_id, declared, values, at, now)
        )
    return batch


class TraitsLoop:
    """The traits consumer and its thread. `client`: the stack's Kafka settings (tailor.core.kafkaclient)."""

    def __init__(
        self, client: Mapping[str, Any], config: StackConfig, group: str, redis_client: redis.Redis,
        *, retry_seconds: float = 0.5, clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.stack = config.key
        self.declared = profile_traits.declared(config.features.traits)
        self.redis = redis_client
        self.retry_seconds = retry_seconds
        self.clock = clock
        self.consumer = EventConsumer(client, config.kafka.traits_topic, group)
        self.dead_letters = deadletter.DeadLetterProducer(client, config.kafka.dead_letter_topic)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traits", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("consuming traits from %s", self.consumer.topic)

    def stop(self) -> None:
        """Finish the batch in hand, store its offsets, leave the group."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.consumer.close()
        self.dead_letters.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                messages = self.consumer.take(BATCH, 0.5)
            except KafkaException as error:
                log.warning("traits consumer: %s", error)
                self._stopping.wait(self.retry_seconds)
                continue
            if not messages:
                continue
            work = classify(messages, self.stack, self.declared, self.clock())
            while not self._done(work):
                if self._stopping.wait(self.retry_seconds):
                    log.info("stopping with a traits batch not written; it will be replayed")
                    return
            self.consumer.store(work.offsets)

    def _done(self, work: TraitsBatch) -> bool:
        """Write the batch and dead-letter its refused messages; False to retry it (always safe: the
        newer write of a trait wins, so writing one twice changes nothing)."""
        try:
            written, stale, expired = self._write(work.commands)
        except redis.RedisError as error:
            log.warning("traits write failed, retrying the batch: %s", error)
            return False
        if work.dead and not self.dead_letters.send(work.dead):
            return False
        metrics.TRAITS_WRITTEN.labels("topic").inc(written)
        metrics.TRAITS_STALE.inc(stale)
        metrics.TRAITS_EXPIRED.inc(expired)
        for letter in work.dead:
            metrics.TRAITS_REJECTED.labels("topic", letter.reason).inc()
            metrics.DEAD_LETTERS.labels(letter.reason).inc()
        return True

    def _write(self, commands: list[profile_traits.Command]) -> tuple[int, int, int]:
        if not commands:
            return 0, 0, 0
        for attempt in range(2):
            pipe = self.redis.pipeline(transaction=False)
            for command in commands:  # ("EVALSHA", sha, 1, key, *args)
                pipe.evalsha(command[1], 1, *command[3:])
            replies = pipe.execute(raise_on_error=False)
            if attempt == 0 and any(profile_traits.is_missing_script(r) for r in replies):
                self.redis.script_load(profile_traits.SCRIPT)  # Redis restarted, or never saw it
                continue
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            return (
                sum(int(r[0]) for r in replies),
                sum(int(r[1]) for r in replies),
                sum(int(r[2]) for r in replies),
            )
        raise redis.RedisError("the traits script could not be loaded")
