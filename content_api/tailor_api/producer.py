"""An asyncio face on confluent-kafka's producer: produce a batch, await the broker's acknowledgement.

`send_all` produces every message of a request and returns once librdkafka's delivery reports say
all were acknowledged (acks=all, idempotent), or raises `Unavailable` if any was not. Delivery
reports are served either by a dedicated poll thread that wakes the event loop once per request
(`mode="thread"`, the default: the loop never blocks in librdkafka) or by the event loop itself
polling while requests wait (`mode="loop"`); bench/collector.py measures both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from tailor.core.logthrottle import RepeatThrottle

log = logging.getLogger(__name__)
log.addFilter(RepeatThrottle())  # librdkafka repeats a down broker every few ms

Headers = list[tuple[str, str | bytes | None]]
Outgoing = tuple[bytes, bytes, Headers]  # key, value, headers


class Unavailable(Exception):
    """Kafka did not acknowledge (down, unreachable, timed out, queue full): the client should retry."""


class _Pending:
    """The delivery reports of one request, counted down by the poll side."""

    __slots__ = ("error", "future", "loop", "remaining")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.remaining = count
        self.error: KafkaError | None = None

    def delivered(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None and self.error is None:
            self.error = error
        self.remaining -= 1
        if self.remaining == 0:
            self.loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class AsyncProducer:
    def __init__(
        self,
        client: Mapping[str, Any],
        *,
        delivery_timeout_seconds: float = 5.0,
        linger_ms: float = 2.0,
        compression: str = "none",
        mode: Literal["thread", "loop"] = "thread",
        extra: dict[str, str | int | float | bool] | None = None,
    ) -> None:
        self.delivery_timeout_seconds = delivery_timeout_seconds
        self.mode = mode
        config: dict[str, Any] = {
            # A function, not a bound method: librdkafka's handle holds its callbacks where the garbage
            # collector cannot see them, so `self` there would keep this object and its producer (threads,
            # broker connections) alive forever after close. `client` may bring its own (error_cb).
            "error_cb": _log_kafka_error,
            **client,  # the stack's servers and security (tailor.core.kafkaclient)
            # Idempotence implies acks=all and ordered, duplicate-free retries per partition.
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": linger_ms,
            "compression.type": compression,
            # A message not acknowledged in time fails its request with 503: the client resends.
            "message.timeout.ms": int(delivery_timeout_seconds * 1000),
            # Topics are the operator's to make, with the stack's settings (docs/topics.md): a broker
            # that auto-creates topics must not make one with its own defaults on our first send.
            "allow.auto.create.topics": False,
            **(extra or {}),
        }
        self._producer = Producer(config, logger=log)
        self._running = True
        self._waiting = 0
        self._loop_poller: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        if mode == "thread":
            self._thread = threading.Thread(target=self._poll_forever, name="kafka-delivery", daemon=True)
            self._thread.start()

    async def send_all(self, topic: str, messages: Sequence[Outgoing], *, timestamp_ms: int = 0) -> None:
        """Produce `messages` (with `timestamp_ms` as their Kafka timestamp; 0: now) and wait until the
        broker acknowledged each; `Unavailable` otherwise."""
        if not messages:
            return
        pending = _Pending(asyncio.get_running_loop(), len(messages))
        produce = self._producer.produce
        try:
            for key, value, headers in messages:
                produce(
                    topic, value, key, headers=headers, on_delivery=pending.delivered, timestamp=timestamp_ms
                )
        except BufferError as error:
            raise Unavailable("the producer queue is full") from error
        except KafkaException as error:
            raise Unavailable(str(error)) from error
        if self.mode == "loop":
            self._ensure_loop_poller()
        self._waiting += 1
        try:
            # librdkafka fails undelivered messages after message.timeout.ms; the margin only guards
            # against a report that never comes.
            await asyncio.wait_for(asyncio.shield(pending.future), self.delivery_timeout_seconds + 5.0)
        except TimeoutError as error:
            raise Unavailable("no delivery report from Kafka in time") from error
        finally:
            self._waiting -= 1
        if pending.error is not None:
            raise Unavailable(pending.error.str())

    def _poll_forever(self) -> None:
        while self._running:
            self._producer.poll(0.05)

    def _ensure_loop_poller(self) -> None:
        if self._loop_poller is None or self._loop_poller.done():
            self._loop_poller = asyncio.get_running_loop().create_task(self._poll_on_loop())

    async def _poll_on_loop(self) -> None:
        # Serve delivery reports while anyone waits, yielding to the loop between polls.
        while self._running and self._waiting:
            self._producer.poll(0)
            await asyncio.sleep(0.0005)

    async def close(self, flush_seconds: float = 10.0) -> None:
        """Deliver what is queued (for up to `flush_seconds`), then stop polling."""
        remaining = await asyncio.to_thread(self._producer.flush, flush_seconds)
        if remaining:
            log.warning("%d events were not delivered before close", remaining)
        self._running = False
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 1.0)
        if self._loop_poller is not None:
            self._loop_poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_poller


def _log_kafka_error(error: KafkaError) -> None:
    # Brokers down or unreachable: librdkafka keeps retrying; requests meanwhile get 503s.
    log.warning("Kafka producer: %s", error)
