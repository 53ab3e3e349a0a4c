"""A stack's Kafka topics: what they should be, what the cluster has, and the difference.

The operator owns a stack's topics (docs/topics.md). `reconcile` creates the missing ones
with the stack's settings, adds partitions when the spec asks for more than a topic has, and reports
every other difference without touching the topic: Kafka cannot remove partitions, a replication
change is a reassignment of data, and an existing topic's configuration may be someone else's to
set. The collector and the workers only `missing`-check the topics, so they need no right to create
or alter any.

Every function takes the admin client's librdkafka configuration (`bootstrap.servers` and whatever
security the cluster needs), so this module knows nothing of how clients authenticate.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import admin as kafka_admin

# Public names, re-exported without __all__ (so mypy does not see them as exported).
from confluent_kafka.admin import ConfigResource, ResourceType  # type: ignore[attr-defined]
from confluent_kafka.cimpl import NewPartitions, NewTopic

log = logging.getLogger(__name__)

RETENTION_MS = "retention.ms"
MIN_INSYNC_REPLICAS = "min.insync.replicas"

ClientConfig = Mapping[str, Any]

# Kafka's refusals, as the condition reasons the operator reports them under.
_REASONS = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "NotAuthorized",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "NotAuthorized",
    KafkaError.INVALID_REPLICATION_FACTOR: "ReplicationFactorTooHigh",
    KafkaError.INVALID_CONFIG: "InvalidTopicSettings",
    KafkaError.POLICY_VIOLATION: "InvalidTopicSettings",
    KafkaError.TOPIC_EXCEPTION: "InvalidTopicName",
}


@dataclass(frozen=True)
class Topic:
    """What a topic should be. None leaves a setting to the broker's defaults, and out of comparisons;
    `configs` holds topic-level configurations (retention.ms, min.insync.replicas) as Kafka spells them."""

    name: str
    partitions: int
    replication_factor: int | None = None
    configs: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    """What `reconcile` did and found. `differences` are sentences naming the topic and the setting."""

    created: list[str] = field(default_factory=list)
    grown: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)


class TopicError(Exception):
    """Kafka could not be asked, or refused; `reason` is a CamelCase condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def reconcile(
    client_config: ClientConfig, wanted: Sequence[Topic], *, create: bool = True, timeout: float = 15.0
) -> Outcome:
    """Create the missing topics (when `create`), add partitions the spec asks for, report the rest.

    TopicError when Kafka is unreachable or refuses (a replication factor above the brokers up, an
    authorization, a policy). A topic another client creates meanwhile is taken as it is.
    """
    admin = kafka_admin.AdminClient(dict(client_config))
    metadata = _metadata(admin, client_config, timeout)
    outcome = Outcome()
    absent = [topic for topic in wanted if topic.name not in metadata.topics]
    if absent and not create:
        outcome.missing = [topic.name for topic in absent]
    elif absent:
        _check_replication(absent, len(metadata.brokers))
        outcome.created = _create(admin, absent, timeout)
    present = [topic for topic in wanted if topic.name in metadata.topics]
    for topic in present:
        found = metadata.topics[topic.name]
        if found.error is not None:
            raise _topic_error(topic.name, KafkaException(found.error), "describe")
        partitions = len(found.partitions)
        replicas = max((len(p.replicas) for p in found.partitions.values()), default=0)
        if topic.partitions > partitions:
            _grow(admin, topic, partitions, timeout)
            outcome.grown.append(f"{topic.name}: {partitions} -> {topic.partitions} partitions")
        elif topic.partitions < partitions:
            outcome.differences.append(
                f"{topic.name} has {partitions} partitions, the spec asks {topic.partitions} "
                f"(Kafka cannot remove partitions: set kafka.partitions to {partitions})"
            )
        if topic.replication_factor is not None and topic.replication_factor != replicas:
            outcome.differences.append(
                f"{topic.name} has replication factor {replicas}, the spec asks {topic.replication_factor} "
                "(the operator does not move replicas: reassign them with kafka-reassign-partitions or "
                "Cruise Control)"
            )
    outcome.differences += _config_differences(admin, [t for t in present if t.configs], timeout)
    return outcome


def missing(client_config: ClientConfig, names: Iterable[str], *, timeout: float = 15.0) -> list[str]:
    """The topics of `names` that do not exist: what the collector and workers check at start."""
    admin = kafka_admin.AdminClient(dict(client_config))
    existing = _metadata(admin, client_config, timeout).topics
    return [name for name in dict.fromkeys(names) if name not in existing]


def ensure(
    bootstrap_servers: str, names: Iterable[str], partitions: int, *, timeout: float = 15.0
) -> list[str]:
    """Create each missing topic with the broker's defaults but `partitions`; returns the names created.
    For throwaway stacks (tailor.devstack.scratch, benchmarks) that have no operator to make them."""
    wanted = [Topic(name, partitions) for name in dict.fromkeys(names)]
    return reconcile({"bootstrap.servers": bootstrap_servers}, wanted, timeout=timeout).created


# --- the steps ---------------------------------------------------------------------------------------


def _metadata(admin: kafka_admin.AdminClient, client_config: ClientConfig, timeout: float) -> Any:
    try:
        return admin.list_topics(timeout=timeout)
    except KafkaException as error:
        raise TopicError(
            "KafkaUnavailable",
            f"could not read the metadata of the Kafka cluster at {client_config.get('bootstrap.servers')}: "
            f"{_text(error)}",
        ) from None


def _check_replication(topics: Sequence[Topic], brokers: int) -> None:
    """Kafka refuses too high a replication factor too, but saying how many brokers there are is
    clearer than its message."""
    for topic in topics:
        if topic.replication_factor is not None and topic.replication_factor > brokers:
            raise TopicError(
                "ReplicationFactorTooHigh",
                f"topics.replicationFactor is {topic.replication_factor}, but the Kafka cluster has "
                f"{brokers} broker{'s' if brokers != 1 else ''} up: {topic.name} cannot be created "
                f"with more replicas than brokers",
            )


def _create(admin: kafka_admin.AdminClient, topics: Sequence[Topic], timeout: float) -> list[str]:
    futures = admin.create_topics(
        [
            NewTopic(
                topic.name,
                num_partitions=topic.partitions,
                # -1: the broker's default.replication.factor.
                replication_factor=topic.replication_factor or -1,
                config=dict(topic.configs),
            )
            for topic in topics
        ],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    created = []
    for topic in topics:
        try:
            futures[topic.name].result(timeout=timeout)
        except KafkaException as error:
            if _code(error) == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # made meanwhile (another operator, a person): compared on the next pass
            raise _topic_error(topic.name, error, "create") from None
        created.append(topic.name)
        log.info(
            "created topic %s: %d partitions, replication factor %s, %s",
            topic.name,
            topic.partitions,
            topic.replication_factor or "the broker's default",
            dict(topic.configs) or "the broker's default configuration",
        )
    return created


def _grow(admin: kafka_admin.AdminClient, topic: Topic, before: int, timeout: float) -> None:
    futures = admin.create_partitions(
        [NewPartitions(topic.name, topic.partitions)], operation_timeout=timeout, request_timeout=timeout
    )
    try:
        futures[topic.name].result(timeout=timeout)
    except KafkaException as error:
        raise _topic_error(topic.name, error, "add partitions to") from None
    log.info("topic %s: %d -> %d partitions, as the spec asks", topic.name, before, topic.partitions)


def _config_differences(admin: kafka_admin.AdminClient, topics: Sequence[Topic], timeout: float) -> list[str]:
    if not topics:
        return []
    resources = [ConfigResource(ResourceType.TOPIC, topic.name) for topic in topics]
    futures = admin.describe_configs(resources, request_timeout=timeout)
    differences = []
    for topic, resource in zip(topics, resources, strict=True):
        try:
            entries = futures[resource].result(timeout=timeout)
        except KafkaException as error:
            raise _topic_error(topic.name, error, "describe the configuration of") from None
        for key, value in topic.configs.items():
            entry = entries.get(key)
            actual = None if entry is None else entry.value
            if actual != value:
                differences.append(f"{topic.name} has {key}={actual}, the spec asks {value}")
    return differences


def _code(error: KafkaException) -> Any:
    inner = error.args[0] if error.args else None
    return inner.code() if isinstance(inner, KafkaError) else None


def _text(error: KafkaException) -> str:
    inner = error.args[0] if error.args else None
    return inner.str() if isinstance(inner, KafkaError) else str(error)


def _topic_error(name: str, error: KafkaException, doing: str) -> TopicError:
    reason = _REASONS.get(_code(error), "KafkaRefused")
    advice = (
        " (docs/topics.md#acls says which rights each component needs)" if reason == "NotAuthorized" else ""
    )
    return TopicError(reason, f"could not {doing} topic {name}: {_text(error)}{advice}")
