"""Creating a stack's Kafka topics when they are missing (events and dead letters).

Both the collector and the workers call this at start: whichever comes up first makes the topics
with the stack's partition count, instead of relying on broker auto-creation (one partition, which
would cap the consumer group at one worker).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import admin as kafka_admin
from confluent_kafka.cimpl import NewTopic

log = logging.getLogger(__name__)


def ensure(
    bootstrap_servers: str, names: Iterable[str], partitions: int, *, timeout: float = 15.0
) -> list[str]:
    """Create each missing topic; returns the names created. Existing topics are left as they are."""
    admin = kafka_admin.AdminClient({"bootstrap.servers": bootstrap_servers})
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [name for name in dict.fromkeys(names) if name not in existing]
    if not missing:
        return []
    # Replication factor -1: the broker's default.replication.factor (1 on a dev broker, 3 in prod).
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=-1) for name in missing],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            created.append(name)
            log.info("created topic %s with %d partitions", name, partitions)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # another replica won the race
                raise
    return created
