"""The per-workflow alerts: failure spikes and ratios, latency, stuck and waiting runs, step
failures and silence, from `monitoring/thresholds.yaml`."""

from __future__ import annotations

from typing import Any

from monitoring import policy
from monitoring.thresholds import WORKFLOW_LABELS, Thresholds, alert, series


def workflow_alerts(t: Thresholds) -> list[dict[str, Any]]:
    finished = "workflow_runs_finished_total"
    failed = series(t, finished, 'status="failed"')
    w, bw = t.get("failed_spike", "window"), t.get("failed_spike", "baseline_window")
    spike = (
        f"sum by ({WORKFLOW_LABELS}) (increase({failed}[{w}]))"
        f" >= {t.get('failed_spike', 'min_failures')}\n"
        f"and on ({WORKFLOW_LABELS})\n"
        f"  sum by ({WORKFLOW_LABELS}) (rate({failed}[{w}]))\n"
        f"  > {t.get('failed_spike', 'factor')} * (\n"
        f"    sum by ({WORKFLOW_LABELS}) (rate({failed}[{bw}] offset {w}))\n"
        # A workflow with no history before the window (new, or Prometheus just started) has a
        # baseline of zero rather than none, so its first burst still pages.
        f"    or\n"
        f"    sum by ({WORKFLOW_LABELS}) (rate({failed}[{w}])) * 0\n"
        f"  )"
    )
    rw = t.get("failure_ratio", "window")
    failure_statuses = t.get("failure_ratio", "statuses")
    failures = series(t, finished, f'status=~"{failure_statuses}"')
    all_finished = series(t, finished)
    ratio = (
        f"sum by ({WORKFLOW_LABELS}) (increase({failures}[{rw}]))\n"
        f"  / sum by ({WORKFLOW_LABELS}) (increase({all_finished}[{rw}]))\n"
        f"  > {t.get('failure_ratio', 'ratio')}\n"
        f"and on ({WORKFLOW_LABELS})\n"
        f"  sum by ({WORKFLOW_LABELS}) (increase({all_finished}[{rw}]))"
        f" >= {t.get('failure_ratio', 'min_runs')}"
    )
    oldest = "workflow_runs_oldest_active_age_seconds"
    stuck_statuses = t.get("stuck", "statuses")
    stuck_series = series(t, oldest, f'status=~"{stuck_statuses}"')
    stuck = f"max by ({WORKFLOW_LABELS}, status) ({stuck_series}) > {t.get('stuck', 'age_seconds')}"
    in_review = series(t, oldest, 'status="needs_review"')
    review = f"max by ({WORKFLOW_LABELS}) ({in_review}) > {t.get('review_backlog', 'age_seconds')}"
    sw = t.get("finished_stalled", "window")
    in_progress = series(t, "workflow_runs_active", 'status=~"queued|running"')
    stalled = (
        f"sum by ({WORKFLOW_LABELS}) (increase({all_finished}[{sw}])) == 0\n"
        f"and on ({WORKFLOW_LABELS})\n"
        f"  sum by ({WORKFLOW_LABELS}) ({in_progress})"
        f" >= {t.get('finished_stalled', 'min_active')}"
    )
    dw = t.get("duration_p95", "window")
    bucket = series(t, "workflow_run_duration_seconds_bucket")
    count = series(t, "workflow_run_duration_seconds_count")
    p95 = (
        f"histogram_quantile(0.95, sum by ({WORKFLOW_LABELS}, le) (rate({bucket}[{dw}])))"
        f" > {t.get('duration_p95', 'seconds')}\n"
        f"and on ({WORKFLOW_LABELS})\n"
        f"  sum by ({WORKFLOW_LABELS}) (increase({count}[{dw}]))"
        f" >= {t.get('duration_p95', 'min_runs')}"
    )
    where = (
        "workflow {{ $labels.workflow }} on source {{ $labels.source }} ({{ $labels.provider }})"
    )
    return [
        alert(
            t,
            "WorkflowRunsFailedSpike",
            "failed_spike",
            spike,
            "Spike of failed runs in {{ $labels.workflow }} ({{ $labels.source }})",
            f'{{{{ $value | printf "%.0f" }}}} runs of {where} failed in the last {w},'
            f" more than {t.get('failed_spike', 'factor')}x the rate of the {bw} before.",
        ),
        alert(
            t,
            "WorkflowRunsFailureRatioHigh",
            "failure_ratio",
            ratio,
            "High failure ratio in {{ $labels.workflow }} ({{ $labels.source }})",
            f"{{{{ $value | humanizePercentage }}}} of the runs of {where} that finished in the"
            f" last {rw} failed.",
        ),
        alert(
            t,
            "WorkflowRunsStuck",
            "stuck",
            stuck,
            "Runs stuck {{ $labels.status }} in {{ $labels.workflow }} ({{ $labels.source }})",
            f"The oldest {{{{ $labels.status }}}} run of {where} has waited"
            " {{ $value | humanizeDuration }}.",
        ),
        alert(
            t,
            "WorkflowReviewBacklogAging",
            "review_backlog",
            review,
            "Review backlog aging in {{ $labels.workflow }} ({{ $labels.source }})",
            f"The oldest run of {where} waiting on human review has waited"
            " {{ $value | humanizeDuration }}.",
        ),
        alert(
            t,
            "WorkflowRunsFinishedStalled",
            "finished_stalled",
            stalled,
            "No runs finish in {{ $labels.workflow }} ({{ $labels.source }})",
            f"No run of {where} finished in the last {sw} while runs are queued or running.",
        ),
        alert(
            t,
            "WorkflowRunDurationP95High",
            "duration_p95",
            p95,
            "Slow runs in {{ $labels.workflow }} ({{ $labels.source }})",
            f"The p95 duration of runs of {where} over the last {dw} is"
            " {{ $value | humanizeDuration }}.",
        ),
        _step_failure_alert(t, where),
        *_last_finished_alerts(t, where),
    ]


def _step_failure_alert(t: Thresholds, where: str) -> dict[str, Any]:
    steps = "workflow_run_steps_total"
    by = f"{WORKFLOW_LABELS}, step"
    sw = t.get("step_failure_ratio", "window")
    # A fact of the providers' APIs, not a threshold: `steps_of_failed_runs_only` in the registry.
    left_out = policy.without_partial_steps()
    failed = series(t, steps, 'status="failed"', left_out)
    ran = series(t, steps, f'status=~"{t.get("step_failure_ratio", "ran")}"', left_out)
    # Of the steps of one type that ran to an outcome, the share that failed: steps a failed run
    # never started (`not_started`) are no evidence either way.
    ratio = (
        f"sum by ({by}) (increase({failed}[{sw}]))\n"
        f"  / sum by ({by}) (increase({ran}[{sw}]))\n"
        f"  > {t.get('step_failure_ratio', 'ratio')}\n"
        f"and on ({by})\n"
        f"  sum by ({by}) (increase({ran}[{sw}]))"
        f" >= {t.get('step_failure_ratio', 'min_steps')}"
    )
    return alert(
        t,
        "WorkflowStepFailureRatioHigh",
        "step_failure_ratio",
        ratio,
        "Step {{ $labels.step }} failing in {{ $labels.workflow }} ({{ $labels.source }})",
        f"{{{{ $value | humanizePercentage }}}} of the {{{{ $labels.step }}}} steps of {where}"
        f" that ran in the last {sw} failed.",
    )


def _last_finished_alerts(t: Thresholds, where: str) -> list[dict[str, Any]]:
    last = "workflow_runs_last_finished_timestamp_seconds"
    succeeded = series(t, last, 'status="succeeded"')
    other_statuses = t.get("no_success", "statuses")
    others = series(t, last, f'status=~"{other_statuses}"')
    ns = t.get("no_success", "seconds")
    # Runs that keep finishing without success are what tells "broken" from "stopped": a
    # workflow that stops altogether drops out of this alert `seconds` after its last run, and
    # is WorkflowSilent's if it used to run regularly.
    no_success = (
        f"time() - max by ({WORKFLOW_LABELS}) ({succeeded}) > {ns}\n"
        f"and on ({WORKFLOW_LABELS})\n"
        f"  time() - max by ({WORKFLOW_LABELS}) ({others}) < {ns}"
    )
    ss = t.get("silent", "seconds")
    hs = t.get("silent", "history_seconds")
    every = t.get("silent", "usual_interval_seconds")
    anything = series(t, last)
    all_finished = series(t, "workflow_runs_finished_total")
    up = series(t, "workflow_exporter_source_up")
    # The history is the window that ended `seconds` ago: when the alert first fires, the day
    # before the silence began. As the silence goes on that window empties, so the alert's own
    # ALERTS series keeps it firing until a run finishes. One run fewer than history/interval
    # is asked for, as a run on either edge of the window may fall outside it.
    silent = (
        f"time() - max by ({WORKFLOW_LABELS}) ({anything}) > {ss}\n"
        f"and on ({WORKFLOW_LABELS})\n"
        f"  (\n"
        f"    sum by ({WORKFLOW_LABELS}) (increase({all_finished}[{hs}s] offset {ss}s))\n"
        f"      >= {hs} / {every} - 1\n"
        f"    or\n"
        f'    max by ({WORKFLOW_LABELS}) (ALERTS{{alertname="WorkflowSilent"}})\n'
        f"  )\n"
        # A source that cannot be collected freezes every gauge of it: one
        # WorkflowExporterSourceDown says so, rather than a silence alert per workflow.
        f"unless on (source)\n"
        f"  max by (source) ({up}) == 0"
    )
    return [
        alert(
            t,
            "WorkflowNoSuccess",
            "no_success",
            no_success,
            "No successful run of {{ $labels.workflow }} ({{ $labels.source }})",
            f"The last run of {where} that succeeded finished"
            " {{ $value | humanizeDuration }} ago; runs keep finishing in other statuses.",
        ),
        alert(
            t,
            "WorkflowSilent",
            "silent",
            silent,
            "Workflow {{ $labels.workflow }} ({{ $labels.source }}) went silent",
            f"No run of {where} has finished for {{{{ $value | humanizeDuration }}}}; it used"
            f" to finish one at least every {every}s.",
        ),
    ]
