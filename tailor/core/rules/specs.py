"""Typed models of the three custom resources' specs, as users write them (camelCase on the wire).

The CRDs in crds/ are the schema the API server enforces; these models are how Python reads a spec that
passed it: the compiler, `tailor validate`, `tailor diff` and `tailor simulate` all parse manifests
here. Defaults equal the CRDs' defaults, so a manifest read offline means what the API server stores.
Cross-resource meaning (does that variant exist? is that window declared?) is the compiler's job.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from tailor.core import constants
from tailor.core.constants import Feature
from tailor.core.rules.ruleset import ContentType, KafkaProtocol, Operator, SaslMechanism, Strategy

DEFAULT_IMAGE = "ghcr.io/tailor-dev/tailor:0.1.0"


class SpecModel(BaseModel):
    """camelCase aliases, Python names; unknown fields are an error (the API server prunes them)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")


# --- PersonalizationStack ----------------------------------------------------------------------------


class SecretKeyRef(SpecModel):
    name: str
    key: str


class PasswordSecretRef(SecretKeyRef):
    key: str = "password"


class UsernameSecretRef(SecretKeyRef):
    key: str = "username"


class CaSecretRef(SecretKeyRef):
    key: str = "ca.crt"


class TlsSecretRef(SpecModel):
    """A Secret of type kubernetes.io/tls: its keys tls.crt and tls.key."""

    name: str


class TokenSecretRef(SecretKeyRef):
    key: str = "token"


# --- PersonalizationStack: how its pods are placed, disrupted and scaled -----------------------------
# Kubernetes types (affinity, tolerations, volumes, env) stay the plain camelCase dicts the CRD let
# through: the operator copies them into the pod templates as written (tailor_operator/templates.py).


class PodMetadataTemplate(SpecModel):
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class LocalObjectReference(SpecModel):
    name: str


class PodSettings(SpecModel):
    metadata: PodMetadataTemplate = PodMetadataTemplate()
    image_pull_secrets: tuple[LocalObjectReference, ...] = ()
    node_selector: dict[str, str] = Field(default_factory=dict)
    affinity: dict[str, Any] | None = None
    tolerations: tuple[dict[str, Any], ...] = ()
    topology_spread_constraints: tuple[dict[str, Any], ...] = ()
    priority_class_name: str | None = None
    service_account_name: str | None = None
    volumes: tuple[dict[str, Any], ...] = ()


class ContainerSettings(SpecModel):
    env: tuple[dict[str, Any], ...] = ()
    volume_mounts: tuple[dict[str, Any], ...] = ()


class DisruptionBudgetSettings(SpecModel):
    enabled: bool = True
    max_unavailable: int | str | None = None
    min_available: int | None = None


class PodTemplate(SpecModel):
    """A component's pods, in the style of Strimzi's `template`: pod, container, PodDisruptionBudget."""

    pod: PodSettings = PodSettings()
    container: ContainerSettings = ContainerSettings()
    pod_disruption_budget: DisruptionBudgetSettings = DisruptionBudgetSettings()


class KedaAuthenticationRef(SpecModel):
    name: str
    kind: Literal["TriggerAuthentication", "ClusterTriggerAuthentication"] = "TriggerAuthentication"


class WorkerAutoscaling(SpecModel):
    enabled: bool = False
    mode: Literal["Auto", "KEDA", "HPA"] = "Auto"
    min_replicas: int = 1
    max_replicas: int | None = None
    lag_threshold: int = 10_000
    target_cpu_utilization_percentage: int = Field(70, alias="targetCPUUtilizationPercentage")
    authentication_ref: KedaAuthenticationRef | None = None


class ContentApiAutoscaling(SpecModel):
    enabled: bool = False
    min_replicas: int = 2
    max_replicas: int | None = None
    target_cpu_utilization_percentage: int = Field(70, alias="targetCPUUtilizationPercentage")


class StrimziTopics(SpecModel):
    cluster: str


class KafkaTopics(SpecModel):
    # None: qualified by the stack (tailor.core.rules.compiler.topic_names). Stacks created before
    # names were qualified keep the old default, stored in them by the API server.
    events: str | None = None
    dead_letter: str | None = None
    traits: str | None = None  # None: qualified by the stack (tailor.<ns>.<stack>.traits)
    management: Literal["operator", "strimzi", "none"] = "operator"
    replication_factor: int | None = None
    min_in_sync_replicas: int | None = None
    retention: str | None = None
    dead_letter_retention: str | None = None
    strimzi: StrimziTopics | None = None


class ClientCertificateSecretRef(SpecModel):
    """A Secret holding a client certificate and its key, as cert-manager and Strimzi's KafkaUser write."""

    name: str
    certificate: str = "tls.crt"
    key: str = "tls.key"


class ClientSecretRef(SecretKeyRef):
    key: str = "clientSecret"


class KafkaTlsSpec(SpecModel):
    ca_secret_ref: CaSecretRef | None = None
    client_certificate_secret_ref: ClientCertificateSecretRef | None = None
    verify_hostname: bool = True


class KafkaOidcSpec(SpecModel):
    token_endpoint: str
    client_id: str
    client_secret_ref: ClientSecretRef
    scope: str | None = None
    extensions: dict[str, str] = Field(default_factory=dict)
    ca_secret_ref: CaSecretRef | None = None


class KafkaAwsMskIamSpec(SpecModel):
    region: str


class KafkaSaslSpec(SpecModel):
    mechanism: SaslMechanism
    username: str | None = None
    password_secret_ref: PasswordSecretRef | None = None
    oidc: KafkaOidcSpec | None = None
    aws_msk_iam: KafkaAwsMskIamSpec | None = None


class KafkaSecuritySpec(SpecModel):
    protocol: KafkaProtocol
    tls: KafkaTlsSpec | None = None
    sasl: KafkaSaslSpec | None = None


class KafkaSpec(SpecModel):
    bootstrap_servers: str
    partitions: int = 6
    topics: KafkaTopics = KafkaTopics()
    security: KafkaSecuritySpec | None = None


class KinesisCredentialsSecretRef(SpecModel):
    """An AWS access key in a Secret; without one the pods use their own identity (IRSA)."""

    name: str
    access_key_id_key: str = "AWS_ACCESS_KEY_ID"
    secret_access_key_key: str = "AWS_SECRET_ACCESS_KEY"


class KinesisSourceSpec(SpecModel):
    stream: str
    region: str
    endpoint: str | None = None
    credentials_secret_ref: KinesisCredentialsSecretRef | None = None


class SourceSpec(SpecModel):
    """spec.source: where the collector puts events and the workers read them (docs/kinesis.md)."""

    kind: Literal["kafka", "kinesis"] = "kafka"
    kinesis: KinesisSourceSpec | None = None


class RedisTls(SpecModel):
    ca_secret_ref: CaSecretRef | None = None
    client_certificate_secret_ref: TlsSecretRef | None = None


class RedisSpec(SpecModel):
    managed: bool = False
    url: str | None = None
    # standalone or cluster (tailor.core.redis_target: how every component's client is built)
    mode: Literal["standalone", "cluster"] = "standalone"
    wait_replicas: int = 0  # replicas a worker's batch must reach before its offsets are stored
    username: str | None = None
    username_secret_ref: UsernameSecretRef | None = None
    password_secret_ref: PasswordSecretRef | None = None
    tls: RedisTls | None = None
    image: str = "redis:7.4-alpine"
    # The managed Redis' own settings (docs/operating.md#redis-security).
    storage: str = "1Gi"
    storage_class_name: str | None = None
    resources: dict[str, Any] | None = None
    maxmemory: str | None = None  # None: 80 % of the memory limit
    appendfsync: Literal["always", "everysec", "no"] = "always"
    template: PodTemplate = PodTemplate()


class FeaturesSpec(SpecModel):
    windows: tuple[str, ...] = ("5m", "30m", "24h")
    dimensions: tuple[str, ...] = ("category", "productId", "query")
    # None: the largest window (tailor.core.rules.compiler.lateness_seconds), so every event a window can
    # still hold is counted however late it arrives.
    allowed_lateness: str | None = None
    session_timeout: str = "30m"
    recent_limit: int = 20


class TraitSpec(SpecModel):
    """spec.traits[]: a per-user attribute written from outside (docs/traits.md)."""

    name: str
    type: Literal["number", "string", "boolean"]
    ttl: str = "720h"
    minimum: float | None = None
    maximum: float | None = None
    values: tuple[str, ...] = ()
    max_length: int = 256
    description: str | None = None


class WorkerLimits(SpecModel):
    """Per-user caps of the workers (docs/operating.md, "Per-user caps"); the defaults are
    tailor.core.profile.store's."""

    events_per_user_per_minute: int = 300
    dedup_marks_per_user: int = 10_000


class WorkersSpec(SpecModel):
    replicas: int = 1
    resources: dict[str, Any] | None = None
    autoscaling: WorkerAutoscaling = WorkerAutoscaling()
    limits: WorkerLimits = WorkerLimits()
    template: PodTemplate = PodTemplate()


class CollectorSpec(SpecModel):
    separate: bool = False
    replicas: int = 2
    resources: dict[str, Any] | None = None


class IdentitySecretRef(SpecModel):
    name: str


class IdentitySpec(SpecModel):
    """Signed user identity (docs/identity.md): tokens the shop's backend issues, verified by the API."""

    mode: Literal["off", "optional", "required"] = "off"
    secret_ref: IdentitySecretRef | None = None
    algorithms: tuple[Literal["HS256", "ES256", "EdDSA"], ...] = ("HS256", "ES256", "EdDSA")
    max_token_lifetime: str = "24h"


class RateLimitSpec(SpecModel):
    requests: int
    per: str = "1m"


class RateLimitsSpec(SpecModel):
    # Defaults a storefront stays far below (docs/content-api.md#rate-limits): a page makes a few calls, and a
    # shop's visitors behind one carrier NAT share an address, hence the larger per-client allowance.
    per_client: RateLimitSpec = RateLimitSpec(requests=1200)
    per_user: RateLimitSpec = RateLimitSpec(requests=600)
    trusted_proxies: tuple[str, ...] = ()


class ContentApiSpec(SpecModel):
    replicas: int = 2
    resources: dict[str, Any] | None = None
    autoscaling: ContentApiAutoscaling = ContentApiAutoscaling()
    template: PodTemplate = PodTemplate()
    collector: CollectorSpec = CollectorSpec()
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    cors_origins: tuple[str, ...] = ()
    admin_token_secret_ref: TokenSecretRef | None = None
    suppression: str = "168h"
    max_batch_events: int = 500
    max_body_bytes: int = 1_048_576
    identity: IdentitySpec = IdentitySpec()
    rate_limits: RateLimitsSpec = RateLimitsSpec()


class LoggingSpec(SpecModel):
    format: Literal["text", "json"] = "text"


class NetworkPoliciesSpec(SpecModel):
    """The stack's NetworkPolicies (operator builders.network_policies); peers are NetworkPolicyPeer
    dicts as the CRD checked them, empty meaning anyone."""

    enabled: bool = True
    content_api_from: tuple[dict[str, Any], ...] = ()
    metrics_from: tuple[dict[str, Any], ...] = ()


class StackSpec(SpecModel):
    image: str = DEFAULT_IMAGE
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    kill_switch: bool = False
    source: SourceSpec = SourceSpec()
    # None only with a Kinesis source (the CRD's rule): then no Kafka is used (docs/kinesis.md).
    kafka: KafkaSpec | None = None
    redis: RedisSpec
    features: FeaturesSpec = FeaturesSpec()
    traits: tuple[TraitSpec, ...] = ()
    workers: WorkersSpec = WorkersSpec()
    content_api: ContentApiSpec = ContentApiSpec()
    logging: LoggingSpec = LoggingSpec()
    network_policies: NetworkPoliciesSpec = NetworkPoliciesSpec()

    @model_validator(mode="after")
    def _one_source(self) -> StackSpec:
        # The CRD's CEL rules, for manifests read offline (tailor validate).
        if self.source.kind == "kafka" and self.kafka is None:
            raise ValueError("spec.kafka is required unless spec.source.kind is kinesis")
        if (self.source.kind == "kinesis") != (self.source.kinesis is not None):
            raise ValueError("spec.source.kinesis is required with source.kind kinesis, and only then")
        return self

    @property
    def kinesis(self) -> KinesisSourceSpec | None:
        """The stream the events go through when the source is Kinesis; None with Kafka."""
        return self.source.kinesis if self.source.kind == "kinesis" else None

    @property
    def kafka_security(self) -> KafkaSecuritySpec | None:
        return self.kafka.security if self.kafka is not None else None


# --- ContentVariant ----------------------------------------------------------------------------------


class Content(SpecModel):
    type: ContentType
    body: str | None = None
    data: Any = None


class Schedule(SpecModel):
    start: datetime.datetime | None = None
    end: datetime.datetime | None = None


class VariantSpec(SpecModel):
    slot: str
    content: Content
    weight: float = 1.0
    tags: tuple[str, ...] = ()
    fallback: bool = False
    schedule: Schedule | None = None


# --- PersonalizationRule -----------------------------------------------------------------------------


class MatcherSpec(SpecModel):
    feature: Feature | None = None
    dimension: str | None = None
    value: str | None = None
    window: str | None = None
    op: Operator = "gte"
    threshold: float = 1
    trait: str | None = None  # instead of feature and window: the user's trait (docs/traits.md)


class SelectorRequirement(SpecModel):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[str, ...] = ()


class LabelSelector(SpecModel):
    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: tuple[SelectorRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Kubernetes label-selector semantics: every label and every expression must hold."""
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                return False
        for requirement in self.match_expressions:
            present = requirement.key in labels
            if requirement.operator == "In":
                ok = present and labels[requirement.key] in requirement.values
            elif requirement.operator == "NotIn":
                ok = not present or labels[requirement.key] not in requirement.values
            elif requirement.operator == "Exists":
                ok = present
            else:
                ok = not present
            if not ok:
                return False
        return True


class VariantsRef(SpecModel):
    names: tuple[str, ...] | None = None
    selector: LabelSelector | None = None


class ProfileSegmentSpec(SpecModel):
    feature: Feature
    dimension: str
    window: str


class BanditContextSpec(SpecModel):
    profile: ProfileSegmentSpec | None = None
    trait: str | None = None
    max_segments: int = 8
    prior_weight: float = 20.0


class Rotation(SpecModel):
    strategy: Strategy = "weighted"
    seed: str | None = None
    context: BanditContextSpec | None = None


class PerUserCap(SpecModel):
    count: int
    window: str


class FrequencyCapSpec(SpecModel):
    per_session: int | None = None
    per_user: PerUserCap | None = None


class Rollout(SpecModel):
    percentage: float = 100.0


class RuleSpec(SpecModel):
    slot: str
    priority: int = 0
    enabled: bool = True
    audience: tuple[MatcherSpec, ...] = ()
    when: str | None = None
    variants: VariantsRef
    rotation: Rotation = Rotation()
    frequency_cap: FrequencyCapSpec | None = None
    rollout: Rollout = Rollout()


# --- Manifests ---------------------------------------------------------------------------------------

Kind = Literal["PersonalizationStack", "PersonalizationRule", "ContentVariant"]
KINDS: tuple[Kind, ...] = (constants.STACK_KIND, constants.RULE_KIND, constants.VARIANT_KIND)
SPEC_MODELS: dict[str, type[SpecModel]] = {
    constants.STACK_KIND: StackSpec,
    constants.RULE_KIND: RuleSpec,
    constants.VARIANT_KIND: VariantSpec,
}


class Source(BaseModel):
    """One custom resource as the compiler sees it: identity, labels and the raw spec.

    The spec stays raw (a dict) so that one malformed resource fails on its own, with its own error,
    instead of failing the parse of the whole namespace.
    """

    model_config = ConfigDict(frozen=True)

    kind: Kind
    name: str
    namespace: str = "default"
    uid: str = ""
    generation: int = 0
    created: str = ""  # metadata.creationTimestamp; older wins a priority tie
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    spec: dict[str, Any] = Field(default_factory=dict)

    @property
    def ref(self) -> str:
        """`Kind/name`, as error lines and Events name a resource."""
        return f"{self.kind}/{self.name}"

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any], default_namespace: str = "default") -> Source:
        metadata = manifest.get("metadata") or {}
        return cls(
            kind=manifest["kind"],
            name=metadata.get("name", ""),
            namespace=metadata.get("namespace") or default_namespace,
            uid=metadata.get("uid", ""),
            generation=int(metadata.get("generation") or 0),
            created=str(metadata.get("creationTimestamp") or ""),
            labels=dict(metadata.get("labels") or {}),
            annotations=dict(metadata.get("annotations") or {}),
            spec=dict(manifest.get("spec") or {}),
        )


def is_tailor_manifest(manifest: Mapping[str, Any]) -> bool:
    api_version = str(manifest.get("apiVersion", ""))
    return api_version.split("/")[0] == constants.API_GROUP and manifest.get("kind") in KINDS
