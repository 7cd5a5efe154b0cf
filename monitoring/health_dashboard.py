"""The *Workflow runs exporter health* dashboard (`grafana/exporter-health.json`): collections,
API calls, data quality and per-run alert delivery."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.models import common

from monitoring.panels import (
    SOURCE_FILTER,
    SOURCE_PROVIDER_FILTER,
    dashboard_of,
    last_value,
    panel,
    quantile,
    query,
    rate,
    row,
    series,
)


def dashboard() -> builders.Dashboard:
    board = dashboard_of(
        "workflow-runs-exporter-health",
        "Workflow runs exporter health",
        "Collections, API calls, data quality and per-run alert delivery of"
        " workflow-runs-exporter.",
        ["provider", "source"],
    )
    _sources(board)
    _collections_and_calls(board)
    _data_quality(board)
    _alerting_agent(board)
    return board


def _sources(board: builders.Dashboard) -> None:
    s, sp = SOURCE_FILTER, SOURCE_PROVIDER_FILTER
    board.with_panel(
        panel(
            stat.Panel(),
            "Source up",
            "1 when the last collection of the source succeeded.",
            [query(f"max by (source) (workflow_exporter_source_up{{{sp}}})", "{{source}}")],
            height=5,
        )
        .reduce_options(last_value())
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
    )
    board.with_panel(
        panel(
            stat.Panel(),
            "Time since last successful collection",
            "Seconds since each source's last successful collection.",
            [
                query(
                    "time() - max by (source) "
                    f"(workflow_exporter_last_success_timestamp_seconds{{{s}}})",
                    "{{source}}",
                )
            ],
            unit="s",
            height=5,
        )
        .reduce_options(last_value())
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
    )


def _collections_and_calls(board: builders.Dashboard) -> None:
    s = SOURCE_FILTER
    board.with_row(row("Collections"))
    board.with_panel(
        series(
            "Collections by result",
            rate("workflow_exporter_collections_total", s, "source, result"),
            "{{source}} {{result}}",
            "Collection cycles per second, successful or failed.",
            unit="ops",
        )
    )
    board.with_panel(
        series(
            "Collection duration p95",
            quantile("0.95", "workflow_exporter_collection_duration_seconds", s, "source"),
            "{{source}}",
            "How long one collection cycle of a source takes.",
            unit="s",
        )
    )
    board.with_panel(
        series(
            "Runs ingested",
            rate("workflow_exporter_runs_ingested_total", s, "source"),
            "{{source}}",
            "Run records read from the APIs per second.",
            unit="ops",
        )
    )
    board.with_row(row("API calls"))
    board.with_panel(
        series(
            "API requests by code",
            rate("workflow_exporter_api_requests_total", s, "source, code"),
            "{{source}} {{code}}",
            "Requests per second by HTTP status (`error`: no answer).",
            unit="reqps",
        )
    )
    latency = "workflow_exporter_api_request_duration_seconds"
    board.with_panel(
        panel(
            timeseries.Panel(),
            "API latency p50 / p95",
            "Latency of API requests by endpoint.",
            [
                query(
                    quantile(q, latency, s, "source, endpoint"),
                    f"p{p} {{{{source}}}} {{{{endpoint}}}}",
                )
                for q, p in (("0.5", "50"), ("0.95", "95"))
            ],
            unit="s",
        )
    )
    board.with_panel(
        series(
            "Retries and rate limiting",
            rate("workflow_exporter_api_retries_total", s, "source, reason"),
            "{{source}} {{reason}}",
            "Retried requests per second by reason; `rate_limited` are 429 answers.",
            unit="reqps",
        )
    )


def _increase(metric: str, by: str) -> str:
    """Events per scrape interval of a self-metric, for the selected sources."""
    return f"sum by ({by}) (increase({metric}{{{SOURCE_FILTER}}}[$__rate_interval]))"


def _data_quality(board: builders.Dashboard) -> None:
    board.with_row(row("Data quality"))
    for title, metric, by, description in (
        (
            "Invalid records",
            "workflow_exporter_invalid_records_total",
            "source, reason",
            "Records the exporter could not read; they are skipped, the rest of the page is not.",
        ),
        (
            "Unknown native statuses",
            "workflow_exporter_unknown_status_total",
            "source, native_status",
            "Runs in a status the mapping does not know (exported as `unknown`).",
        ),
        (
            "Dropped label values",
            "workflow_exporter_label_values_dropped_total",
            "source, label",
            "Workflows or codes past their bound, folded into `other`.",
        ),
        (
            "Runs found late by the audit walk",
            "workflow_exporter_runs_found_late_total",
            "source, reason",
            "Runs the periodic audit walk counted that the incremental scan had missed: 0 "
            "where every guess about the API holds; anything else means one does not.",
        ),
        (
            "Scan inconsistencies",
            "workflow_exporter_scan_inconsistencies_total",
            "source, reason",
            "Answers of the API that do not add up (totals, repeated pages, clocks ahead).",
        ),
        (
            "Active runs given up",
            "workflow_exporter_runs_vanished_total",
            "source",
            "Active runs the API no longer knows and no list shows: not counted.",
        ),
    ):
        legend = " ".join(f"{{{{{label.strip()}}}}}" for label in by.split(","))
        board.with_panel(series(title, _increase(metric, by), legend, description, width=8))


def _alerting_agent(board: builders.Dashboard) -> None:
    # The alerting agent's metrics carry no source: they are per exporter instance.
    board.with_row(row("Per-run alerts (alerting agent)"))
    board.with_panel(
        series(
            "Per-run alerts sent",
            rate("workflow_exporter_alerts_sent_total", "", "instance, event"),
            "{{instance}} {{event}}",
            "Per-run alerts Alertmanager took, per second, by event; each Alertmanager counts.",
            unit="ops",
            width=8,
        )
    )
    board.with_panel(
        series(
            "Per-run alerts not delivered",
            "sum by (instance, reason) "
            "(increase(workflow_exporter_alerts_failed_total[$__rate_interval]))",
            "{{instance}} {{reason}}",
            "Alerts an Alertmanager did not take: `invalid` ones are dropped, the others wait.",
            width=8,
        )
    )
    board.with_panel(
        series(
            "Per-run alerts queued",
            "max by (instance) (workflow_exporter_alerts_queued)",
            "{{instance}}",
            "Events in the state file not yet taken by every Alertmanager.",
            width=8,
        )
    )
