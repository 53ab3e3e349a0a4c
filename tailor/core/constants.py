"""Names shared by every component: the API group, kinds, labels, features and event types."""

from typing import Final, Literal

API_GROUP: Final = "tailor.dev"
API_VERSION: Final = "v1alpha1"
FINALIZER: Final = f"{API_GROUP}/finalizer"

STACK_KIND: Final = "PersonalizationStack"
STACK_PLURAL: Final = "personalizationstacks"
RULE_KIND: Final = "PersonalizationRule"
RULE_PLURAL: Final = "personalizationrules"
VARIANT_KIND: Final = "ContentVariant"
VARIANT_PLURAL: Final = "contentvariants"

# Behaviour features a rule can match on, and the event types that feed them.
Feature = Literal["views", "clicks", "cartAdds", "searches", "purchases"]
FEATURES: Final[tuple[Feature, ...]] = ("views", "clicks", "cartAdds", "searches", "purchases")
FEATURE_OF_EVENT_TYPE: Final[dict[str, Feature]] = {
    "page_view": "views",
    "click": "clicks",
    "add_to_cart": "cartAdds",
    "search": "searches",
    "purchase": "purchases",
}
# The top-level names a rule's CEL `when` may use: one per feature, plus recent, session, user and
# the user's declared traits (tailor.core.profile.Profile.as_cel gives each its value).
CEL_VARIABLES: Final[tuple[str, ...]] = (*FEATURES, "recent", "session", "user", "traits")

# Sizes every component relies on: the events schema (tailor.core.events.schema) refuses more, the
# profile keeps no more, and a rule's `when` is costed with them as its variables' bounds
# (tailor.core.rules.environment).
MAX_ID_LENGTH: Final = 128  # a user, anonymous, session or event id
# The one grammar of those ids, wherever they come in (the collector's events, the API's parameters):
# they become Redis keys and fields (a user is a Redis Cluster hash tag: no braces), Kafka headers and
# log fields, so a profile is never written for an id that cannot be decided on. A pattern for JSON
# Schema and pydantic (Rust regex), where `$` is the end of the text; Python's `re` must `fullmatch`
# it, because there `$` also matches before a final newline ("alice\n" would be another user).
ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:@+\-]*$"
ID_CHARACTERS: Final = "1 to 128 letters, digits and . _ : @ + -, starting with a letter or digit"
MAX_PROPERTY_VALUE_LENGTH: Final = 256  # a text property, counted as a dimension value
MAX_QUERY_LENGTH: Final = 512  # the `query` property
MAX_FIELDS_PER_BUCKET: Final = 512  # counters one bucket of a profile holds (tailor.core.profile.state)

# Standard labels on every child object the operator creates.
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
ANNOTATION_CONFIG_CHECKSUM: Final = f"{API_GROUP}/config-checksum"
ANNOTATION_PAUSED: Final = f"{API_GROUP}/paused"

# Environment variables the CLI and the components read.
ENV_REDIS_URL: Final = "TAILOR_REDIS_URL"
# Redis credentials and TLS files, apart from the URL (tailor.core.redis_target).
ENV_REDIS_USERNAME: Final = "TAILOR_REDIS_USERNAME"
ENV_REDIS_PASSWORD: Final = "TAILOR_REDIS_PASSWORD"
ENV_REDIS_TLS_CA_FILE: Final = "TAILOR_REDIS_TLS_CA_FILE"
ENV_REDIS_TLS_CERT_FILE: Final = "TAILOR_REDIS_TLS_CERT_FILE"
ENV_REDIS_TLS_KEY_FILE: Final = "TAILOR_REDIS_TLS_KEY_FILE"
# standalone (one primary) or cluster (Redis Cluster: the URL is a seed node), tailor.core.redis_target.
ENV_REDIS_MODE: Final = "TAILOR_REDIS_MODE"
ENV_KAFKA_BOOTSTRAP: Final = "TAILOR_KAFKA_BOOTSTRAP"
ENV_ADMIN_TOKEN: Final = "TAILOR_ADMIN_TOKEN"
# Where the content API and collector pods find the identity Secret's keys (docs/identity.md).
IDENTITY_KEYS_DIR: Final = "/etc/tailor/identity"
# The content API's admin port (explain, profiles, metrics, health, readiness: tailor_api.adminserver);
# 9464 is Prometheus' registered default for exporters without one of their own.
DEFAULT_ADMIN_PORT: Final = 9464
ENV_KAFKA_SECRETS_DIR: Final = "TAILOR_KAFKA_SECRETS_DIR"
# Where the operator mounts the Secret keys a stack's Kafka settings name, as <dir>/<secret>/<key>
# (tailor.core.kafkaclient reads them; TAILOR_KAFKA_SECRETS_DIR moves it outside a pod).
KAFKA_SECRETS_DIR: Final = "/etc/tailor/kafka"
