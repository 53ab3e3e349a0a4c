"""The worker's Prometheus metrics (names are the contract in docs/metrics.md), and the HTTP port that
serves them beside /readyz and /healthz."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref import simple_server

import orjson
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    make_wsgi_app,
)

# Its own registry: the content API's metrics share names (tailor_ruleset_version, …) and one process
# may import both (the CLI, the tests); the process metrics are added as the default registry has them.
REGISTRY = CollectorRegistry()
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

CONSUMED = Counter(
    "tailor_worker_events_consumed", "Messages taken from the events topic.", ["topic"], registry=REGISTRY
)
PROCESSED = Counter(
    "tailor_worker_events_processed",
    "Events by outcome: counted, duplicate, dead_letter, late (further behind their ingestion than the"
    " allowed lateness), expired (older than the dedup TTL when processed: a replay long after) or"
    " over_user_cap (beyond a per-user cap: acknowledged, not written).",
    ["outcome"],
    registry=REGISTRY,
)
PROCESSING_SECONDS = Histogram(
    "tailor_worker_processing_seconds",
    "Per batch: validate, dedup, aggregate, write to Redis, store offsets.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
LAG = Gauge(
    "tailor_worker_consumer_lag",
    "Messages behind the partition's end.",
    ["topic", "partition"],
    registry=REGISTRY,
)
# The traits topic (tailor_worker.traits; docs/traits.md): the content API's admin PUT counts its own
# under the same names.
TRAITS_WRITTEN = Counter(
    "tailor_traits_written", "Trait values written (source: topic).", ["source"], registry=REGISTRY
)
TRAITS_STALE = Counter(
    "tailor_traits_stale",
    "Trait values not written: a newer value of the trait was stored already (a replay, a late event).",
    registry=REGISTRY,
)
TRAITS_REJECTED = Counter(
    "tailor_traits_rejected",
    "Traits events dead-lettered (source: topic); reason: undecodable, invalid (not a traits event),"
    " invalid-trait.",
    ["source", "reason"],
    registry=REGISTRY,
)
TRAITS_EXPIRED = Counter(
    "tailor_traits_expired",
    "Trait values found past their TTL and dropped by a later write.",
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "tailor_worker_dead_letters", "Messages sent to the dead-letter topic.", ["reason"], registry=REGISTRY
)
OVER_USER_CAP = Counter(
    "tailor_worker_events_over_user_cap",
    "Events acknowledged but not written because their user was over a per-user cap (events per minute,"
    " or dedup marks held).",
    registry=REGISTRY,
)
DEDUP_HITS = Counter(
    "tailor_worker_dedup_hits", "Events already counted (replays, client resends).", registry=REGISTRY
)
REDIS_ERRORS = Counter(
    "tailor_worker_redis_errors", "Failed Redis writes (the batch is retried).", registry=REGISTRY
)
KINESIS_BEHIND = Gauge(
    "tailor_worker_kinesis_behind_seconds",
    "Seconds the shard's last read is behind its newest record (GetRecords' MillisBehindLatest).",
    ["stream", "shard"],
    registry=REGISTRY,
)
PROFILE_CACHE_USERS = Gauge(
    "tailor_worker_profile_cache_users",
    "Users whose profile state the worker holds.",
    registry=REGISTRY,
)
PROFILE_LOADS = Counter(
    "tailor_worker_profile_loads",
    "Users' profiles read from Redis because they were not cached.",
    registry=REGISTRY,
)
PROFILE_RESETS = Counter(
    "tailor_worker_profile_resets",
    "Users whose stored profile could not be read (damaged, or an incompatible version): counted afresh.",
    registry=REGISTRY,
)
PROFILE_CONFLICTS = Counter(
    "tailor_worker_profile_conflicts",
    "Users' writes refused because another worker had changed them (rebalances); reloaded and recounted.",
    registry=REGISTRY,
)
PROFILE_REROUTED = Counter(
    "tailor_worker_profile_rerouted",
    "Users a Redis Cluster primary refused in a guard call as not its own (their slot moved or is "
    "migrating): written again on their own where MOVED or ASK send them.",
    registry=REGISTRY,
)
RULESET_VERSION = Gauge(
    "tailor_ruleset_version", "Ruleset version in use.", ["stack", "component"], registry=REGISTRY
)
RULESET_LOADED = Gauge(
    "tailor_ruleset_loaded_timestamp_seconds",
    "When the ruleset in use was loaded.",
    ["stack", "component"],
    registry=REGISTRY,
)
RULESET_PUBLISHED = Gauge(
    "tailor_ruleset_published_version",
    "The stack's current version in Redis as last seen by this worker (used or refused).",
    ["stack", "component"],
    registry=REGISTRY,
)
RULESET_REJECTED = Counter(
    "tailor_ruleset_rejected_total",
    "Published versions this worker refused and did not use; reason: signature (not signed by a "
    "trusted key), format (newer than this reader), invalid (does not parse).",
    ["stack", "component", "reason"],
    registry=REGISTRY,
)


class _Server(socketserver.ThreadingMixIn, simple_server.WSGIServer):
    daemon_threads = True  # a scrape in progress never holds up the worker's exit


class _Quiet(simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # every probe and scrape would be a line
        pass


def serve(
    port: int, host: str, readiness: Callable[[], tuple[bool, str]],
    liveness: Callable[[], tuple[bool, str]] | None = None,
) -> simple_server.WSGIServer:  # fmt: skip
    """/metrics, /readyz (200 when `readiness` says so, else 503 with the reason) and /healthz (the
    same from `liveness`: tailor_worker.liveness), on a thread of their own: they answer whatever the
    consume loop is doing. Returns the server (its `server_port` is the port bound when `port` is 0)."""
    metrics_app = make_wsgi_app(REGISTRY)
    checks = {"/readyz": ("ready", readiness)}
    if liveness is not None:
        checks["/healthz"] = ("alive", liveness)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        check = checks.get(environ.get("PATH_INFO", ""))
        if check is None:
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        name, ask = check
        good, detail = ask()
        status = "200 OK" if good else "503 Service Unavailable"
        start_response(status, [("Content-Type", "application/json"), ("Cache-Control", "no-store")])
        return [orjson.dumps({name: good, "detail": detail})]

    server = simple_server.make_server(host, port, app, server_class=_Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
