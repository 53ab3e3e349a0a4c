"""The operator's own names: field manager, label values, component names, condition types, handler ids."""

from __future__ import annotations

from typing import Final

from tailor.core import constants

FIELD_MANAGER: Final = "tailor-operator"
# Holds a Deployment's replicas for the moment an autoscaler takes them over (reconcile/children.py).
REPLICAS_FIELD_MANAGER: Final = "tailor-operator-replicas-handover"
MANAGED_BY: Final = "tailor-operator"
APP_NAME: Final = "tailor"

WORKER: Final = "worker"
CONTENT_API: Final = "content-api"
COLLECTOR: Final = "collector"
REDIS: Final = "redis"

API_PORT: Final = 8080
# The content API's admin port (explain, profiles, metrics, health, readiness): on the pods, named
# "admin", never in the Service shoppers reach (docs/operating.md#the-admin-port).
API_ADMIN_PORT: Final = constants.DEFAULT_ADMIN_PORT
WORKER_METRICS_PORT: Final = 9102  # tailor worker's default TAILOR_WORKER_METRICS_PORT
REDIS_PORT: Final = 6379

# Condition types.
READY: Final = "Ready"
RECONCILED: Final = "Reconciled"
WORKERS_READY: Final = "WorkersReady"
CONTENT_API_READY: Final = "ContentApiReady"
COLLECTOR_READY: Final = "CollectorReady"
REDIS_READY: Final = "RedisReady"
TOPICS_READY: Final = "TopicsReady"
RULESET_PUBLISHED: Final = "RulesetPublished"
# The operator's own connection with the stack's Kafka settings (reconcile/kafka_probe.py).
KAFKA_CONNECTED: Final = "KafkaConnected"
RECONCILIATION_PAUSED: Final = "ReconciliationPaused"
COMPONENT_CONDITIONS: Final = {
    WORKER: WORKERS_READY,
    CONTENT_API: CONTENT_API_READY,
    COLLECTOR: COLLECTOR_READY,
    REDIS: REDIS_READY,
}

# Handler ids (kopf records progress under them: never rename one).
HANDLER_STACK_RECONCILE: Final = "stack-reconcile"
HANDLER_STACK_DELETE: Final = "stack-delete"
HANDLER_STACK_DRIFT: Final = "stack-drift"
HANDLER_STACK_STATS: Final = "stack-stats"
HANDLER_STACK_TOPICS: Final = "stack-topics"
HANDLER_STACK_EVENT: Final = "stack-event"
HANDLER_RULE_EVENT: Final = "rule-event"
HANDLER_VARIANT_EVENT: Final = "variant-event"
HANDLER_CHILD_EVENT: Final = "child-event"

PAUSED_ANNOTATION: Final = constants.ANNOTATION_PAUSED

# Strimzi's KafkaTopic: the API versions tried, newest first (v1 from Strimzi 0.49, v1beta2 before),
# and the label naming the Kafka cluster its topic operator serves.
STRIMZI_TOPIC_VERSIONS: Final = ("kafka.strimzi.io/v1", "kafka.strimzi.io/v1beta2")
STRIMZI_TOPIC_KIND: Final = "KafkaTopic"
STRIMZI_CLUSTER_LABEL: Final = "strimzi.io/cluster"

# The worker container's plain (not secret) Kafka login settings, for KEDA's kafka scaler: a
# TriggerAuthentication reads authentication parameters only from Secrets or from the scale target's
# container env, and these are not in any Secret (autoscaling.trigger_authentication).
ENV_KEDA_KAFKA_USERNAME: Final = "TAILOR_KEDA_KAFKA_USERNAME"
ENV_KEDA_KAFKA_TOKEN_ENDPOINT: Final = "TAILOR_KEDA_KAFKA_TOKEN_ENDPOINT"
ENV_KEDA_KAFKA_SCOPES: Final = "TAILOR_KEDA_KAFKA_SCOPES"
ENV_KEDA_KAFKA_EXTENSIONS: Final = "TAILOR_KEDA_KAFKA_EXTENSIONS"
