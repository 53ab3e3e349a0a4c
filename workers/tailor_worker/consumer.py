"""A thin typed wrapper over confluent-kafka's consumer, configured for at-least-once processing.

Offsets are stored by the worker only after a batch is safely in Redis (`enable.auto.offset.store`
is off); librdkafka's auto-commit then commits what was stored, and a revoke or close commits it at
once. A crash between the Redis write and the commit replays the batch, which dedup makes harmless.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from tailor.core.logthrottle import RepeatThrottle
from tailor_worker import metrics

log = logging.getLogger(__name__)
log.addFilter(RepeatThrottle())  # librdkafka repeats a down broker every few ms


class EventConsumer:
    def __init__(
        self,
        client: Mapping[str, Any],
        topic: str,
        group_id: str,
        *,
        instance_id: str | None = None,
        session_timeout_ms: int = 10_000,
        on_dropped: Callable[[list[int]], None] | None = None,
    ) -> None:
        self.topic = topic
        self._on_dropped = on_dropped
        # `client`: the stack's connection settings and callbacks (tailor.core.kafkaclient).
        config: dict[str, Any] = {
            **client,
            "group.id": group_id,
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 1000,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # Incremental rebalances: a joining worker does not stop the others.
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": session_timeout_ms,
            "enable.partition.eof": False,
            # A broker that stops answering fails its requests in 30 s (librdkafka waits 60 by
            # default), and a dead peer of an idle connection is noticed by TCP keepalive.
            "socket.timeout.ms": 30_000,
            "socket.keepalive.enable": True,
        }
        if instance_id:
            config["group.instance.id"] = instance_id
        self.assigned: set[int] = set()
        self._processed: dict[int, int] = {}  # partition -> next offset to process
        self._consumer = Consumer(config, logger=log)
        self._consumer.subscribe(
            [topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    def take(self, batch_size: int, wait_seconds: float) -> list[Message]:
        """Up to `batch_size` messages: wait for the first, then take only what has already arrived,
        so a quiet topic still gets each event processed at once (freshness)."""
        first = self._consumer.consume(1, timeout=wait_seconds)
        if not first or batch_size <= 1:
            return first
        return first + self._consumer.consume(batch_size - 1, timeout=0)

    def store(self, newest: Mapping[int, int]) -> None:
        """Mark messages processed up to `newest` (partition -> its newest offset processed, as
        batch.classify gathers it): the next offset of each partition, committed soon after."""
        if not newest:
            return
        # Only partitions still ours: one revoked while the batch was written is its new owner's to
        # replay (dedup makes that harmless), and must not fail the store of the others.
        offsets = [
            TopicPartition(self.topic, partition, offset + 1)
            for partition, offset in newest.items()
            if partition in self.assigned
        ]
        try:
            if offsets:
                self._consumer.store_offsets(offsets=offsets)
        except KafkaException as error:
            log.warning("could not store offsets %s: %s", offsets, error)
        for stored in offsets:
            self._processed[stored.partition] = stored.offset
        self.refresh_lag()

    def refresh_lag(self, *, ask_broker: bool = False) -> None:
        """Set the lag gauge of every assigned partition: its end minus what is processed.

        Called after each batch (with the end offsets librdkafka saw in its last fetch), and while a
        batch is stuck being retried (`ask_broker`: the fetcher may have stopped, so ask), so that a
        worker that does not move shows a lag that grows rather than one that stands still.
        """
        for partition in sorted(self.assigned):
            done = self._processed.get(partition)
            if done is None:
                continue  # nothing processed since it was assigned: no honest figure yet
            try:
                _, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, partition), timeout=2.0, cached=not ask_broker
                )
            except KafkaException:
                continue
            if high >= 0:
                metrics.LAG.labels(self.topic, str(partition)).set(max(0, high - done))

    def reaches_brokers(self, timeout: float = 1.0) -> bool:
        """Whether the brokers answer a metadata request for the topic now."""
        try:
            metadata = self._consumer.list_topics(self.topic, timeout=timeout)
        except KafkaException:
            return False
        found = metadata.topics.get(self.topic)
        return found is not None and found.error is None

    def commit(self) -> None:
        """Commit stored offsets now (revoke, shutdown); nothing stored is not an error."""
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as error:
            if error.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("offset commit failed: %s", error)

    def close(self) -> None:
        """Leave the group cleanly, committing what was stored."""
        self.commit()
        self._consumer.close()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned.update(p.partition for p in partitions)
        log.info("assigned %s", sorted(p.partition for p in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Batches are processed between consume calls, so everything taken so far is stored already;
        # commit it before another worker starts on these partitions.
        self.commit()
        self._forget(partitions)
        log.info("revoked %s", sorted(p.partition for p in partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: the group moved on without us, committing could overwrite the new owner.
        self._forget(partitions)
        log.warning("lost %s", sorted(p.partition for p in partitions))

    def _forget(self, partitions: list[TopicPartition]) -> None:
        if self._on_dropped is not None:  # the worker stops trusting its cached state of their users
            self._on_dropped([p.partition for p in partitions])
        for p in partitions:
            self.assigned.discard(p.partition)
            self._processed.pop(p.partition, None)
            with contextlib.suppress(KeyError):
                metrics.LAG.remove(self.topic, str(p.partition))
