"""The alert rules and the Grafana dashboard, checked with promtool and against the contracts.

monitoring/alerts.yaml must parse (`promtool check rules`) and behave (`promtool test rules` on
synthetic series, monitoring/tests/alerts_test.yaml); every alert needs a firing and a quiet
test case, a runbook paragraph in docs/operating.md, and only metrics from docs/metrics.md.
The dashboard must be what monitoring/build_dashboard.py generates, its queries must parse,
and it must show what operators look at.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tailor.devstack import toolchain

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "monitoring" / "alerts.yaml"
ALERT_TESTS = ROOT / "monitoring" / "tests" / "alerts_test.yaml"
DASHBOARD = ROOT / "monitoring" / "dashboard.json"
METRICS_DOC = ROOT / "docs" / "metrics.md"
OPERATING_DOC = ROOT / "docs" / "operating.md"

# PromQL words that look like metric names but are functions, keywords or label names.
_PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "on", "ignoring", "group_left",
    "group_right", "and", "or", "unless", "rate", "irate", "increase", "deriv", "delta",
    "histogram_quantile", "time", "absent", "le", "bool", "offset",
}  # fmt: skip


@pytest.fixture(scope="module")
def promtool() -> Path:
    return toolchain.find_tool("promtool")


def _run(args: list[str | Path], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120)


def _alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _contract_metrics() -> set[str]:
    """Metric names from the table in docs/metrics.md (first column, in backticks)."""
    return set(re.findall(r"^\|\s*`(tailor_[a-z0-9_]+)`", METRICS_DOC.read_text(), flags=re.MULTILINE))


def _metrics_in(expr: str) -> set[str]:
    names = set(re.findall(r"\b(tailor_[a-z0-9_]+)\b", expr))
    # Histograms are documented by their base name.
    return {re.sub(r"_(bucket|count|sum)$", "", name) for name in names}


def _dashboard_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_dashboard", ROOT / "monitoring" / "build_dashboard.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _dashboard_targets() -> list[tuple[str, str]]:
    """(panel title, expr) for every query of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


# --- alert rules -------------------------------------------------------------------------


def test_alert_rules_pass_promtool_check(promtool: Path) -> None:
    result = _run([promtool, "check", "rules", ALERTS])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alert_rules())} rules found" in result.stdout


def test_alert_rules_pass_their_promtool_unit_tests(promtool: Path) -> None:
    result = _run([promtool, "test", "rules", ALERT_TESTS])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_fail_when_a_threshold_drifts(promtool: Path, tmp_path: Path) -> None:
    """Proof that the unit tests bite: loosen the decision-latency target and they must fail."""
    drifted = ALERTS.read_text().replace("> 0.010", "> 0.030")
    assert drifted != ALERTS.read_text()
    (tmp_path / "alerts.yaml").write_text(drifted)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "alerts_test.yaml").write_text(ALERT_TESTS.read_text())
    result = _run([promtool, "test", "rules", tmp_path / "tests" / "alerts_test.yaml"])
    assert result.returncode != 0
    assert "TailorDecisionLatencyHigh" in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_test_case() -> None:
    cases = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in _alert_rules()}
    assert alerts - firing == set(), "alerts never shown to fire"
    assert alerts - quiet == set(), "alerts never shown to stay quiet"


def test_the_alerts_cover_what_pages() -> None:
    """The situations the operators asked to be paged or ticketed for, by metric."""
    exprs = {rule["alert"]: rule["expr"] for rule in _alert_rules()}
    covered = " ".join(exprs.values())
    for metric in (
        "tailor_worker_consumer_lag",  # consumer lag growing
        "tailor_decide_duration_seconds_bucket",  # decision p99 over target
        "tailor_http_requests_total",  # collector 5xx rate
        "tailor_worker_dead_letters_total",  # dead-letter rate
        "tailor_ruleset_version",  # no ruleset published, API behind
        "tailor_operator_reconcile_errors_total",  # operator reconcile errors
    ):
        assert metric in covered, f"no alert watches {metric}"
    assert "0.010" in exprs["TailorDecisionLatencyHigh"], "the decision p99 target is 10 ms"


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_is_labelled_and_annotated(rule: dict[str, Any]) -> None:
    assert rule["alert"].startswith("Tailor")
    assert rule["labels"]["severity"] in {"critical", "warning"}
    assert rule.get("for"), "an alert without `for` pages on a single bad scrape"
    annotations = rule["annotations"]
    assert {"summary", "description", "runbook"} <= annotations.keys()
    assert annotations["runbook"] == f"docs/operating.md#{rule['alert'].lower()}"


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_has_a_runbook_paragraph(rule: dict[str, Any]) -> None:
    """docs/operating.md has a heading named after the alert (GitHub makes the anchor
    from it) followed by a real paragraph: what it means and what to do."""
    text = OPERATING_DOC.read_text()
    match = re.search(rf"^#+ {rule['alert']}\n(.*?)(?=^#+ |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert match, f"docs/operating.md has no heading `{rule['alert']}`"
    assert len(match.group(1).split()) >= 40, f"the runbook of {rule['alert']} is too thin"


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_uses_only_contract_metrics(rule: dict[str, Any]) -> None:
    unknown = _metrics_in(rule["expr"]) - _contract_metrics()
    assert unknown == set(), f"not in docs/metrics.md: {sorted(unknown)}"


def test_contract_metrics_are_read_from_the_doc() -> None:
    """Guards the parser above: an empty set would make the contract checks vacuous."""
    metrics = _contract_metrics()
    assert "tailor_decide_duration_seconds" in metrics
    assert len(metrics) >= 20


# --- dashboard ---------------------------------------------------------------------------


def test_dashboard_json_is_generated_from_its_source() -> None:
    module = _dashboard_module()
    assert DASHBOARD.read_text() == module.render(), (
        "monitoring/dashboard.json is stale: run `python monitoring/build_dashboard.py`"
    )


def test_dashboard_queries_parse(promtool: Path, tmp_path: Path) -> None:
    """promtool parses every query (Grafana's variables replaced by what Grafana sends)."""
    substitutions = {"$__rate_interval": "5m", "$__range": "1h", "$namespace": ".*", "$stack": ".*"}
    rules = []
    for index, (_, expr) in enumerate(_dashboard_targets()):
        for variable, value in substitutions.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr}"
        rules.append({"record": f"dashboard:query_{index}", "expr": expr})
    rule_file = tmp_path / "dashboard-rules.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _run([promtool, "check", "rules", rule_file])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_uses_only_contract_metrics() -> None:
    used = set().union(*(_metrics_in(expr) for _, expr in _dashboard_targets()))
    assert used - _contract_metrics() == set()


def test_dashboard_shows_what_operators_look_at() -> None:
    targets = _dashboard_targets()

    def panels_with(*fragments: str) -> list[str]:
        return [title for title, expr in targets if all(f in expr for f in fragments)]

    assert panels_with("tailor_worker_consumer_lag"), "stream lag"
    assert panels_with("tailor_worker_kinesis_behind_seconds"), "Kinesis lag"
    assert panels_with("tailor_events_received_total", "rate("), "events/s"
    assert panels_with("tailor_worker_processing_seconds_bucket"), "processing time"
    assert panels_with("histogram_quantile(0.5,", "tailor_decide_duration_seconds_bucket"), "decision p50"
    assert panels_with("histogram_quantile(0.99,", "tailor_decide_duration_seconds_bucket"), "decision p99"
    assert panels_with('code=~"5.."'), "errors"
    assert panels_with("tailor_worker_dead_letters_total"), "dead letters"
    assert panels_with("tailor_ruleset_version"), "ruleset version"
    assert panels_with("tailor_variant_impressions_total"), "rules serving"
    assert panels_with("tailor_variant_clicks_total", "/", "tailor_variant_impressions_total"), (
        "CTR per variant"
    )


def test_dashboard_layout_is_valid() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    occupied: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"{panel['title']} overflows the 24-column grid"
        cells = {(grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])}
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "stack"} <= variables
