"""Writes monitoring/dashboard.json, Tailor's Grafana dashboard, from the panel list below.

The JSON is committed (the chart ships it in a ConfigMap, and Grafana users import it as is);
this script is its source. Edit the panels here, run ``python monitoring/build_dashboard.py``,
and commit both. tests/unit/test_alerts.py fails when the two disagree, when a query uses a
metric missing from docs/metrics.md, or when promtool cannot parse a query.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DASHBOARD_PATH = Path(__file__).with_name("dashboard.json")
UID = "tailor-overview"

# Label filters. Pod metrics carry the scrape's `namespace`; ruleset metrics carry `stack`
# ("<namespace>/<name>"), which also matches the operator's series from its own namespace.
NS = 'namespace=~"$namespace"'
STACK = 'stack=~"$stack"'


@dataclass
class Target:
    expr: str
    legend: str


@dataclass
class Panel:
    title: str
    description: str
    targets: list[Target]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    width: int = 8
    height: int = 8
    overrides: dict[str, Any] = field(default_factory=dict)


def selector(*matchers: str) -> str:
    """``{a, b}`` from the non-empty matchers, or nothing at all."""
    present = ", ".join(m for m in matchers if m)
    return f"{{{present}}}" if present else ""


def rate(metric: str, *matchers: str, window: str = "$__rate_interval") -> str:
    """``rate(metric{matchers}[window])``; empty matchers are left out."""
    return f"rate({metric}{selector(*matchers)}[{window}])"


def sum_rate(metric: str, *matchers: str, by: str = "") -> str:
    """``sum [by (labels)] (rate(...))``: the per-second rate of a counter across pods."""
    grouping = f" by ({by}) " if by else ""
    return f"sum{grouping}({rate(metric, *matchers)})"


def quantile(q: float, metric: str, by: str, matcher: str) -> str:
    """The q-quantile of a histogram across pods, optionally kept apart by ``by`` labels."""
    inner = f"sum by ({by}le) ({rate(metric + '_bucket', matcher)})"
    return f"histogram_quantile({q}, {inner})"


ROWS: list[tuple[str, list[Panel]]] = [
    (
        "Overview",
        [
            Panel(
                "Events accepted /s",
                "Events the collector accepted (Kafka acknowledged) per second.",
                [Target(sum_rate("tailor_events_received_total", NS, 'outcome="accepted"'), "accepted")],
                unit="ops",
                kind="stat",
                width=4,
                height=4,
            ),
            Panel(
                "Decisions /s",
                "Decisions served per second, all slots.",
                [Target(sum_rate("tailor_decisions_total", NS), "decisions")],
                unit="ops",
                kind="stat",
                width=4,
                height=4,
            ),
            Panel(
                "Decision p99",
                "99th percentile of /v1/decide; the target is 10 ms.",
                [Target(quantile(0.99, "tailor_decide_duration_seconds", "", NS), "p99")],
                unit="s",
                kind="stat",
                width=4,
                height=4,
            ),
            Panel(
                "Consumer lag",
                "Messages the workers have yet to process, all topics and partitions.",
                [
                    Target(
                        f"sum(max by (namespace, topic, partition) (tailor_worker_consumer_lag{{{NS}}}))",
                        "lag",
                    )
                ],
                kind="stat",
                width=4,
                height=4,
            ),
            Panel(
                "Dead letters /s",
                "Events the workers sent to the dead-letter topic per second.",
                [Target(sum_rate("tailor_worker_dead_letters_total", NS), "dead letters")],
                unit="ops",
                kind="stat",
                width=4,
                height=4,
            ),
            Panel(
                "Ruleset version",
                "The version the operator published last, and the oldest one a content API serves.",
                [
                    Target(f'max(tailor_ruleset_version{{{STACK}, component="operator"}})', "published"),
                    Target(f'min(tailor_ruleset_version{{{STACK}, component="api"}})', "oldest served"),
                ],
                kind="stat",
                width=4,
                height=4,
            ),
        ],
    ),
    (
        "Stream",
        [
            Panel(
                "Stream lag by topic",
                "Consumer lag per topic. Growing lag means the workers cannot keep up: add "
                "partitions and workers (docs/operating.md).",
                [
                    Target(
                        "sum by (namespace, topic) (max by (namespace, topic, partition) "
                        f"(tailor_worker_consumer_lag{{{NS}}}))",
                        "{{namespace}}/{{topic}}",
                    )
                ],
            ),
            Panel(
                "Kinesis: seconds behind",
                "For stacks whose source is a Kinesis stream: how far behind its newest record the "
                "most-behind shard is read (GetRecords' MillisBehindLatest; docs/kinesis.md).",
                [
                    Target(
                        f"max by (namespace, stream) (tailor_worker_kinesis_behind_seconds{{{NS}}})",
                        "{{namespace}}/{{stream}}",
                    )
                ],
                unit="s",
            ),
            Panel(
                "Events /s",
                "Events through the pipeline: accepted and rejected by the collector, consumed "
                "by the workers, and what the workers did with them.",
                [
                    Target(
                        sum_rate("tailor_events_received_total", NS, by="outcome"),
                        "collector {{outcome}}",
                    ),
                    Target(
                        sum_rate("tailor_worker_events_consumed_total", NS),
                        "workers consumed",
                    ),
                    Target(
                        sum_rate("tailor_worker_events_processed_total", NS, by="outcome"),
                        "workers {{outcome}}",
                    ),
                ],
                unit="ops",
            ),
            Panel(
                "Worker processing time",
                "Time per batch: validate, dedup, aggregate into Redis, commit offsets.",
                [
                    Target(quantile(0.5, "tailor_worker_processing_seconds", "", NS), "p50"),
                    Target(quantile(0.99, "tailor_worker_processing_seconds", "", NS), "p99"),
                ],
                unit="s",
            ),
        ],
    ),
    (
        "Decisions",
        [
            Panel(
                "Decision latency p50 / p99",
                "Latency of /v1/decide as the content API measures it; the p99 target is 10 ms.",
                [
                    Target(quantile(0.5, "tailor_decide_duration_seconds", "", NS), "p50"),
                    Target(quantile(0.99, "tailor_decide_duration_seconds", "", NS), "p99"),
                ],
                unit="s",
            ),
            Panel(
                "Decisions /s by outcome",
                "rule: a rule chose the variant; fallback: no rule matched, the slot's fallback "
                "was served; empty: nothing to serve.",
                [
                    Target(
                        sum_rate("tailor_decisions_total", NS, by="outcome"),
                        "{{outcome}}",
                    )
                ],
                unit="ops",
            ),
            Panel(
                "HTTP latency p99 by route",
                "99th percentile per route of the content API.",
                [
                    Target(
                        quantile(0.99, "tailor_http_request_duration_seconds", "route, ", NS),
                        "{{route}}",
                    )
                ],
                unit="s",
            ),
        ],
    ),
    (
        "Errors",
        [
            Panel(
                "Errors /s",
                "Server errors per route, collector 503s (Kafka unavailable), worker Redis "
                "errors and operator reconcile errors.",
                [
                    Target(
                        sum_rate("tailor_http_requests_total", NS, 'code=~"5.."', by="route"),
                        "5xx {{route}}",
                    ),
                    Target(
                        sum_rate("tailor_collector_unavailable_total", NS),
                        "collector: Kafka unavailable",
                    ),
                    Target(
                        sum_rate("tailor_worker_redis_errors_total", NS),
                        "workers: Redis errors",
                    ),
                    Target(
                        sum_rate("tailor_operator_reconcile_errors_total", by="kind"),
                        "operator: {{kind}}",
                    ),
                ],
                unit="ops",
            ),
            Panel(
                "Dead letters by reason",
                "Events the workers could not use, by reason; the dead-letter topic holds them "
                "with the reason attached.",
                [
                    Target(
                        sum_rate("tailor_worker_dead_letters_total", NS, by="reason"),
                        "{{reason}}",
                    )
                ],
                unit="ops",
            ),
            Panel(
                "Duplicates and uncounted events /s",
                "Events dropped by dedup (a client resent them) and events too old for any window: late"
                " (behind their ingestion by more than the allowed lateness) or expired (processed after"
                " the dedup TTL).",
                [
                    Target(
                        sum_rate("tailor_worker_dedup_hits_total", NS),
                        "duplicates",
                    ),
                    Target(
                        sum_rate("tailor_worker_events_processed_total", NS, 'outcome="late"'),
                        "late",
                    ),
                    Target(
                        sum_rate("tailor_worker_events_processed_total", NS, 'outcome="expired"'),
                        "expired",
                    ),
                ],
                unit="ops",
            ),
        ],
    ),
    (
        "Rules",
        [
            Panel(
                "Ruleset version by component",
                "Published (operator) and loaded (content API, workers) ruleset versions per "
                "stack. Lines that do not meet within a second mean a component misses updates.",
                [
                    Target(
                        f"max by (stack, component) (tailor_ruleset_version{{{STACK}}})",
                        "{{stack}} {{component}}",
                    )
                ],
            ),
            Panel(
                "Impressions /s by rule",
                "Which rules are serving, and how much.",
                [
                    Target(
                        sum_rate("tailor_variant_impressions_total", NS, by="rule"),
                        "{{rule}}",
                    )
                ],
                unit="ops",
            ),
            Panel(
                "CTR per variant",
                "Clicks per impression over the last 30 minutes, per rule and variant.",
                [
                    Target(
                        f"sum by (rule, variant) (rate(tailor_variant_clicks_total{{{NS}}}[30m]))"
                        " / "
                        f"sum by (rule, variant) (rate(tailor_variant_impressions_total{{{NS}}}[30m]))",
                        "{{rule}} / {{variant}}",
                    )
                ],
                unit="percentunit",
            ),
        ],
    ),
    (
        "Operator",
        [
            Panel(
                "Reconciles /s by kind",
                "How often the operator reconciles each kind.",
                [
                    Target(
                        sum_rate("tailor_operator_reconciles_total", by="kind"),
                        "{{kind}}",
                    )
                ],
                unit="ops",
            ),
            Panel(
                "Reconcile duration p99 by kind",
                "99th percentile of one reconcile, per kind.",
                [
                    Target(
                        quantile(0.99, "tailor_operator_reconcile_duration_seconds", "kind, ", ""),
                        "{{kind}}",
                    )
                ],
                unit="s",
            ),
            Panel(
                "Time since last ruleset publish",
                "How long ago the operator published each stack's ruleset (only changes publish).",
                [
                    Target(
                        "time() - max by (stack) "
                        f"(tailor_operator_ruleset_publish_timestamp_seconds{{{STACK}}})",
                        "{{stack}}",
                    )
                ],
                unit="s",
            ),
        ],
    ),
]


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": [
            {
                "refId": chr(ord("A") + index),
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "expr": target.expr,
                "legendFormat": target.legend,
            }
            for index, target in enumerate(panel.targets)
        ],
    }
    if panel.kind == "timeseries":
        body["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom"},
            "tooltip": {"mode": "multi"},
        }
    else:
        body["options"] = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"}
    return body


def variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": name},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "current": {"text": "All", "value": "$__all"},
        "sort": 1,
    }


def build() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    next_id = 1
    y = 0
    for row_title, row_panels in ROWS:
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row_title,
                "collapsed": False,
                "panels": [],
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            }
        )
        next_id += 1
        y += 1
        x = 0
        row_height = 0
        for panel in row_panels:
            if x + panel.width > 24:
                x, y = 0, y + row_height
                row_height = 0
            panels.append(panel_json(panel, next_id, x, y))
            next_id += 1
            x += panel.width
            row_height = max(row_height, panel.height)
        y += row_height
    return {
        "uid": UID,
        "title": "Tailor",
        "description": "Tailor: stream lag, events, processing time, decisions, errors, rules and CTR.",
        "tags": ["tailor"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                variable("namespace", "Namespace", "label_values(tailor_decisions_total, namespace)"),
                variable("stack", "Stack", "label_values(tailor_ruleset_version, stack)"),
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    DASHBOARD_PATH.write_text(render())
    print(f"wrote {DASHBOARD_PATH}")
