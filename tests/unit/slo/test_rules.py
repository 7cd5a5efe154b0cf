"""The generated SLO rules: names, labels, windows, thresholds and the low-traffic guard."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from exporter.config.slos import SloDefaults, SloSettings
from exporter.slo.burn import PAGE_ALERT, TICKET_ALERT, TIERS, WINDOWS, prometheus_duration
from exporter.slo.rules import build_groups
from exporter.slo.sli import selection


def _slo(**settings: Any) -> SloSettings:
    return SloSettings.model_validate({"name": "invoices", "success": {}, **settings})


def _rules(slo: SloSettings, defaults: SloDefaults | None = None) -> list[dict[str, Any]]:
    return [rule for group in build_groups([slo], defaults) for rule in group["rules"]]


def test_one_group_per_indicator_with_sloth_style_recordings() -> None:
    slo = _slo(latency={"threshold": 300}, window="28d")
    groups = build_groups([slo])
    assert [g["name"] for g in groups] == [
        "workflow-runs-slo.invoices.success",
        "workflow-runs-slo.invoices.latency",
    ]
    recorded = {r["record"] for r in groups[0]["rules"] if "record" in r}
    assert {f"slo:sli_error:ratio_rate{w}" for w in (*WINDOWS, "28d")} <= recorded
    assert {
        "slo:objective:ratio",
        "slo:error_budget:ratio",
        "slo:current_burn_rate:ratio",
        "slo:period_error_budget_remaining:ratio",
        "slo:sli_total:increase1h",
        "slo:sli_total:increase3d",
    } <= recorded
    for group in groups:
        kind = group["name"].rsplit(".", 1)[1]
        for rule in group["rules"]:
            assert rule["labels"]["slo"] == "invoices"
            assert rule["labels"]["sli"] == kind


def test_the_window_is_summed_from_hourly_recordings_not_raw_samples() -> None:
    (period,) = [r for r in _rules(_slo()) if r.get("record") == "slo:sli_error:ratio_rate30d"]
    assert "sum_over_time(slo:sli_error:increase1h{" in period["expr"]
    assert "sum_over_time(slo:sli_total:increase1h{" in period["expr"]
    assert "workflow_runs_finished_total" not in period["expr"]


def test_constants_come_from_the_objective() -> None:
    rules = {r.get("record"): r["expr"] for r in _rules(_slo(success={"objective": 99.9}))}
    assert rules["slo:objective:ratio"] == "vector(0.999)"
    assert rules["slo:error_budget:ratio"] == "vector(0.001)"


def test_four_burn_rate_alerts_page_and_ticket_with_the_shipped_severities() -> None:
    alerts = [r for r in _rules(_slo()) if "alert" in r]
    assert [(a["alert"], a["labels"]["window"], a["labels"]["severity"]) for a in alerts] == [
        (PAGE_ALERT, "1h", "critical"),
        (PAGE_ALERT, "6h", "critical"),
        (TICKET_ALERT, "1d", "warning"),
        (TICKET_ALERT, "3d", "warning"),
    ]
    page = alerts[0]["expr"]
    assert "slo:sli_error:ratio_rate1h{" in page
    assert "> 0.144" in page
    assert "slo:sli_error:ratio_rate5m{" in page
    assert "slo:sli_total:increase1h{" in page
    assert ">= 20" in page
    assert "> 0.01\n" in alerts[3]["expr"]
    assert alerts[0]["annotations"]["runbook_url"].endswith("alerting.md#workflowsloburnratepage")
    assert "$labels.workflow" in alerts[0]["annotations"]["summary"]


def test_min_runs_per_slo_over_the_global_default() -> None:
    default = [r for r in _rules(_slo(), SloDefaults(min_runs=7)) if "alert" in r]
    assert all(">= 7" in a["expr"] for a in default)
    own = [r for r in _rules(_slo(min_runs=3), SloDefaults(min_runs=7)) if "alert" in r]
    assert all(">= 3" in a["expr"] for a in own)


def test_selection_matchers_are_anchored_escaped_and_quoted() -> None:
    slo = _slo(
        sources=["a.prod", "b"],
        workflows={"include": ["Inv.*", 'say "hi"'], "exclude": "test"},
    )
    assert selection(slo) == [
        'source=~"a\\\\.prod|b"',
        'workflow=~"(?:Inv.*)|(?:say \\"hi\\")"',
        'workflow!~"(?:test)"',
    ]
    assert selection(_slo(sources=["only"])) == ['source="only"']
    assert selection(_slo()) == []


def test_latency_counts_runs_above_the_bucket_bound_as_errors() -> None:
    slo = SloSettings.model_validate(
        {"name": "fast", "latency": {"threshold": 300, "statuses": ["succeeded", "failed"]}}
    )
    (rule,) = [r for r in _rules(slo) if r.get("record") == "slo:sli_error:ratio_rate5m"]
    assert (
        'workflow_run_duration_seconds_bucket{status=~"succeeded|failed",le="300.0"}'
        in (rule["expr"])
    )
    assert "workflow_run_duration_seconds_count{" in rule["expr"]


def test_a_workflow_that_never_failed_has_a_zero_error_ratio_not_none() -> None:
    (rule,) = [r for r in _rules(_slo()) if r.get("record") == "slo:sli_error:ratio_rate1h"]
    assert "\n  or\n  0 * sum by" in rule["expr"]


def test_detection_times_follow_the_workbook() -> None:
    page = TIERS[0]
    assert page.detection_time(0.001, 1.0) == timedelta(seconds=3600 * 0.0144)
    assert page.detection_time(0.01, 0.1) is None  # below 14.4x: never by this tier
    assert prometheus_duration(timedelta(days=30)) == "30d"
    assert prometheus_duration(timedelta(hours=36)) == "36h"
