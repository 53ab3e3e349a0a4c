"""Strimzi KafkaTopics for a stack's topics (`spec.kafka.topics.management: strimzi`): the manifests,
and what their status says. Pure functions, as builders.py; reconcile/topics.py applies them.

A KafkaTopic lives in the stack's namespace (Strimzi's topic operator must watch it), is owned by the
stack, and carries the `strimzi.io/cluster` label without which no topic operator takes it. The topic's
name goes in `spec.topicName`: Kafka allows names (capitals, `_`) that Kubernetes does not, so the
object is named after the stack and the topic's role instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tailor.core import topics
from tailor_operator import builders
from tailor_operator import constants as names

COMPONENT = "topics"
ROLES = ("events", "deadletter")


def object_name(stack: builders.Stack, role: str) -> str:
    return f"{stack.name}-{role}"


def kafka_topic(
    stack: builders.Stack, api_version: str, role: str, topic: topics.Topic, cluster: str
) -> builders.Manifest:
    spec: dict[str, Any] = {"topicName": topic.name, "partitions": topic.partitions}
    if topic.replication_factor is not None:
        spec["replicas"] = topic.replication_factor
    if topic.configs:
        spec["config"] = dict(topic.configs)
    meta = builders.metadata(stack, COMPONENT, object_name(stack, role))
    meta["labels"][names.STRIMZI_CLUSTER_LABEL] = cluster
    return {"apiVersion": api_version, "kind": names.STRIMZI_TOPIC_KIND, "metadata": meta, "spec": spec}


def readiness(kafka_topic: Mapping[str, Any]) -> tuple[bool | None, str]:
    """(True, "") when Strimzi reports the topic Ready for the KafkaTopic's current generation; (False,
    its reason and message) when it reports a problem; (None, why) while no topic operator has
    answered this generation yet."""
    meta = kafka_topic.get("metadata") or {}
    status = kafka_topic.get("status") or {}
    name = meta.get("name")
    observed = status.get("observedGeneration")
    if observed is None or int(observed) < int(meta.get("generation") or 0):
        return None, (
            f"KafkaTopic {name} is not reconciled by Strimzi's topic operator yet (does one watch "
            f"this namespace for cluster {(meta.get('labels') or {}).get(names.STRIMZI_CLUSTER_LABEL)}?)"
        )
    ready = next((c for c in status.get("conditions") or () if c.get("type") == "Ready"), None)
    if ready is None:
        return None, f"KafkaTopic {name} has no Ready condition yet"
    if ready.get("status") == "True":
        return True, ""
    return False, f"KafkaTopic {name}: {ready.get('reason', 'NotReady')}: {ready.get('message', '')}".strip()
