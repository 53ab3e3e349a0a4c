"""The operator's settings: command-line flags over TAILOR_OPERATOR_* environment variables over defaults."""

from __future__ import annotations

import os
import random
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _random_priority() -> int:
    # kopf pauses every operator of a peering that sees a peer of the same priority, so replicas of
    # one Deployment need distinct priorities: the highest acts, the others stand by.
    return random.randint(1, 1_000_000)


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAILOR_OPERATOR_", frozen=True)

    namespace: str | None = None
    """Watch only this namespace, or these (comma-separated: `shop,checkout`), with a namespaced
    KopfPeering in each; None watches all (the chart's operator.clusterWide)."""

    image_allowlist: tuple[str, ...] = ()
    """Shell-style patterns of the images stacks may run (spec.image, spec.redis.image), e.g.
    `["registry.example.com/tailor/*"]` (JSON in TAILOR_OPERATOR_IMAGE_ALLOWLIST); empty allows any
    (images.py)."""

    ruleset_signing: Literal["stack", "development"] | None = None
    """The key new stacks' rulesets are signed with: `stack` generates one per stack into a Secret,
    `development` uses the public development key (for an operator beside local readers, which trust
    it when given no keys). Unset: `stack` in a pod (KUBERNETES_SERVICE_HOST set), else `development`.
    An existing Secret is used as it is either way (reconcile/ruleset_keys.py)."""

    @property
    def development_signing(self) -> bool:
        if self.ruleset_signing is not None:
            return self.ruleset_signing == "development"
        return not os.environ.get("KUBERNETES_SERVICE_HOST")

    redis_url: str | None = None
    """Reach every stack's Redis here instead of at spec.redis.url or the managed Service's in-cluster
    address: for an operator running outside the cluster (port-forward, or a local Redis in tests)."""

    metrics_port: int = 9090
    """Prometheus /metrics; 0 disables it."""

    liveness_url: str | None = "http://0.0.0.0:8080/healthz"
    """kopf's liveness endpoint; None disables it."""

    peering: str = "tailor"
    """Name of the (Cluster)KopfPeering; created at start when missing."""

    standalone: bool = False
    """No peering at all (a single operator, e.g. in development)."""

    priority: int = Field(default_factory=_random_priority)
    """Peering priority: the highest live one acts."""

    peering_lifetime_seconds: int = 20
    """How long a silent peer still counts as alive: the failover time after an operator dies."""

    debounce_seconds: float = 0.02
    """How long a namespace's recompile waits for more changes (a `kubectl apply -f dir/` is a burst)."""

    drift_interval_seconds: float = 30.0
    """How often every stack's children are re-applied, besides the watch on them."""

    stats_interval_seconds: float = 15.0
    """How often live per-variant stats are copied into the rules' status."""

    topics_interval_seconds: float = 60.0
    """How often every stack's topics are compared with its spec (and Strimzi KafkaTopics' status
    read), besides on every change of the stack."""

    kafka_timeout_seconds: float = 10.0
    """How long one look at a stack's Kafka cluster (metadata, create, describe) may take."""

    kafka_probe_seconds: float = 10.0
    """How long the check of a stack's Kafka settings (KafkaConnected, on every reconcile) waits for
    the brokers; 0 turns the check off."""

    @property
    def namespaces(self) -> tuple[str, ...]:
        """The watched namespaces; empty means every namespace."""
        return tuple(part.strip() for part in (self.namespace or "").split(",") if part.strip())
