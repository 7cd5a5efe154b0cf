"""promtool unit tests for generated SLO rules, one set per indicator of an SLO file.

Each indicator is driven through four stories, in the runs it sees per minute:
- a fast burn: three quiet hours, then half an hour of every run bad. The page (14.4x over 1h
  and 5m) must not fire before half the workbook's detection time, must fire by that time plus a
  minute, and must resolve within six minutes of the failures stopping (the 5m window);
- a slow burn: 4% of runs bad from the start, four times what a 99% objective allows: a ticket
  with its exact summary (the budget left is known: 1 - 4 = -300%), no page;
- good traffic: 0.5% bad for six hours: nothing fires;
- few runs: one run each quarter hour for seven hours, then one that fails. The one-hour and
  five-minute error ratios are past the page's threshold, but the hour holds fewer than
  `min_runs` runs, so the page holds.

The stories assume the indicator's objective is 99% and `min_runs` is 20 (the example file's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from exporter.config.slos import SloSettings
from exporter.slo.burn import PAGE_ALERT, TICKET_ALERT, TIERS, BurnTier
from exporter.slo.rules import DEFAULT_RUNBOOK, alert_annotations
from exporter.slo.sli import LATENCY, Sli, bucket_bound, slis

SOURCE, PROVIDER, WORKFLOW = "plextera-prod", "plextera", "invoices"
WHERE = f'source="{SOURCE}",provider="{PROVIDER}",workflow="{WORKFLOW}"'
OBJECTIVE = 99.0
MIN_RUNS = 20


@dataclass(frozen=True)
class Story:
    """Runs per minute, good and bad, minute by minute from t=0."""

    good: list[int]
    bad: list[int]


def _cumulative(per_minute: list[int]) -> list[int]:
    total, out = 0, [0]
    for count in per_minute:
        total += count
        out.append(total)
    return out


def _compact(values: list[int]) -> str:
    """promtool's expanding notation: `a+bxn` for n steps of b after a."""
    tokens, i = [], 0
    while i < len(values):
        j = i
        step = values[i + 1] - values[i] if i + 1 < len(values) else 0
        while j + 1 < len(values) and values[j + 1] - values[j] == step:
            j += 1
        tokens.append(f"{values[i]}+{step}x{j - i}" if j > i else str(values[i]))
        i = j + 1
    return " ".join(tokens)


def _input_series(sli: Sli, story: Story) -> list[dict[str, str]]:
    good, bad = _cumulative(story.good), _cumulative(story.bad)
    everything = [g + b for g, b in zip(good, bad, strict=True)]
    if sli.kind == LATENCY:
        latency = sli.slo.latency
        assert latency is not None
        status = latency.statuses[0]
        le = bucket_bound(latency.threshold)
        return [
            {
                "series": f'workflow_run_duration_seconds_count{{{WHERE},status="{status}"}}',
                "values": _compact(everything),
            },
            {
                "series": f"workflow_run_duration_seconds_bucket"
                f'{{{WHERE},status="{status}",le="{le}"}}',
                "values": _compact(good),
            },
        ]
    success = sli.slo.success
    assert success is not None
    return [
        {
            "series": f'workflow_runs_finished_total{{{WHERE},status="{success.good[0]}"}}',
            "values": _compact(good),
        },
        {
            "series": f'workflow_runs_finished_total{{{WHERE},status="{success.bad[0]}"}}',
            "values": _compact(bad),
        },
    ]


def _labels(sli: Sli) -> dict[str, str]:
    return {
        "slo": sli.slo.name,
        "sli": sli.kind,
        "source": SOURCE,
        "provider": PROVIDER,
        "workflow": WORKFLOW,
    }


def _series_text(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _quiet(alertname: str, minute: int) -> dict[str, Any]:
    return {"eval_time": f"{minute}m", "alertname": alertname, "exp_alerts": []}


def _fast_burn(sli: Sli) -> dict[str, Any]:
    quiet, outage, after = 180, 30, 10
    page = TIERS[0]
    detection = page.detection_time(sli.error_budget, 1.0)
    assert detection is not None
    minutes = detection.total_seconds() / 60
    fired_by = quiet + math.ceil(minutes) + 1
    page_alert = (
        f'ALERTS{{alertname="{PAGE_ALERT}",window="{page.long_window}",'
        f'slo="{sli.slo.name}",sli="{sli.kind}",alertstate="firing"}}'
    )
    firing = {
        "alertname": PAGE_ALERT,
        "alertstate": "firing",
        "severity": page.severity,
        "window": page.long_window,
        **_labels(sli),
    }
    return {
        "name": f"{sli.slo.name} {sli.kind}: a fast burn pages within the detection time",
        "interval": "1m",
        "input_series": _input_series(
            sli,
            Story(
                [10] * quiet + [0] * outage + [10] * after,
                [0] * quiet + [10] * outage + [0] * after,
            ),
        ),
        "alert_rule_test": [_quiet(PAGE_ALERT, quiet + math.floor(minutes / 2))],
        "promql_expr_test": [
            {
                "expr": page_alert,
                "eval_time": f"{fired_by}m",
                "exp_samples": [{"labels": "ALERTS" + _series_text(firing), "value": 1}],
            },
            # Resolved once the short window holds no failure, though the hour still does.
            {"expr": page_alert, "eval_time": f"{quiet + outage + 6}m", "exp_samples": []},
        ],
    }


def _slow_burn(sli: Sli) -> dict[str, Any]:
    minutes = 180
    ticket = TIERS[2]
    alerts: list[dict[str, Any]] = []
    for tier in TIERS[2:]:
        labels = {**_labels(sli), "severity": tier.severity, "window": tier.long_window}
        alerts.append({"exp_labels": labels, "exp_annotations": _annotations(sli, tier, "-300%")})
    return {
        "name": f"{sli.slo.name} {sli.kind}: a slow burn raises a ticket and no page",
        "interval": "1m",
        "input_series": _input_series(sli, Story([24] * minutes, [1] * minutes)),
        "alert_rule_test": [
            _quiet(PAGE_ALERT, minutes),
            {"eval_time": f"{minutes}m", "alertname": ticket.alert, "exp_alerts": alerts},
        ],
    }


def _annotations(sli: Sli, tier: BurnTier, budget_left: str) -> dict[str, str]:
    annotations = alert_annotations(sli, tier, str(MIN_RUNS), DEFAULT_RUNBOOK)
    annotations["summary"] = (
        annotations["summary"]
        .replace("{{ $labels.workflow }}", WORKFLOW)
        .replace("{{ $labels.source }}", SOURCE)
        .replace("{{ $value | humanizePercentage }}", budget_left)
    )
    annotations["description"] = (
        annotations["description"]
        .replace("{{ $labels.workflow }}", WORKFLOW)
        .replace("{{ $labels.source }}", SOURCE)
        .replace("{{ $labels.provider }}", PROVIDER)
    )
    return annotations


def _good_traffic(sli: Sli) -> dict[str, Any]:
    minutes = 360
    return {
        "name": f"{sli.slo.name} {sli.kind}: good traffic raises nothing",
        "interval": "1m",
        "input_series": _input_series(sli, Story([199] * minutes, [1] * minutes)),
        "alert_rule_test": [_quiet(PAGE_ALERT, minutes), _quiet(TICKET_ALERT, minutes)],
    }


def _few_runs(sli: Sli) -> dict[str, Any]:
    history = 7 * 60
    good = [1 if minute % 15 == 0 else 0 for minute in range(history)] + [0] * 10
    bad = [0] * history + [1] + [0] * 9
    at = f"{history + 3}m"
    own = f'{{slo="{sli.slo.name}",sli="{sli.kind}"}}'
    threshold = TIERS[0].threshold(sli.error_budget)
    held = (
        f"(slo:sli_error:ratio_rate1h{own} > bool {threshold:g})"
        f" * (slo:sli_error:ratio_rate5m{own} > bool {threshold:g})"
        f" * (slo:sli_total:increase1h{own} < bool {MIN_RUNS})"
    )
    return {
        "name": f"{sli.slo.name} {sli.kind}: one failure among few runs does not page",
        "interval": "1m",
        "input_series": _input_series(sli, Story(good, bad)),
        "alert_rule_test": [_quiet(PAGE_ALERT, history + 3)],
        # Both windows are past the threshold: only the guard holds the page.
        "promql_expr_test": [
            {
                "expr": held,
                "eval_time": at,
                "exp_samples": [{"labels": _series_text(_labels(sli)), "value": 1}],
            }
        ],
    }


def build_tests(slos: list[SloSettings], rules_file: str) -> dict[str, Any]:
    tests = []
    for slo in slos:
        for sli in slis(slo):
            if sli.objective != OBJECTIVE:
                raise ValueError(f"{slo.name}: the stories assume a {OBJECTIVE}% objective")
            tests += [_fast_burn(sli), _slow_burn(sli), _good_traffic(sli), _few_runs(sli)]
    return {"rule_files": [rules_file], "evaluation_interval": "1m", "tests": tests}
