"""Worker settings: only the Redis URL is required; Kafka and features come from the published ruleset."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from tailor.core import constants, redis_target
from tailor.core.profile import store
from tailor.core.rules import signing


class WorkerSettings(redis_target.RedisClientSettings):
    """Environment `TAILOR_WORKER_*`, and `TAILOR_REDIS_*` (URL, credentials, TLS) as everywhere else."""

    model_config = SettingsConfigDict(env_prefix="TAILOR_WORKER_", extra="ignore")

    redis_url: str = Field(
        validation_alias=AliasChoices(constants.ENV_REDIS_URL, "TAILOR_WORKER_REDIS_URL", "redis_url")
    )
    # The Ed25519 public keys that may sign this stack's rulesets (comma-separated base64; the operator
    # sets TAILOR_RULESET_KEYS); empty trusts the public development key (tailor.core.rules.signing).
    ruleset_keys: str = Field(
        default="",
        validation_alias=AliasChoices(signing.ENV_KEYS, "TAILOR_WORKER_RULESET_KEYS", "ruleset_keys"),
    )
    metrics_port: int = 9102
    metrics_host: str = "0.0.0.0"
    # Most messages taken per batch (a batch is what has arrived, up to this): per-batch costs spread
    # thinner and a user's events in one batch are written once (measured on a backlog:
    # docs/performance.md).
    batch_size: int = 10_000
    # Users whose profile state the worker keeps in memory (LRU; the memory per user: docs/pipeline.md);
    # a user not cached costs one more Redis round trip when it comes.
    cache_users: int = 20_000
    # Per-user caps (docs/operating.md, "Per-user caps"): a user's events counted per minute of event
    # time, and the dedup marks a user may hold in Redis; events beyond are acknowledged, counted in
    # tailor_worker_events_over_user_cap_total, and not written.
    events_per_user_per_minute: int = Field(store.EVENTS_PER_USER_PER_MINUTE, ge=1)
    dedup_marks_per_user: int = Field(store.DEDUP_MARKS_PER_USER, ge=1)
    # How long an idle consume waits for the first message of a batch.
    poll_seconds: float = 0.5
    # How often the published ruleset is checked for new Kafka or feature settings.
    config_check_seconds: float = 1.0
    # Consumer group; default `tailor-worker.<namespace>.<name>`.
    group_id: str | None = None
    # Static group membership (e.g. the pod name): a restarted worker takes its partitions back at
    # once instead of after the session timeout.
    instance_id: str | None = None
    session_timeout_ms: int = 10_000
    # Backoff between retries of a batch whose Redis write or dead-lettering failed.
    retry_seconds: float = 0.5
    # Where the Secret keys of the stack's Kafka security are (the operator mounts them there).
    kafka_secrets_dir: Path = Field(
        default=Path(constants.KAFKA_SECRETS_DIR),
        validation_alias=AliasChoices(constants.ENV_KAFKA_SECRETS_DIR, "TAILOR_WORKER_KAFKA_SECRETS_DIR"),
    )
    # How long the check of the stack's Kafka settings, before each connection, waits for an answer.
    kafka_probe_seconds: float = 10.0
