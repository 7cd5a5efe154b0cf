"""The Grafana dashboards, built in code so every panel follows the same conventions.

`python -m monitoring.dashboards` writes `grafana/*.json`; `--check` only compares.
Every query goes through the `${datasource}` variable (no datasource uid is baked in), and every
selector honours the dashboard's variables. `panel_queries()` lists each panel's PromQL for the
tests: they syntax-check it with promtool and run it against a real Prometheus.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitoring import policy, slo_dashboard

HERE = Path(__file__).resolve().parent
GRAFANA_DIR = HERE.parent / "grafana"
SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# Selectors the panels share; Grafana expands the variables (`.*` when "All" is chosen).
WORKFLOW_FILTER = 'source=~"$source",provider=~"$provider",workflow=~"$workflow"'
SOURCE_FILTER = 'source=~"$source"'
SOURCE_PROVIDER_FILTER = 'source=~"$source",provider=~"$provider"'


@dataclass
class Target:
    expr: str
    legend: str = "__auto"
    instant: bool = False
    heatmap: bool = False
    # Show the exemplars of the series (a run id per bucket) as points to click through.
    exemplar: bool = False

    def render(self, ref_id: str) -> dict[str, Any]:
        target: dict[str, Any] = {
            "datasource": DATASOURCE,
            "refId": ref_id,
            "expr": self.expr,
            "legendFormat": self.legend,
            "range": not self.instant,
            "instant": self.instant,
        }
        if self.exemplar:
            target["exemplar"] = True
        if self.heatmap:
            target["format"] = "heatmap"
        elif self.instant:
            target["format"] = "table"
        return target


@dataclass
class Panel:
    title: str
    kind: str  # Grafana panel plugin id
    targets: list[Target]
    description: str
    width: int = 12
    height: int = 8
    unit: str = "short"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Grid:
    """Places panels left to right, wrapping rows at Grafana's 24 columns."""

    x: int = 0
    y: int = 0
    row_height: int = 0
    next_id: int = 1
    panels: list[dict[str, Any]] = field(default_factory=list)

    def add(self, panel: Panel) -> None:
        if self.x + panel.width > 24:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        rendered: dict[str, Any] = {
            "id": self.next_id,
            "type": panel.kind,
            "title": panel.title,
            "description": panel.description,
            "datasource": DATASOURCE,
            "gridPos": {"h": panel.height, "w": panel.width, "x": self.x, "y": self.y},
            "targets": [t.render(chr(ord("A") + i)) for i, t in enumerate(panel.targets)],
            "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
            "options": panel.options,
        }
        self.panels.append(rendered)
        self.next_id += 1
        self.x += panel.width
        self.row_height = max(self.row_height, panel.height)

    def row(self, title: str) -> None:
        if self.x:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        self.panels.append(
            {
                "id": self.next_id,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.next_id += 1
        self.y += 1


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"},
        "refresh": 2,  # on time range change: new workflows appear without a reload
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "sort": 1,
        "current": {"text": "All", "value": "$__all"},
        "hide": 0,
    }


def _datasource_variable() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {"text": "default", "value": "default"},
        "hide": 0,
        "refresh": 1,
        "includeAll": False,
        "multi": False,
    }


def _dashboard(uid: str, title: str, description: str, grid: Grid, variables: list[str]) -> Any:
    queries = {
        "provider": ("Provider", "label_values(workflow_exporter_source_up, provider)"),
        "source": (
            "Source",
            'label_values(workflow_exporter_source_up{provider=~"$provider"}, source)',
        ),
        "workflow": (
            "Workflow",
            "label_values(workflow_runs_finished_total"
            '{source=~"$source",provider=~"$provider"}, workflow)',
        ),
    }
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["workflow-runs-exporter"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "links": [],
        "annotations": {"list": []},
        "templating": {
            "list": [_datasource_variable()]
            + [_variable(name, *queries[name]) for name in variables]
        },
        "panels": grid.panels,
    }


def _rate(metric: str, selector: str, by: str, window: str = "$__rate_interval") -> str:
    return f"sum by ({by}) (rate({metric}{{{selector}}}[{window}]))"


def _quantile(q: str, metric: str, selector: str, by: str) -> str:
    return f"histogram_quantile({q}, {_rate(metric + '_bucket', selector, by + ', le')})"


def _timeseries(
    title: str,
    expr: str,
    legend: str,
    description: str,
    *,
    unit: str = "short",
    width: int = 12,
    options: dict[str, Any] | None = None,
) -> Panel:
    """One query over time: the shape of most panels."""
    return Panel(
        title,
        "timeseries",
        [Target(expr, legend=legend)],
        description,
        width=width,
        unit=unit,
        options=options or {},
    )


def workflow_runs() -> Any:
    f = WORKFLOW_FILTER
    finished = "workflow_runs_finished_total"
    grid = Grid()
    stat = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"}
    grid.add(
        Panel(
            "Runs finished",
            "stat",
            [Target(f"sum(increase({finished}{{{f}}}[$__range]))")],
            "Runs that reached a terminal status in the time range.",
            width=4,
            height=4,
            options=stat,
        )
    )
    grid.add(
        Panel(
            "Runs failed",
            "stat",
            [Target(f'sum(increase({finished}{{{f},status="failed"}}[$__range]))')],
            "Runs that failed in the time range.",
            width=4,
            height=4,
            options=stat,
        )
    )
    grid.add(
        Panel(
            "Failure ratio",
            "stat",
            [
                Target(
                    f'sum(increase({finished}{{{f},status="failed"}}[$__range]))'
                    f" / sum(increase({finished}{{{f}}}[$__range]))"
                )
            ],
            "Failed runs over all finished runs in the time range.",
            width=4,
            height=4,
            unit="percentunit",
            options=stat,
        )
    )
    grid.add(
        Panel(
            "Active runs",
            "stat",
            [Target(f"sum(workflow_runs_active{{{f}}})")],
            "Runs queued, running, waiting on review or in an unknown status now.",
            width=4,
            height=4,
            options=stat,
        )
    )
    grid.add(
        Panel(
            "Waiting on review",
            "stat",
            [Target(f'sum(workflow_runs_active{{{f},status="needs_review"}})')],
            "Runs waiting on human review now.",
            width=4,
            height=4,
            options=stat,
        )
    )
    grid.add(
        Panel(
            "Oldest active run",
            "stat",
            [Target(f"max(workflow_runs_oldest_active_age_seconds{{{f}}})")],
            "Age of the oldest run that has not finished.",
            width=4,
            height=4,
            unit="s",
            options=stat,
        )
    )
    grid.row("Throughput and failures")
    grid.add(
        Panel(
            "Throughput by status",
            "timeseries",
            [Target(_rate(finished, f, "status"), legend="{{status}}")],
            "Runs finishing per second, by canonical status.",
            unit="ops",
        )
    )
    grid.add(
        _timeseries(
            "Failure ratio by workflow",
            _rate(finished, f + ',status="failed"', "source, workflow")
            + f" / {_rate(finished, f, 'source, workflow')}",
            "{{source}} / {{workflow}}",
            "Failed runs over all finished runs, per workflow.",
            unit="percentunit",
        )
    )
    grid.add(
        Panel(
            "Top error codes",
            "bargauge",
            [
                Target(
                    "topk(10, sum by (code) "
                    f"(increase(workflow_run_errors_total{{{f}}}[$__range])))",
                    legend="{{code}}",
                    instant=True,
                )
            ],
            "Failed runs by error code in the time range (the ten largest).",
            options={"orientation": "horizontal", "displayMode": "gradient"},
        )
    )
    grid.add(
        Panel(
            "Errors by code",
            "timeseries",
            [Target(_rate("workflow_run_errors_total", f, "code"), legend="{{code}}")],
            "Failed runs per second by error code: a spike of one code points at one cause.",
            unit="ops",
        )
    )
    last = "workflow_runs_last_finished_timestamp_seconds"
    grid.add(
        Panel(
            "Time since last success",
            "table",
            [
                Target(
                    f'time() - max by (source, workflow) ({last}{{{f},status="succeeded"}})',
                    instant=True,
                )
            ],
            "How long ago the newest successful run of each workflow finished "
            "(WorkflowNoSuccess). A workflow that never succeeded has no row.",
            unit="s",
        )
    )
    grid.add(
        Panel(
            "Time since last finished run",
            "table",
            [
                Target(
                    f"time() - max by (source, workflow) ({last}{{{f}}})",
                    instant=True,
                )
            ],
            "How long ago the newest run of each workflow finished, in any status "
            "(WorkflowSilent).",
            unit="s",
        )
    )
    grid.row("In progress")
    grid.add(
        Panel(
            "Active runs by status",
            "timeseries",
            [Target(f"sum by (status) (workflow_runs_active{{{f}}})", legend="{{status}}")],
            "Runs not yet finished, by status.",
            options={"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
        )
    )
    grid.add(
        Panel(
            "Oldest active run by workflow",
            "table",
            [
                Target(
                    "max by (source, workflow, status) "
                    f"(workflow_runs_oldest_active_age_seconds{{{f}}}) > 0",
                    instant=True,
                )
            ],
            "Age of the oldest unfinished run per workflow and status (stuck-run alerts).",
            unit="s",
        )
    )
    grid.add(
        Panel(
            "Review backlog",
            "timeseries",
            [
                Target(
                    "sum by (source, workflow) "
                    f'(workflow_runs_active{{{f},status="needs_review"}})',
                    legend="waiting: {{source}} / {{workflow}}",
                ),
            ],
            "Runs waiting on human review, per workflow.",
        )
    )
    grid.add(
        Panel(
            "Oldest run waiting on review",
            "timeseries",
            [
                Target(
                    "max by (source, workflow) "
                    f'(workflow_runs_oldest_active_age_seconds{{{f},status="needs_review"}})',
                    legend="{{source}} / {{workflow}}",
                ),
            ],
            "How long the oldest run waiting on review has waited, per workflow.",
            unit="s",
        )
    )
    grid.add(
        _timeseries(
            "Progress of active runs",
            f"avg by (source, workflow) (workflow_runs_progress_ratio{{{f}}})",
            "{{source}} / {{workflow}}",
            "Mean progress (0-100 %) of active runs that report progress.",
            unit="percentunit",
        )
    )
    grid.row("Durations")
    duration = "workflow_run_duration_seconds"
    grid.add(
        Panel(
            "Run duration p50 / p95 / p99",
            "timeseries",
            [
                Target(
                    _quantile(q, duration, f, "source, workflow"),
                    legend=f"p{p} {{{{workflow}}}}",
                    exemplar=True,
                )
                for q, p in (("0.5", "50"), ("0.95", "95"), ("0.99", "99"))
            ],
            "Duration of finished runs (created to finished), per workflow. The points are "
            "exemplars (with Prometheus's exemplar storage on): each names a run of that bucket.",
            unit="s",
        )
    )
    grid.add(
        Panel(
            "Run duration heatmap",
            "heatmap",
            [
                Target(
                    f"sum by (le) (increase({duration}_bucket{{{f}}}[$__rate_interval]))",
                    legend="{{le}}",
                    heatmap=True,
                )
            ],
            "How many runs finished in each duration bucket.",
            unit="s",
            options={"calculate": False, "yAxis": {"unit": "s"}, "cellGap": 1},
        )
    )
    grid.add(
        Panel(
            "Queue wait p50 / p95",
            "timeseries",
            [
                Target(
                    _quantile(q, "workflow_run_queue_wait_seconds", f, "source, workflow"),
                    legend=f"p{p} {{{{workflow}}}}",
                )
                for q, p in (("0.5", "50"), ("0.95", "95"))
            ],
            "Time from creation to start: how long runs wait for capacity.",
            unit="s",
        )
    )
    _steps_row(grid, f)
    grid.row("Alerts")
    grid.add(
        Panel(
            "Firing alerts",
            "table",
            [
                Target(
                    "sum by (alertname, severity, source, workflow) "
                    f'(ALERTS{{alertstate="firing",alertname=~"Workflow.*",{SOURCE_FILTER}}})',
                    instant=True,
                )
            ],
            "Alerts of workflow-runs-exporter's rules firing now.",
            width=24,
        )
    )
    return _dashboard(
        "workflow-runs",
        "Workflow runs",
        "Runs of document workflows by source, provider and workflow (workflow-runs-exporter).",
        grid,
        ["provider", "source", "workflow"],
    )


def _steps_row(grid: Grid, f: str) -> None:
    """Per-step panels: which step type fails, and how long steps take where the API says."""
    steps = "workflow_run_steps_total"
    # Steps that ran to an outcome: the denominator of the step failure ratio, as in the
    # WorkflowStepFailureRatioHigh rule (providers whose steps come from failed runs only, such
    # as Extend, are left out: `policy`).
    left_out = policy.without_partial_steps()
    ran = f'{f},{left_out},status=~"succeeded|failed"'
    grid.row("Steps")
    grid.add(
        Panel(
            "Failed steps by step type",
            "timeseries",
            [
                Target(
                    _rate(steps, f + ',status="failed"', "workflow, step"),
                    legend="{{workflow}} / {{step}}",
                )
            ],
            "Steps that failed per second, by workflow and step type (the step a failed run "
            "stopped at).",
            unit="ops",
        )
    )
    grid.add(
        _timeseries(
            "Step failure ratio",
            _rate(steps, f'{f},{left_out},status="failed"', "source, workflow, step")
            + f" / {_rate(steps, ran, 'source, workflow, step')}",
            "{{source}} / {{workflow}} / {{step}}",
            "Of the steps of each type that ran to an outcome, the share that failed "
            "(WorkflowStepFailureRatioHigh). Not-started steps after a failure do not dilute "
            "it; sources whose steps come from failed runs only (Extend) are left out.",
            unit="percentunit",
        )
    )
    grid.add(
        Panel(
            "Step duration p95",
            "timeseries",
            [
                Target(
                    _quantile(
                        "0.95", "workflow_run_step_duration_seconds", f, "source, workflow, step"
                    ),
                    legend="p95 {{workflow}} / {{step}}",
                )
            ],
            "95th percentile step duration, per workflow and step, where the API gives each "
            "step's start and end (Cortex); empty for the other providers.",
            unit="s",
        )
    )
    grid.add(
        Panel(
            "Steps by status",
            "bargauge",
            [
                Target(
                    f"sum by (status) (increase({steps}{{{f}}}[$__range]))",
                    legend="{{status}}",
                    instant=True,
                )
            ],
            "Steps of the runs that finished in the time range, by step status.",
            options={"orientation": "horizontal", "displayMode": "gradient"},
        )
    )


def exporter_health() -> Any:
    s, sp = SOURCE_FILTER, SOURCE_PROVIDER_FILTER
    grid = Grid()
    grid.add(
        Panel(
            "Source up",
            "stat",
            [Target(f"max by (source) (workflow_exporter_source_up{{{sp}}})", legend="{{source}}")],
            "1 when the last collection of the source succeeded.",
            width=12,
            height=5,
            options={
                "reduceOptions": {"calcs": ["lastNotNull"]},
                "colorMode": "background",
                "textMode": "value_and_name",
            },
        )
    )
    grid.add(
        Panel(
            "Time since last successful collection",
            "stat",
            [
                Target(
                    "time() - max by (source) "
                    f"(workflow_exporter_last_success_timestamp_seconds{{{s}}})",
                    legend="{{source}}",
                )
            ],
            "Seconds since each source's last successful collection.",
            width=12,
            height=5,
            unit="s",
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "textMode": "value_and_name"},
        )
    )
    grid.row("Collections")
    grid.add(
        _timeseries(
            "Collections by result",
            _rate("workflow_exporter_collections_total", s, "source, result"),
            "{{source}} {{result}}",
            "Collection cycles per second, successful or failed.",
            unit="ops",
        )
    )
    grid.add(
        _timeseries(
            "Collection duration p95",
            _quantile("0.95", "workflow_exporter_collection_duration_seconds", s, "source"),
            "{{source}}",
            "How long one collection cycle of a source takes.",
            unit="s",
        )
    )
    grid.add(
        _timeseries(
            "Runs ingested",
            _rate("workflow_exporter_runs_ingested_total", s, "source"),
            "{{source}}",
            "Run records read from the APIs per second.",
            unit="ops",
        )
    )
    grid.row("API calls")
    grid.add(
        _timeseries(
            "API requests by code",
            _rate("workflow_exporter_api_requests_total", s, "source, code"),
            "{{source}} {{code}}",
            "Requests per second by HTTP status (`error`: no answer).",
            unit="reqps",
        )
    )
    grid.add(
        Panel(
            "API latency p50 / p95",
            "timeseries",
            [
                Target(
                    _quantile(
                        q, "workflow_exporter_api_request_duration_seconds", s, "source, endpoint"
                    ),
                    legend=f"p{p} {{{{source}}}} {{{{endpoint}}}}",
                )
                for q, p in (("0.5", "50"), ("0.95", "95"))
            ],
            "Latency of API requests by endpoint.",
            unit="s",
        )
    )
    grid.add(
        _timeseries(
            "Retries and rate limiting",
            _rate("workflow_exporter_api_retries_total", s, "source, reason"),
            "{{source}} {{reason}}",
            "Retried requests per second by reason; `rate_limited` are 429 answers.",
            unit="reqps",
        )
    )
    grid.row("Data quality")
    grid.add(
        _timeseries(
            "Invalid records",
            "sum by (source, reason) "
            f"(increase(workflow_exporter_invalid_records_total{{{s}}}[$__rate_interval]))",
            "{{source}} {{reason}}",
            "Records the exporter could not read; they are skipped, the rest of the page is not.",
            width=8,
        )
    )
    grid.add(
        _timeseries(
            "Unknown native statuses",
            "sum by (source, native_status) "
            f"(increase(workflow_exporter_unknown_status_total{{{s}}}[$__rate_interval]))",
            "{{source}} {{native_status}}",
            "Runs in a status the mapping does not know (exported as `unknown`).",
            width=8,
        )
    )
    grid.add(
        _timeseries(
            "Dropped label values",
            "sum by (source, label) "
            "(increase(workflow_exporter_label_values_dropped_total"
            f"{{{s}}}[$__rate_interval]))",
            "{{source}} {{label}}",
            "Workflows or codes past their bound, folded into `other`.",
            width=8,
        )
    )
    grid.add(
        _timeseries(
            "Runs found late by the audit walk",
            "sum by (source, reason) "
            "(increase(workflow_exporter_runs_found_late_total"
            f"{{{s}}}[$__rate_interval]))",
            "{{source}} {{reason}}",
            "Runs the periodic audit walk counted that the incremental scan had missed: 0 "
            "where every guess about the API holds; anything else means one does not.",
            width=8,
        )
    )
    grid.add(
        _timeseries(
            "Scan inconsistencies",
            "sum by (source, reason) "
            "(increase(workflow_exporter_scan_inconsistencies_total"
            f"{{{s}}}[$__rate_interval]))",
            "{{source}} {{reason}}",
            "Answers of the API that do not add up (totals, repeated pages, clocks ahead).",
            width=8,
        )
    )
    grid.add(
        _timeseries(
            "Active runs given up",
            "sum by (source) "
            f"(increase(workflow_exporter_runs_vanished_total{{{s}}}[$__rate_interval]))",
            "{{source}}",
            "Active runs the API no longer knows and no list shows: not counted.",
            width=8,
        )
    )
    # The alerting agent's metrics carry no source: they are per exporter instance.
    grid.row("Per-run alerts (alerting agent)")
    grid.add(
        _timeseries(
            "Per-run alerts sent",
            _rate("workflow_exporter_alerts_sent_total", "", "instance, event"),
            "{{instance}} {{event}}",
            "Per-run alerts Alertmanager took, per second, by event; each Alertmanager counts.",
            unit="ops",
            width=8,
        )
    )
    grid.add(
        _timeseries(
            "Per-run alerts not delivered",
            "sum by (instance, reason) "
            "(increase(workflow_exporter_alerts_failed_total[$__rate_interval]))",
            "{{instance}} {{reason}}",
            "Alerts an Alertmanager did not take: `invalid` ones are dropped, the others wait.",
            width=8,
        )
    )
    grid.add(
        _timeseries(
            "Per-run alerts queued",
            "max by (instance) (workflow_exporter_alerts_queued)",
            "{{instance}}",
            "Events in the state file not yet taken by every Alertmanager.",
            width=8,
        )
    )
    return _dashboard(
        "workflow-runs-exporter-health",
        "Workflow runs exporter health",
        "Collections, API calls, data quality and per-run alert delivery of"
        " workflow-runs-exporter.",
        grid,
        ["provider", "source"],
    )


DASHBOARDS = {
    "workflow-runs.json": workflow_runs,
    "exporter-health.json": exporter_health,
    slo_dashboard.FILE: slo_dashboard.build,
}


def render(dashboard: Any) -> str:
    return json.dumps(dashboard, indent=2) + "\n"


def panel_queries(dashboard: Any) -> Iterator[tuple[str, str]]:
    """(panel title, expr) for every query of every panel."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


# What Grafana substitutes in queries, with values for running them outside Grafana.
GRAFANA_DEFAULTS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$source": ".*",
    "$provider": ".*",
    "$workflow": ".*",
    "$slo": ".*",
}


def concrete(expr: str, **values: str) -> str:
    """`expr` as Prometheus would receive it from Grafana (`values` override the defaults)."""
    merged = {**GRAFANA_DEFAULTS, **{f"${name}": value for name, value in values.items()}}
    # Longest names first, so a name that prefixes another (`$__range`) cannot cut it short.
    for name in sorted(merged, key=len, reverse=True):
        expr = expr.replace(name, merged[name])
    return expr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=GRAFANA_DIR)
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is not up to date")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = args.out_dir / name
        text = render(build())
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date, run `make dashboards`: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
