"""The alerts about the exporter itself: sources down or stale, API errors and rate limits,
state, webhooks, audits and scrape health, from `monitoring/thresholds.yaml`."""

from __future__ import annotations

from typing import Any

from monitoring.thresholds import Thresholds, alert, series


def exporter_alerts(t: Thresholds) -> list[dict[str, Any]]:
    up = series(t, "workflow_exporter_source_up")
    last = series(t, "workflow_exporter_last_success_timestamp_seconds")
    retries = series(t, "workflow_exporter_api_retries_total", 'reason="rate_limited"')
    requests = series(t, "workflow_exporter_api_requests_total")
    error_codes = t.get("api_errors", "codes")
    failing = series(t, "workflow_exporter_api_requests_total", f'code=~"{error_codes}"')
    invalid = series(t, "workflow_exporter_invalid_records_total")
    inconsistent = series(t, "workflow_exporter_scan_inconsistencies_total")
    late = series(t, "workflow_exporter_runs_found_late_total")
    vanished = series(t, "workflow_exporter_runs_vanished_total")
    lw, vw = t.get("runs_found_late", "window"), t.get("runs_vanishing", "window")
    undelivered = series(t, "workflow_exporter_alerts_failed_total")
    target = series(t, "up")
    hooks = series(t, "workflow_exporter_webhooks_received_total", 'result="accepted"')
    runs = series(t, "workflow_runs_finished_total")
    hw, hh = t.get("webhooks_silent", "window"), t.get("webhooks_silent", "history")
    refused = series(t, "workflow_exporter_state_write_errors_total")
    rl, ae, iw, uw, sw, ww = (
        t.get("rate_limited", "window"),
        t.get("api_errors", "window"),
        t.get("invalid_records", "window"),
        t.get("alerts_undelivered", "window"),
        t.get("scan_inconsistent", "window"),
        t.get("state_not_writable", "window"),
    )
    src = "source {{ $labels.source }}"
    return [
        alert(
            t,
            "WorkflowExporterSourceDown",
            "source_down",
            f"max by (source, provider) ({up}) == 0",
            "Collection failing for source {{ $labels.source }}",
            f"The last collection of {src} ({{{{ $labels.provider }}}}) failed; its runs are"
            " not being counted. The exporter's log names the error.",
        ),
        alert(
            t,
            "WorkflowExporterCollectionStale",
            "collection_stale",
            f"time() - max by (source) ({last}) > {t.get('collection_stale', 'age_seconds')}",
            "No successful collection for source {{ $labels.source }}",
            f"The last successful collection of {src} was {{{{ $value | humanizeDuration }}}}"
            " ago; its metrics are stale.",
        ),
        alert(
            t,
            "WorkflowExporterRateLimited",
            "rate_limited",
            f"sum by (source) (increase({retries}[{rl}]))"
            f" >= {t.get('rate_limited', 'min_retries')}",
            "The API rate-limits the exporter for source {{ $labels.source }}",
            f'{{{{ $value | printf "%.0f" }}}} requests of {src} were answered 429 in the last'
            f" {rl}; collection slows down and may fall behind.",
        ),
        alert(
            t,
            "WorkflowExporterApiErrors",
            "api_errors",
            f"sum by (source, endpoint) (rate({failing}[{ae}]))\n"
            f"  / sum by (source, endpoint) (rate({requests}[{ae}]))"
            f" > {t.get('api_errors', 'ratio')}",
            "API calls failing for source {{ $labels.source }}",
            f"{{{{ $value | humanizePercentage }}}} of {src}'s {{{{ $labels.endpoint }}}} calls"
            f" failed in the last {ae}.",
        ),
        alert(
            t,
            "WorkflowExporterInvalidRecords",
            "invalid_records",
            f"sum by (source, reason) (increase({invalid}[{iw}]))"
            f" >= {t.get('invalid_records', 'min_records')}",
            "Records rejected for source {{ $labels.source }}",
            f'{{{{ $value | printf "%.0f" }}}} records of {src} were rejected as'
            f" {{{{ $labels.reason }}}} in the last {iw}; they are not counted.",
        ),
        alert(
            t,
            "WorkflowExporterStateNotWritable",
            "state_not_writable",
            f"sum by (instance, source) (increase({refused}[{ww}]))"
            f" >= {t.get('state_not_writable', 'min_errors')}",
            "The exporter cannot write its state for source {{ $labels.source }}",
            f'{{{{ $value | printf "%.0f" }}}} state writes of {src} on {{{{ $labels.instance }}}}'
            f" were refused in the last {ww} (disk full, read-only, I/O error): it counts"
            " nothing until a write goes through, then catches up. /healthz names the error.",
        ),
        alert(
            t,
            "WorkflowExporterScanInconsistent",
            "scan_inconsistent",
            f"sum by (source, reason) (increase({inconsistent}[{sw}])) > 0",
            "The API's answers for source {{ $labels.source }} do not add up",
            f"Scans of {src} found {{{{ $labels.reason }}}}"
            f' {{{{ $value | printf "%.0f" }}}} times in the last {sw}; its counts may be off.'
            " The exporter's warning log names the numbers.",
        ),
        alert(
            t,
            "WorkflowExporterRunsFoundLate",
            "runs_found_late",
            f"sum by (source, reason) (increase({late}[{lw}])) > 0",
            "The audit walk found runs the scans of source {{ $labels.source }} had missed",
            f'The audit walk of {src} counted {{{{ $value | printf "%.0f" }}}} runs late'
            f" ({{{{ $labels.reason }}}}) in the last {lw}: the incremental scan had missed"
            " them, so a guess about the API is wrong. `check` and the warning log say which.",
        ),
        alert(
            t,
            "WorkflowExporterRunsVanishing",
            "runs_vanishing",
            f"sum by (source) (increase({vanished}[{vw}]))"
            f" >= {t.get('runs_vanishing', 'min_runs')}",
            "Active runs of source {{ $labels.source }} vanish from the API",
            f'{{{{ $value | printf "%.0f" }}}} active runs of {src} were given up in the last'
            f" {vw}: the API no longer knows them and no list shows them; they are not counted.",
        ),
        alert(
            t,
            "WorkflowExporterWebhooksSilent",
            "webhooks_silent",
            # Polling still counts every run: what is lost is speed, so a warning.
            f"sum by (source) (increase({hooks}[{hw}])) == 0\n"
            f"  and on (source) sum by (source) (increase({runs}[{hw}]))"
            f" >= {t.get('webhooks_silent', 'min_finished')}\n"
            f"  and on (source) sum by (source) (increase({hooks}[{hh}] offset {hw})) > 0\n"
            # Still taking webhooks now: a source whose secret a reload removed keeps a flat
            # range for a window after its series went, which is no silence.
            f"  and on (source) group by (source) ({hooks})",
            "Webhooks stopped arriving for source {{ $labels.source }}",
            f"No webhook of {src} was accepted in the last {hw} while its runs kept finishing;"
            " they are counted at each poll instead of at once. Look at"
            " workflow_exporter_webhooks_received_total by result (bad_signature: a rotated"
            " secret) and at the platform's delivery log.",
        ),
        alert(
            t,
            "WorkflowExporterAlertsUndelivered",
            "alerts_undelivered",
            f"sum by (instance, reason) (increase({undelivered}[{uw}])) > 0",
            "Per-run alerts from {{ $labels.instance }} are not reaching Alertmanager",
            f'{{{{ $value | printf "%.0f" }}}} per-run alerts from {{{{ $labels.instance }}}}'
            f" were not taken by an Alertmanager in the last {uw} (reason"
            " {{ $labels.reason }}); `invalid` ones are dropped, the others wait queued.",
        ),
        alert(
            t,
            "WorkflowExporterDown",
            "exporter_down",
            f"{target} == 0",
            "Prometheus cannot scrape the exporter at {{ $labels.instance }}",
            "The exporter at {{ $labels.instance }} does not answer scrapes; the runs of its"
            " sources are not being exported.",
        ),
        alert(
            t,
            "WorkflowExporterAbsent",
            "exporter_absent",
            f"absent({target} == 1)",
            "No workflow-runs-exporter is being scraped",
            "Prometheus has no healthy scrape target for the exporter; no workflow alert can fire.",
        ),
    ]
