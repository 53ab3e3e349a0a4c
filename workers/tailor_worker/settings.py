"""Worker settings: only the Redis URL is required; Kafka and features come from the published ruleset."""

from __future__ import annotations

from pathlib import Path
from typing import Final

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
    # Users whose profile state the worker keeps in memory (LRU); a user not cached costs one more Redis
    # round trip when it comes. Unset: sized from the container's memory limit (`cache_size`).
    cache_users: int | None = Field(None, ge=1)
    # The container's memory limit in bytes: the operator passes it by the downward API
    # (resourceFieldRef limits.memory); unset outside a pod with a limit.
    memory_limit_bytes: int | None = Field(None, ge=1)
    # Per-user caps (docs/operating.md, "Per-user caps"): a user's events counted per minute of event
    # time, and the dedup marks a user may hold in Redis; events beyond are acknowledged, counted in
    # tailor_worker_events_over_user_cap_total, and not written.
    events_per_user_per_minute: int = Field(store.EVENTS_PER_USER_PER_MINUTE, ge=1)
    dedup_marks_per_user: int = Field(store.DEDUP_MARKS_PER_USER, ge=1)
    # A batch's offsets are stored once this many replicas of each Redis primary written hold its
    # writes (WAIT; docs/operating.md#redis-cluster): a failover then loses no acknowledged event. 0:
    # once the primary holds them (Redis's asynchronous replication can lose the last writes).
    redis_wait_replicas: int = Field(0, ge=0)
    redis_wait_timeout_ms: int = Field(1000, ge=1)
    # Liveness (docs/operating.md, "Worker liveness"): /healthz on the metrics port fails once the consume
    # loop has made no progress for this long (a poll that finds nothing is progress).
    liveness_stall_seconds: float = Field(60.0, gt=0)
    # Every Redis call of the worker gives up after these (a half-open connection, a hung server): the
    # batch is retried on a fresh connection, and the stall shows in the liveness.
    redis_connect_timeout_seconds: float = Field(5.0, gt=0)
    redis_socket_timeout_seconds: float = Field(10.0, gt=0)
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

    def cache_size(self) -> int:
        """`cache_users` when set, else what fits the memory limit (`cache_users_for`)."""
        if self.cache_users is not None:
            return self.cache_users
        if self.memory_limit_bytes is None:
            return DEFAULT_CACHE_USERS
        return cache_users_for(self.memory_limit_bytes)


# Resident memory per cached user, measured by bench/worker_cache.py (docs/performance.md, "Worker
# memory"): a user with buckets in every window of the benchmark stack's features, compiled counting.
BYTES_PER_CACHED_USER: Final = 28 * 1024
# What the worker holds besides its cache: the interpreter and libraries, librdkafka's fetch queue, a
# batch of 10,000 messages in flight and the next one being classified.
RESERVED_BYTES: Final = 192 * 1024 * 1024
# The share of the rest the cache may take: users are heavier than the benchmark's, and Python's
# allocator does not give back what it freed.
CACHE_SHARE: Final = 0.5
DEFAULT_CACHE_USERS: Final = 20_000  # without a known limit (outside a pod)
MIN_CACHE_USERS: Final = 1_000
MAX_CACHE_USERS: Final = 1_000_000


def cache_users_for(memory_limit_bytes: int) -> int:
    """How many users' state fit the container's memory limit."""
    users = int((memory_limit_bytes - RESERVED_BYTES) * CACHE_SHARE / BYTES_PER_CACHED_USER)
    return max(MIN_CACHE_USERS, min(MAX_CACHE_USERS, users))
