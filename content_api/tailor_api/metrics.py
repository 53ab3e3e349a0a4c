"""The content API's Prometheus metrics (names are a contract: docs/metrics.md).

They live in the process-wide registry, like the collector's, so /metrics shows both. Labelled
children are cached: looking one up by labels costs more than incrementing it.
"""

from __future__ import annotations

from functools import lru_cache

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

http_requests = Counter("tailor_http_requests_total", "HTTP requests", ["route", "method", "code"])
http_duration = Histogram(
    "tailor_http_request_duration_seconds", "HTTP request duration", ["route"], buckets=LATENCY_BUCKETS
)
decisions = Counter("tailor_decisions_total", "Slot decisions", ["slot", "outcome"])
decide_duration = Histogram(
    "tailor_decide_duration_seconds", "Decide request duration", buckets=LATENCY_BUCKETS
)
cel_budget_stops = Counter(
    "tailor_cel_budget_stops_total",
    "Rule `when` evaluations stopped at the cost budget (the rule did not match)",
    ["rule"],
)
feedback = Counter("tailor_feedback_total", "Feedback received", ["type"])
# Traits written through PUT /v1/profiles/{user}/traits (docs/traits.md); the workers count the
# traits topic's in their own registry, under the same names.
traits_written = Counter("tailor_traits_written_total", "Trait values written", ["source"])
traits_rejected = Counter(
    "tailor_traits_rejected_total", "Trait writes refused with a 400 (source: admin)", ["source", "reason"]
)
traits_expired = Counter(
    "tailor_traits_expired_total", "Trait values found past their TTL and dropped by a later write"
)
# The decide path's own Redis Cluster client (tailor_api.resp_cluster): how often the topology moved
# under it. MOVED/ASK bursts are a resharding, CLUSTERDOWN a failover in progress.
redis_cluster_redirections = Counter(
    "tailor_api_redis_cluster_redirections_total",
    "Redis Cluster replies that sent a command elsewhere or again: MOVED, ASK, TRYAGAIN, CLUSTERDOWN",
    ["kind"],
)
redis_cluster_map_loads = Counter(
    "tailor_api_redis_cluster_map_loads_total", "Slot maps loaded (CLUSTER SLOTS) by the decide path"
)
impressions = Counter("tailor_variant_impressions_total", "Variant impressions", ["rule", "variant"])
clicks = Counter("tailor_variant_clicks_total", "Variant clicks", ["rule", "variant"])
ruleset_version = Gauge("tailor_ruleset_version", "Ruleset version served", ["stack", "component"])
ruleset_loaded = Gauge(
    "tailor_ruleset_loaded_timestamp_seconds", "When the served ruleset was loaded", ["stack", "component"]
)
ruleset_published = Gauge(
    "tailor_ruleset_published_version",
    "The stack's current version in Redis as last seen by this replica (served or refused)",
    ["stack", "component"],
)
ruleset_rejected = Counter(
    "tailor_ruleset_rejected_total",
    "Published versions this replica refused and did not serve; reason: signature (not signed by a "
    "trusted key), format (newer than this reader), invalid (does not parse), load (rules do not compile)",
    ["stack", "component", "reason"],
)
identity_refused = Counter(
    "tailor_identity_refused_total",
    "Requests refused for their identity (docs/identity.md); reason: missing, expired, bad-signature, "
    "unknown-kid, invalid, mismatch",
    ["reason"],
)
identity_keys = Gauge(
    "tailor_identity_keys",
    "Identity verification keys loaded from the mounted Secret (0: every token refused)",
)
kafka_up = Gauge(
    "tailor_collector_kafka_up",
    "1 when the collector's last check reached the stack's Kafka (metadata of its events topic), else 0;"
    " checked when readiness is asked, at most every TAILOR_KAFKA_CHECK_SECONDS",
    ["stack"],
)


@lru_cache(maxsize=4096)
def request_counter(route: str, method: str, code: int) -> Counter:
    return http_requests.labels(route, method, str(code))


@lru_cache(maxsize=256)
def request_duration(route: str) -> Histogram:
    return http_duration.labels(route)


@lru_cache(maxsize=4096)
def decision_counter(slot: str, outcome: str) -> Counter:
    return decisions.labels(slot, outcome)


@lru_cache(maxsize=4096)
def impression_counter(rule: str, variant: str) -> Counter:
    return impressions.labels(rule, variant)
