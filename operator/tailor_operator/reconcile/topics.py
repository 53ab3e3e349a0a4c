"""A stack's Kafka topics, made or checked as `spec.kafka.topics.management` says, and reported as the
stack's TopicsReady condition (docs/topics.md).

- `operator`: Kafka's admin API (tailor.core.topics.reconcile) creates a missing topic with the
  spec's settings and adds partitions the spec asks for; any other difference is reported.
- `strimzi`: a KafkaTopic per topic, applied like any child; Strimzi's topic operator makes the
  topic, and its status becomes the condition.
- `none`: the topics are only compared with the spec.

It runs apart from the children (its own handlers and timer), so Kafka being slow or away never
delays a Deployment, and it never raises for Kafka: the condition says what is wrong and the timer
looks again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from tailor.core import constants, durations, topics
from tailor.core.rules import compiler, ruleset, specs
from tailor_operator import builders, conditions, kafka_access, kube, metrics, strimzi
from tailor_operator import constants as names
from tailor_operator.reconcile import children, stack_status

log = logging.getLogger(__name__)


def wanted_topics(spec: specs.KafkaSpec, kafka: ruleset.KafkaConfig) -> list[topics.Topic]:
    """The events and dead-letter topics as the spec wants them (names already resolved in `kafka`)."""
    settings = spec.topics
    shared = {}
    if settings.min_in_sync_replicas is not None:
        shared[topics.MIN_INSYNC_REPLICAS] = str(settings.min_in_sync_replicas)

    def configs(retention: str | None) -> dict[str, str]:
        if retention is None:
            return dict(shared)
        return {**shared, topics.RETENTION_MS: str(durations.parse_seconds(retention) * 1000)}

    return [
        topics.Topic(
            kafka.events_topic, spec.partitions, settings.replication_factor, configs(settings.retention)
        ),
        topics.Topic(
            kafka.dead_letter_topic,
            spec.partitions,
            settings.replication_factor,
            configs(settings.dead_letter_retention),
        ),
        # Traits (docs/traits.md): made while the stack declares any; kept like the events.
        *(
            [
                topics.Topic(
                    kafka.traits_topic,
                    spec.partitions,
                    settings.replication_factor,
                    configs(settings.retention),
                )
            ]
            if kafka.traits_topic
            else []
        ),
    ]


class TopicsReconciler:
    def __init__(self, client: kube.Kube, book: stack_status.StackStatusBook, kafka_timeout: float) -> None:
        self._kube = client
        self._book = book
        self._timeout = kafka_timeout
        self._locks: dict[str, asyncio.Lock] = {}
        self._reported: dict[str, str] = {}  # stack key -> the last condition logged
        self._strimzi_version: str | None = None

    def forget(self, namespace: str, name: str) -> None:
        self._locks.pop(f"{namespace}/{name}", None)
        self._reported.pop(f"{namespace}/{name}", None)

    async def reconcile(self, source: specs.Source, status: Mapping[str, Any]) -> None:
        if children.is_paused(source):
            return  # the children's reconcile reports ReconciliationPaused
        key = f"{source.namespace}/{source.name}"
        self._book.seed(source.namespace, source.name, status)
        async with self._locks.setdefault(key, asyncio.Lock()):
            with metrics.reconciling("Topics"):
                condition, fields = await self._condition(source)
            await self._book.update(source.namespace, source.name, source.generation, [condition], fields)
        said = f"{condition['status']} {condition['reason']}: {condition['message']}"
        if self._reported.get(key) != said:
            self._reported[key] = said
            level = logging.INFO if condition["status"] == "True" else logging.WARNING
            log.log(level, "topics of %s: %s", key, said)
            if condition["status"] == "False":
                await self._post_event(source, condition)

    async def _condition(self, source: specs.Source) -> tuple[conditions.Condition, dict[str, Any]]:
        generation = source.generation
        try:
            stack = children.parse_stack(source)
            spec = stack.spec.kafka
            kafka = compiler.stack_config(source.namespace, source.name, stack.spec).kafka
            wanted = wanted_topics(spec, kafka) if spec is not None else []
        except (children.InvalidStack, ValueError) as error:
            return conditions.make(names.TOPICS_READY, False, "InvalidSpec", str(error), generation), {}
        if spec is None or stack.spec.kinesis is not None:
            stream = stack.spec.kinesis.stream if stack.spec.kinesis is not None else ""
            message = f"the events go through the Kinesis stream {stream}: no Kafka topics are used"
            return conditions.make(names.TOPICS_READY, True, "KinesisSource", message, generation), {}
        fields = {"topics": {"events": kafka.events_topic, "deadLetter": kafka.dead_letter_topic}}
        management = spec.topics.management
        if management == "strimzi":
            return await self._strimzi(stack, spec.topics.strimzi, wanted, generation), fields
        return await self._kafka(stack, kafka, wanted, management == "operator", generation), fields

    async def _kafka(
        self,
        stack: builders.Stack,
        kafka: ruleset.KafkaConfig,
        wanted: list[topics.Topic],
        create: bool,
        generation: int,
    ) -> conditions.Condition:
        try:
            # With the stack's own security, as its pods connect (kafka_access).
            async with kafka_access.client_config(self._kube, stack.namespace, kafka) as client:
                outcome = await asyncio.to_thread(
                    topics.reconcile, client, wanted, create=create, timeout=self._timeout
                )
        except topics.TopicError as error:
            return conditions.make(names.TOPICS_READY, False, error.reason, str(error), generation)
        except kafka_access.SecretMissing as error:
            return conditions.make(names.TOPICS_READY, False, "SecretMissing", str(error), generation)
        if outcome.missing:
            message = (
                f"{' and '.join(outcome.missing)} missing: with kafka.topics.management none, create "
                "them yourself (docs/topics.md)"
            )
            return conditions.make(names.TOPICS_READY, False, "TopicsMissing", message, generation)
        if outcome.differences:
            message = "; ".join(outcome.differences)
            return conditions.make(names.TOPICS_READY, False, "TopicSettingsDiffer", message, generation)
        done = [f"created {name}" for name in outcome.created] + outcome.grown
        message = f"{' and '.join(t.name for t in wanted)} exist with the spec's settings"
        return conditions.make(
            names.TOPICS_READY, True, "Ready", message + (f" ({'; '.join(done)})" if done else ""), generation
        )

    async def _strimzi(
        self,
        stack: builders.Stack,
        settings: specs.StrimziTopics | None,
        wanted: list[topics.Topic],
        generation: int,
    ) -> conditions.Condition:
        assert settings is not None  # the CRD requires it with management: strimzi
        try:
            version = await self._kafka_topic_version()
        except kube.ApiError as error:
            return conditions.make(names.TOPICS_READY, False, "KafkaTopicNotApplied", str(error), generation)
        if version is None:
            message = (
                "the API server serves no KafkaTopic (kafka.strimzi.io): install Strimzi, or set "
                "kafka.topics.management to operator or none"
            )
            return conditions.make(names.TOPICS_READY, False, "StrimziNotInstalled", message, generation)
        states = []
        for role, topic in zip(strimzi.ROLES, wanted, strict=True):
            manifest = strimzi.kafka_topic(stack, version, role, topic, settings.cluster)
            try:
                applied = await self._kube.apply(manifest)
            except kube.ApiError as error:
                if error.status == 404:
                    self._strimzi_version = None  # the CRD went away: look again next time
                return conditions.make(
                    names.TOPICS_READY,
                    False,
                    "KafkaTopicNotApplied",
                    f"KafkaTopic {topic.name}: {error}",
                    generation,
                )
            states.append(strimzi.readiness(applied))
        problems = [message for ready, message in states if ready is False]
        if problems:
            return conditions.make(
                names.TOPICS_READY, False, "KafkaTopicNotReady", "; ".join(problems), generation
            )
        waiting = [message for ready, message in states if ready is None]
        if waiting:
            return conditions.make(
                names.TOPICS_READY, None, "WaitingForStrimzi", "; ".join(waiting), generation
            )
        objects = " and ".join(f"KafkaTopic {strimzi.object_name(stack, role)}" for role in strimzi.ROLES)
        return conditions.make(names.TOPICS_READY, True, "Ready", f"{objects} Ready in Strimzi", generation)

    async def _kafka_topic_version(self) -> str | None:
        """The newest KafkaTopic version the API server serves, None when Strimzi is not installed
        (kube.serves remembers a no for a while: Strimzi installed later is noticed within that)."""
        if self._strimzi_version is None:
            for api_version in names.STRIMZI_TOPIC_VERSIONS:
                if await self._kube.serves(api_version, names.STRIMZI_TOPIC_KIND):
                    self._strimzi_version = api_version
                    break
        return self._strimzi_version

    async def _post_event(self, source: specs.Source, condition: conditions.Condition) -> None:
        involved = {
            "apiVersion": f"{constants.API_GROUP}/{constants.API_VERSION}",
            "kind": source.kind,
            "metadata": {"name": source.name, "namespace": source.namespace, "uid": source.uid},
        }
        try:
            await self._kube.post_event(involved, str(condition["reason"]), str(condition["message"]))
        except kube.ApiError as error:
            log.warning("could not post an Event on %s/%s: %s", source.namespace, source.name, error)
