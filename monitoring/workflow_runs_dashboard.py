"""The *Workflow runs* dashboard (`grafana/workflow-runs.json`): runs of document workflows by
source, provider and workflow.

Over 300 lines with no named split: one dashboard, a function per row.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.builders import heatmap, timeseries
from grafana_foundation_sdk.models import common

from monitoring import policy
from monitoring.panels import (
    SOURCE_FILTER,
    WORKFLOW_FILTER,
    bars,
    dashboard_of,
    headline,
    panel,
    quantile,
    query,
    rate,
    row,
    series,
    table_of,
)

FINISHED = "workflow_runs_finished_total"
LAST_FINISHED = "workflow_runs_last_finished_timestamp_seconds"
DURATION = "workflow_run_duration_seconds"
STEPS = "workflow_run_steps_total"


def dashboard() -> builders.Dashboard:
    board = dashboard_of(
        "workflow-runs",
        "Workflow runs",
        "Runs of document workflows by source, provider and workflow (workflow-runs-exporter).",
        ["provider", "source", "workflow"],
    )
    _headlines(board)
    _throughput(board)
    _in_progress(board)
    _durations(board)
    _steps(board)
    board.with_row(row("Alerts"))
    board.with_panel(
        table_of(
            "Firing alerts",
            "sum by (alertname, severity, source, workflow) "
            f'(ALERTS{{alertstate="firing",alertname=~"Workflow.*",{SOURCE_FILTER}}})',
            "Alerts of workflow-runs-exporter's rules firing now.",
        ).span(24)
    )
    return board


def _headlines(board: builders.Dashboard) -> None:
    f = WORKFLOW_FILTER
    failed = f'sum(increase({FINISHED}{{{f},status="failed"}}[$__range]))'
    finished = f"sum(increase({FINISHED}{{{f}}}[$__range]))"
    for title, expr, description, unit in (
        ("Runs finished", finished, "Runs that reached a terminal status in the time range.", ""),
        ("Runs failed", failed, "Runs that failed in the time range.", ""),
        (
            "Failure ratio",
            f"{failed} / {finished}",
            "Failed runs over all finished runs in the time range.",
            "percentunit",
        ),
        (
            "Active runs",
            f"sum(workflow_runs_active{{{f}}})",
            "Runs queued, running, waiting on review or in an unknown status now.",
            "",
        ),
        (
            "Waiting on review",
            f'sum(workflow_runs_active{{{f},status="needs_review"}})',
            "Runs waiting on human review now.",
            "",
        ),
        (
            "Oldest active run",
            f"max(workflow_runs_oldest_active_age_seconds{{{f}}})",
            "Age of the oldest run that has not finished.",
            "s",
        ),
    ):
        board.with_panel(headline(title, expr, description, unit=unit or "short"))


def _throughput(board: builders.Dashboard) -> None:
    f = WORKFLOW_FILTER
    board.with_row(row("Throughput and failures"))
    board.with_panel(
        series(
            "Throughput by status",
            rate(FINISHED, f, "status"),
            "{{status}}",
            "Runs finishing per second, by canonical status.",
            unit="ops",
        )
    )
    board.with_panel(
        series(
            "Failure ratio by workflow",
            rate(FINISHED, f + ',status="failed"', "source, workflow")
            + f" / {rate(FINISHED, f, 'source, workflow')}",
            "{{source}} / {{workflow}}",
            "Failed runs over all finished runs, per workflow.",
            unit="percentunit",
        )
    )
    board.with_panel(
        bars(
            "Top error codes",
            f"topk(10, sum by (code) (increase(workflow_run_errors_total{{{f}}}[$__range])))",
            "{{code}}",
            "Failed runs by error code in the time range (the ten largest).",
        )
    )
    board.with_panel(
        series(
            "Errors by code",
            rate("workflow_run_errors_total", f, "code"),
            "{{code}}",
            "Failed runs per second by error code: a spike of one code points at one cause.",
            unit="ops",
        )
    )
    board.with_panel(
        table_of(
            "Time since last success",
            f'time() - max by (source, workflow) ({LAST_FINISHED}{{{f},status="succeeded"}})',
            "How long ago the newest successful run of each workflow finished "
            "(WorkflowNoSuccess). A workflow that never succeeded has no row.",
            unit="s",
        )
    )
    board.with_panel(
        table_of(
            "Time since last finished run",
            f"time() - max by (source, workflow) ({LAST_FINISHED}{{{f}}})",
            "How long ago the newest run of each workflow finished, in any status "
            "(WorkflowSilent).",
            unit="s",
        )
    )


def _in_progress(board: builders.Dashboard) -> None:
    f = WORKFLOW_FILTER
    board.with_row(row("In progress"))
    board.with_panel(
        series(
            "Active runs by status",
            f"sum by (status) (workflow_runs_active{{{f}}})",
            "{{status}}",
            "Runs not yet finished, by status.",
        ).legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    board.with_panel(
        table_of(
            "Oldest active run by workflow",
            "max by (source, workflow, status) "
            f"(workflow_runs_oldest_active_age_seconds{{{f}}}) > 0",
            "Age of the oldest unfinished run per workflow and status (stuck-run alerts).",
            unit="s",
        )
    )
    board.with_panel(
        series(
            "Review backlog",
            f'sum by (source, workflow) (workflow_runs_active{{{f},status="needs_review"}})',
            "waiting: {{source}} / {{workflow}}",
            "Runs waiting on human review, per workflow.",
        )
    )
    board.with_panel(
        series(
            "Oldest run waiting on review",
            "max by (source, workflow) "
            f'(workflow_runs_oldest_active_age_seconds{{{f},status="needs_review"}})',
            "{{source}} / {{workflow}}",
            "How long the oldest run waiting on review has waited, per workflow.",
            unit="s",
        )
    )
    board.with_panel(
        series(
            "Progress of active runs",
            f"avg by (source, workflow) (workflow_runs_progress_ratio{{{f}}})",
            "{{source}} / {{workflow}}",
            "Mean progress (0-100 %) of active runs that report progress.",
            unit="percentunit",
        )
    )


def _durations(board: builders.Dashboard) -> None:
    f = WORKFLOW_FILTER
    board.with_row(row("Durations"))
    board.with_panel(
        panel(
            timeseries.Panel(),
            "Run duration p50 / p95 / p99",
            "Duration of finished runs (created to finished), per workflow. The points are "
            "exemplars (with Prometheus's exemplar storage on): each names a run of that bucket.",
            [
                query(
                    quantile(q, DURATION, f, "source, workflow"),
                    f"p{p} {{{{workflow}}}}",
                    exemplar=True,
                )
                for q, p in (("0.5", "50"), ("0.95", "95"), ("0.99", "99"))
            ],
            unit="s",
        )
    )
    board.with_panel(
        panel(
            heatmap.Panel(),
            "Run duration heatmap",
            "How many runs finished in each duration bucket.",
            [
                query(
                    f"sum by (le) (increase({DURATION}_bucket{{{f}}}[$__rate_interval]))",
                    "{{le}}",
                    heatmap_buckets=True,
                )
            ],
            unit="s",
        )
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit("s"))
        .cell_gap(1)
    )
    board.with_panel(
        panel(
            timeseries.Panel(),
            "Queue wait p50 / p95",
            "Time from creation to start: how long runs wait for capacity.",
            [
                query(
                    quantile(q, "workflow_run_queue_wait_seconds", f, "source, workflow"),
                    f"p{p} {{{{workflow}}}}",
                )
                for q, p in (("0.5", "50"), ("0.95", "95"))
            ],
            unit="s",
        )
    )


def _steps(board: builders.Dashboard) -> None:
    """Per-step panels: which step type fails, and how long steps take where the API says."""
    f = WORKFLOW_FILTER
    # Steps that ran to an outcome: the denominator of the step failure ratio, as in the
    # WorkflowStepFailureRatioHigh rule (providers whose steps come from failed runs only, such
    # as Extend, are left out: `policy`).
    left_out = policy.without_partial_steps()
    ran = f'{f},{left_out},status=~"succeeded|failed"'
    board.with_row(row("Steps"))
    board.with_panel(
        series(
            "Failed steps by step type",
            rate(STEPS, f + ',status="failed"', "workflow, step"),
            "{{workflow}} / {{step}}",
            "Steps that failed per second, by workflow and step type (the step a failed run "
            "stopped at).",
            unit="ops",
        )
    )
    board.with_panel(
        series(
            "Step failure ratio",
            rate(STEPS, f'{f},{left_out},status="failed"', "source, workflow, step")
            + f" / {rate(STEPS, ran, 'source, workflow, step')}",
            "{{source}} / {{workflow}} / {{step}}",
            "Of the steps of each type that ran to an outcome, the share that failed "
            "(WorkflowStepFailureRatioHigh). Not-started steps after a failure do not dilute "
            "it; sources whose steps come from failed runs only (Extend) are left out.",
            unit="percentunit",
        )
    )
    board.with_panel(
        series(
            "Step duration p95",
            quantile("0.95", "workflow_run_step_duration_seconds", f, "source, workflow, step"),
            "p95 {{workflow}} / {{step}}",
            "95th percentile step duration, per workflow and step, where the API gives each "
            "step's start and end (Cortex); empty for the other providers.",
            unit="s",
        )
    )
    board.with_panel(
        bars(
            "Steps by status",
            f"sum by (status) (increase({STEPS}{{{f}}}[$__range]))",
            "{{status}}",
            "Steps of the runs that finished in the time range, by step status.",
        )
    )
