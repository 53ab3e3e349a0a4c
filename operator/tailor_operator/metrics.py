"""The operator's Prometheus metrics (names per docs/metrics.md, which is a contract)."""

from __future__ import annotations

import contextlib
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
RULESETS_REFUSED = prometheus_client.Counter(
    "tailor_operator_rulesets_refused_total",
    "Current versions found in a stack's Redis that its key did not sign (or that do not parse), "
    "published over; by reason (signature, format, invalid)",
    ["stack", "reason"],
    registry=REGISTRY,
)

NOT_LIVE = prometheus_client.Gauge(
    "tailor_operator_resources_not_live",
    "Rules and variants of a stack whose current spec is not in the served ruleset (a problem kept "
    "their previous form or left them out), after the last compile",
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


def compiled(stack: str, not_live: int) -> None:
    NOT_LIVE.labels(stack=stack).set(not_live)


def forget(stack: str) -> None:
    """A deleted stack's series go with it (a stale not-live count would keep its alert firing)."""
    for gauge, labels in (
        (RULESET_VERSION, (stack, "operator")),
        (PUBLISH_TIMESTAMP, (stack,)),
        (NOT_LIVE, (stack,)),
    ):
        with contextlib.suppress(KeyError):
            gauge.remove(*labels)


def serve(port: int) -> None:
    if port:
        prometheus_client.start_http_server(port, registry=REGISTRY)


def ruleset_refused(namespace: str, name: str, reason: str) -> None:
    RULESETS_REFUSED.labels(stack=f"{namespace}/{name}", reason=reason).inc()
