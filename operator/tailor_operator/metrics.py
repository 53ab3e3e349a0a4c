"""The operator's Prometheus metrics (names per docs/metrics.md, which is a contract)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import prometheus_client

# Our own registry: the CLI imports every component, and each registers `tailor_ruleset_version`.
REGISTRY = prometheus_client.CollectorRegistry()

RECONCILES = prometheus_client.Counter(
    "tailor_operator_reconciles_total",
    "Reconciliations run, by kind of resource",
    ["kind"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = prometheus_client.Histogram(
    "tailor_operator_reconcile_duration_seconds",
    "Time per reconciliation",
    ["kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
RECONCILE_ERRORS = prometheus_client.Counter(
    "tailor_operator_reconcile_errors_total",
    "Reconciliations that failed, by kind",
    ["kind"],
    registry=REGISTRY,
)
RULESET_VERSION = prometheus_client.Gauge(
    "tailor_ruleset_version", "Version of the ruleset served", ["stack", "component"], registry=REGISTRY
)
PUBLISH_TIMESTAMP = prometheus_client.Gauge(
    "tailor_operator_ruleset_publish_timestamp_seconds",
    "When the operator last published a ruleset",
    ["stack"],
    registry=REGISTRY,
)


@contextmanager
def reconciling(kind: str) -> Iterator[None]:
    """Count and time one reconciliation; an exception counts as an error and propagates."""
    RECONCILES.labels(kind=kind).inc()
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        RECONCILE_ERRORS.labels(kind=kind).inc()
        raise
    finally:
        RECONCILE_SECONDS.labels(kind=kind).observe(time.perf_counter() - started)


def published(stack: str, version: int) -> None:
    RULESET_VERSION.labels(stack=stack, component="operator").set(version)
    PUBLISH_TIMESTAMP.labels(stack=stack).set(time.time())


def serve(port: int) -> None:
    if port:
        prometheus_client.start_http_server(port, registry=REGISTRY)
