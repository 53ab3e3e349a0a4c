"""The dead-letter topic: messages a worker cannot count, kept with the reason instead of lost.

The original value, key and headers are kept as they came, so a fixed message can be replayed onto
the events topic as it is; `tailor-dlq-*` headers say why it was refused and where it came from.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message, Producer

from tailor.core.logthrottle import RepeatThrottle

log = logging.getLogger(__name__)
log.addFilter(RepeatThrottle())  # librdkafka repeats a failing connection every few ms

HEADER_REASON = "tailor-dlq-reason"
HEADER_ERROR = "tailor-dlq-error"
HEADER_SOURCE = "tailor-dlq-source"
MAX_ERROR_BYTES = 4096

UNDECODABLE = "undecodable"  # not JSON (or no value at all)
INVALID = "invalid"  # JSON, but not an event v1


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message: Message
    reason: str
    errors: list[dict[str, str]]


class DeadLetterProducer:
    def __init__(self, client: Mapping[str, Any], topic: str) -> None:
        """`client`: the stack's connection settings and callbacks (tailor.core.kafkaclient)."""
        self.topic = topic
        self._producer = Producer(
            {
                **client,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "allow.auto.create.topics": False,  # the operator's to make (docs/topics.md)
            },
            logger=log,
        )
        self._failed: list[KafkaError] = []

    def send(self, letters: list[DeadLetter], timeout: float = 10.0) -> bool:
        """Produce every letter and wait for the broker; False if any was not acknowledged."""
        self._failed = []
        for letter in letters:
            message = letter.message
            detail = orjson.dumps(letter.errors)[:MAX_ERROR_BYTES]
            original = message.headers() or []
            # Received headers come as a list of pairs; keep them, in order, ahead of ours.
            headers = list(original.items()) if isinstance(original, dict) else list(original)
            headers += [
                (HEADER_REASON, letter.reason.encode()),
                (HEADER_ERROR, detail),
                (HEADER_SOURCE, f"{message.topic()}/{message.partition()}/{message.offset()}".encode()),
            ]
            self._producer.produce(
                self.topic,
                value=message.value(),
                key=message.key(),
                headers=headers,
                on_delivery=self._delivered,
            )
        remaining = self._producer.flush(timeout)
        return remaining == 0 and not self._failed

    def _delivered(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._failed.append(error)
            log.warning("dead letter not delivered: %s", error)

    def close(self) -> None:
        self._producer.flush(10.0)
