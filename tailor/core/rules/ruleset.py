"""The compiled ruleset: the one document the operator publishes and every worker and API replica reads.

It is the contract between the control plane and the data plane. The operator compiles a namespace's
PersonalizationStack, PersonalizationRules and ContentVariants into one immutable, versioned Ruleset;
workers take their Kafka and feature settings from `config`, the content API its rules and variants.
Everything here is already validated, defaulted, resolved (variant selectors become names) and
sanitized (variant HTML), so readers trust it and do no further checks on the hot path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from tailor.core.constants import Feature

FORMAT = 1

ContentType = Literal["html", "text", "json", "image"]
Operator = Literal["gte", "gt", "lte", "lt", "eq", "ne"]
Strategy = Literal["weighted", "sticky", "roundRobin", "bandit"]


class Model(BaseModel):
    """Immutable, camelCase on the wire, strict about unknown fields."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")


class Window(Model):
    """A sliding window: counts are kept in buckets of `bucket_seconds` and summed over `seconds`."""

    name: str
    seconds: int
    bucket_seconds: int


def horizon_seconds(windows: Iterable[Window]) -> int:
    """How old an event can be and still fall inside some window: the largest window, in whole buckets.

    A window of n buckets sums those starting at most n - 1 buckets before the current one, so at any
    moment it holds events up to n buckets old and none older (docs/pipeline.md, "Late events").
    """
    return max((-(-w.seconds // w.bucket_seconds) * w.bucket_seconds for w in windows), default=0)


TraitType = Literal["number", "string", "boolean"]


class Trait(Model):
    """A per-user attribute written from outside (docs/traits.md): by the traits topic or the admin
    PUT, kept `ttl_seconds` after each write, usable in audiences and CEL as `traits.<name>`."""

    name: str
    type: TraitType
    ttl_seconds: int
    minimum: float | None = None  # numbers
    maximum: float | None = None
    values: tuple[str, ...] = ()  # strings: the allowed values (none: any of at most max_length)
    max_length: int = 256


class FeatureConfig(Model):
    windows: tuple[Window, ...]
    dimensions: tuple[str, ...]
    # How far behind its ingestion (Kafka timestamp) an event may be and still be counted: at most
    # the horizon, and the horizon unless the stack chose less (tailor.core.rules.compiler.lateness_seconds).
    allowed_lateness_seconds: int
    recent_limit: int = 20
    session_timeout_seconds: int = 1800
    dedup_ttl_seconds: int = 86400
    traits: tuple[Trait, ...] = ()  # declared by the stack (spec.traits); none: no trait read or written

    @property
    def horizon_seconds(self) -> int:
        return horizon_seconds(self.windows)

    def window(self, name: str) -> Window:
        for window in self.windows:
            if window.name == name:
                return window
        raise KeyError(name)


KafkaProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]


class SecretFile(Model):
    """One key of a Secret in the stack's namespace. Only its name travels in the ruleset (which every
    pod can read); the operator mounts the value into the pods that need it, at
    `<secrets dir>/<secret>/<key>` (tailor.core.kafkaclient)."""

    secret: str
    key: str


class KafkaTls(Model):
    ca: SecretFile | None = None  # None: the system's trusted CAs
    certificate: SecretFile | None = None  # client certificate and key (mutual TLS), both or neither
    key: SecretFile | None = None
    verify_hostname: bool = True


class KafkaOidc(Model):
    """OAUTHBEARER tokens from an OpenID Connect provider by client credentials (librdkafka's own)."""

    token_endpoint: str
    client_id: str
    client_secret: SecretFile
    scope: str | None = None
    extensions: dict[str, str] = Field(default_factory=dict)
    ca: SecretFile | None = None  # trusted for the token endpoint; None: the system's CAs


class KafkaSasl(Model):
    mechanism: SaslMechanism
    username: str | None = None  # PLAIN, SCRAM
    password: SecretFile | None = None  # PLAIN, SCRAM
    oidc: KafkaOidc | None = None  # OAUTHBEARER from an OIDC provider
    aws_msk_iam_region: str | None = None  # OAUTHBEARER: AWS MSK IAM tokens signed with the pod's identity


class KafkaSecurity(Model):
    """How clients connect to the brokers: everything but the secrets' values."""

    protocol: KafkaProtocol = "PLAINTEXT"
    tls: KafkaTls | None = None
    sasl: KafkaSasl | None = None

    def secret_files(self) -> tuple[SecretFile, ...]:
        """Every Secret key the clients read, in a stable order."""
        tls, sasl = self.tls, self.sasl
        files = [tls.ca, tls.certificate, tls.key] if tls else []
        if sasl is not None:
            files += [sasl.password, *((sasl.oidc.client_secret, sasl.oidc.ca) if sasl.oidc else ())]
        return tuple(dict.fromkeys(f for f in files if f is not None))


class KafkaConfig(Model):
    bootstrap_servers: str
    events_topic: str
    dead_letter_topic: str
    traits_topic: str = ""  # consumed by the workers when the stack declares traits (docs/traits.md)
    partitions: int = 6
    security: KafkaSecurity = KafkaSecurity()


class RateLimit(Model):
    """At most `requests` per fixed window of `seconds`; 0 requests: no limit."""

    requests: int = 0
    seconds: int = 60


class RateLimits(Model):
    """The content API's request limits (spec.contentApi.rateLimits; tailor_api.ratelimit)."""

    per_client: RateLimit = RateLimit()
    per_user: RateLimit = RateLimit()
    trusted_proxies: tuple[str, ...] = ()  # CIDRs whose X-Forwarded-For is believed


class ApiConfig(Model):
    cors_origins: tuple[str, ...] = ()
    suppression_seconds: int = 7 * 86400
    max_batch_events: int = 500
    max_body_bytes: int = 1_048_576
    rate_limits: RateLimits = RateLimits()


class StackConfig(Model):
    namespace: str
    name: str
    kafka: KafkaConfig
    features: FeatureConfig
    api: ApiConfig = ApiConfig()
    kill_switch: bool = False

    @property
    def key(self) -> str:
        """The stack's identity, `namespace/name`, as `tailor worker --stack` takes it."""
        return f"{self.namespace}/{self.name}"

    @property
    def worker_group(self) -> str:
        """The workers' Kafka consumer group (what KEDA's lag trigger watches)."""
        return f"tailor-worker.{self.namespace}.{self.name}"


class Variant(Model):
    name: str
    slot: str
    content_type: ContentType
    body: str | None = None  # html (already sanitized) or text
    data: Any = None  # json payload, or {src, alt, href} for images
    weight: float = 1.0
    tags: tuple[str, ...] = ()
    labels: dict[str, str] = Field(default_factory=dict)
    fallback: bool = False
    start: float | None = None  # schedule, epoch seconds; served only within [start, end)
    end: float | None = None


class Matcher(Model):
    """`feature` count (of events with `dimension` == `value`, or the top value when no value is
    given) within `window`, compared with `threshold` by `op`; or, with `trait` instead of `feature`,
    the user's trait compared with `threshold` (numbers) or `value` (strings, booleans as
    "true"/"false"), which never holds while the trait is unset or expired."""

    feature: Feature | None = None
    dimension: str | None = None
    value: str | None = None
    window: str = ""
    op: Operator = "gte"
    threshold: float = 1
    trait: str | None = None


class ProfileSegment(Model):
    """A user's segment from their profile: the most frequent `dimension` value among their `feature`
    events in `window` (ties: the first in sorted order)."""

    feature: Feature
    dimension: str
    window: str


class BanditContext(Model):
    """A contextual bandit's segments (tailor.core.decision.contextual): where a user's segment comes
    from — their profile, or the value of a declared string or boolean trait (exactly one) —, how many
    distinct segments are learned apart (the rest pooled into "(other)"), and how many impressions of
    the other segments' estimate each segment's prior is worth."""

    profile: ProfileSegment | None = None
    trait: str | None = None
    max_segments: int = 8
    prior_weight: float = 20.0


class FrequencyCap(Model):
    per_session: int | None = None
    per_user_count: int | None = None
    per_user_window_seconds: int | None = None


class Rule(Model):
    name: str
    slot: str
    priority: int = 0
    enabled: bool = True
    audience: tuple[Matcher, ...] = ()
    when: str | None = None  # CEL over the profile
    variants: tuple[str, ...]
    strategy: Strategy = "weighted"
    seed: str = ""
    context: BanditContext | None = None  # bandit only: learn per segment
    frequency_cap: FrequencyCap | None = None
    rollout_percentage: float = 100.0
    generation: int = 0


class Ruleset(Model):
    format: int = FORMAT
    version: int = 0  # assigned when published
    stack: str
    checksum: str = ""  # of everything but version and publishedAt: equal checksums, same behaviour
    published_at: float | None = None
    config: StackConfig
    variants: dict[str, Variant]
    rules: tuple[Rule, ...]  # ordered: slot, then priority (highest first), then name

    def content_checksum(self) -> str:
        content = self.model_dump(mode="json", by_alias=True, exclude={"version", "checksum", "published_at"})
        return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def sealed(self) -> Ruleset:
        """This ruleset with its checksum filled in, ready to publish."""
        return self.model_copy(update={"checksum": self.content_checksum()})

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", by_alias=True))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Ruleset:
        return cls.model_validate_json(raw)
