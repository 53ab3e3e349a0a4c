"""The worker's Prometheus metrics (names are the contract in docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONSUMED = Counter("tailor_worker_events_consumed", "Messages taken from the events topic.", ["topic"])
PROCESSED = Counter(
    "tailor_worker_events_processed",
    "Events by outcome: counted, duplicate, dead_letter, late (further behind their ingestion than the"
    " allowed lateness) or expired (older than the dedup TTL when processed: a replay long after).",
    ["outcome"],
)
PROCESSING_SECONDS = Histogram(
    "tailor_worker_processing_seconds",
    "Per batch: validate, dedup, aggregate, write to Redis, store offsets.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
LAG = Gauge("tailor_worker_consumer_lag", "Messages behind the partition's end.", ["topic", "partition"])
DEAD_LETTERS = Counter("tailor_worker_dead_letters", "Messages sent to the dead-letter topic.", ["reason"])
DEDUP_HITS = Counter("tailor_worker_dedup_hits", "Events already counted (replays, client resends).")
REDIS_ERRORS = Counter("tailor_worker_redis_errors", "Failed Redis writes (the batch is retried).")
PROFILE_CACHE_USERS = Gauge(
    "tailor_worker_profile_cache_users", "Users whose profile state the worker holds."
)
PROFILE_LOADS = Counter(
    "tailor_worker_profile_loads", "Users' profiles read from Redis because they were not cached."
)
PROFILE_RESETS = Counter(
    "tailor_worker_profile_resets",
    "Users whose stored profile could not be read (damaged, or an incompatible version): counted afresh.",
)
PROFILE_CONFLICTS = Counter(
    "tailor_worker_profile_conflicts",
    "Users' writes refused because another worker had changed them (rebalances); reloaded and recounted.",
)
RULESET_VERSION = Gauge("tailor_ruleset_version", "Ruleset version in use.", ["stack", "component"])
RULESET_LOADED = Gauge(
    "tailor_ruleset_loaded_timestamp_seconds", "When the ruleset in use was loaded.", ["stack", "component"]
)
