"""The rule groups of the configured SLOs: one group per SLO and indicator, its recordings first
(rules in a group run in order, so its alerts read this evaluation's values).

Recorded series, each labelled `slo`, `sli` and (but the two constants) `source`, `provider`,
`workflow`:
- `slo:sli_error:ratio_rate<w>`: the error ratio over each window a burn-rate tier reads, and
  over the SLO's window, that one summed from the hourly recordings rather than read from a
  month of raw samples (as Sloth builds its `_period` series);
- `slo:sli_error:increase1h`, `slo:sli_total:increase<w>`: runs that spent budget in the last
  hour, and runs that count in each long window (the low-traffic guard reads these);
- `slo:objective:ratio`, `slo:error_budget:ratio`: the constants;
- `slo:current_burn_rate:ratio`, `slo:period_burn_rate:ratio`,
  `slo:period_error_budget_remaining:ratio`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from exporter.config.slos import SloDefaults, SloSettings
from exporter.slo.burn import LONG_WINDOWS, PERIOD_STEP, TIERS, WINDOWS, BurnTier
from exporter.slo.sli import Sli, slis

DEFAULT_RUNBOOK = (
    "https://github.com/workflow-runs-exporter/workflow-runs-exporter/blob/main/docs/alerting.md"
)
GROUP_PREFIX = "workflow-runs-slo"


def _record(name: str, expr: str, sli: Sli) -> dict[str, Any]:
    return {"record": name, "expr": expr, "labels": sli.labels()}


def _recordings(sli: Sli) -> list[dict[str, Any]]:
    period = sli.period_text()
    own = sli.matcher()
    rules = [_record(f"slo:sli_error:ratio_rate{w}", sli.error_ratio(w), sli) for w in WINDOWS]
    rules.append(_record(f"slo:sli_error:increase{PERIOD_STEP}", sli.errors(PERIOD_STEP), sli))
    rules += [_record(f"slo:sli_total:increase{w}", sli.total(w), sli) for w in LONG_WINDOWS]
    # The ratio of the sums, not the mean of hourly ratios: an hour of many runs weighs more
    # than an hour of few, and an hour of none (0/0) spoils nothing.
    rules.append(
        _record(
            f"slo:sli_error:ratio_rate{period}",
            f"sum_over_time(slo:sli_error:increase{PERIOD_STEP}{{{own}}}[{period}])\n"
            f"/\nsum_over_time(slo:sli_total:increase{PERIOD_STEP}{{{own}}}[{period}])",
            sli,
        )
    )
    budget = sli.budget_text()
    rules += [
        _record("slo:objective:ratio", f"vector({sli.objective_ratio_text()})", sli),
        _record("slo:error_budget:ratio", f"vector({budget})", sli),
        _record(
            "slo:current_burn_rate:ratio", f"slo:sli_error:ratio_rate5m{{{own}}} / {budget}", sli
        ),
        _record(
            "slo:period_burn_rate:ratio",
            f"slo:sli_error:ratio_rate{period}{{{own}}} / {budget}",
            sli,
        ),
        _record(
            "slo:period_error_budget_remaining:ratio",
            f"1 - slo:period_burn_rate:ratio{{{own}}}",
            sli,
        ),
    ]
    return rules


def _alert(sli: Sli, tier: BurnTier, min_runs: str, runbook_base: str) -> dict[str, Any]:
    own = sli.matcher()
    threshold = sli.threshold_text(tier.factor)
    # The value is the budget left, for the summary; the conditions only filter.
    expr = (
        f"slo:period_error_budget_remaining:ratio{{{own}}}\n"
        f"and slo:sli_error:ratio_rate{tier.long_window}{{{own}}} > {threshold}\n"
        f"and slo:sli_error:ratio_rate{tier.short_window}{{{own}}} > {threshold}\n"
        f"and slo:sli_total:increase{tier.long_window}{{{own}}} >= {min_runs}"
    )
    return {
        "alert": tier.alert,
        "expr": expr,
        "labels": {**sli.labels(), "severity": tier.severity, "window": tier.long_window},
        "annotations": alert_annotations(sli, tier, min_runs, runbook_base),
    }


def alert_annotations(sli: Sli, tier: BurnTier, min_runs: str, runbook_base: str) -> dict[str, str]:
    period = sli.period_text()
    threshold = sli.threshold_text(tier.factor)
    went_wrong = "failed" if sli.kind == "success" else "took longer than the threshold"
    return {
        "summary": (
            f"SLO {sli.name_text()} ({sli.kind}) of {{{{ $labels.workflow }}}}"
            f" ({{{{ $labels.source }}}}) burns its error budget {tier.factor:g}x too fast;"
            f" {{{{ $value | humanizePercentage }}}} of the {period} budget left"
        ),
        "description": (
            f"Over both the last {tier.long_window} and the last {tier.short_window}, more"
            f" than {threshold} of the counted runs of workflow {{{{ $labels.workflow }}}} on"
            f" source {{{{ $labels.source }}}} ({{{{ $labels.provider }}}}) {went_wrong}:"
            f" {tier.factor:g} times the error budget of {sli.budget_text()} a"
            f" {sli.objective_text()}% objective allows, with at least {min_runs} runs in the"
            f" last {tier.long_window}."
        ),
        "runbook_url": f"{runbook_base}#{tier.alert.lower()}",
    }


def indicator_rules(sli: Sli, min_runs: str, runbook_base: str) -> list[dict[str, Any]]:
    """One indicator's recordings, then its alerts."""
    rules = _recordings(sli)
    rules += [_alert(sli, tier, min_runs, runbook_base) for tier in TIERS]
    return rules


def build_groups(
    slos: Sequence[SloSettings],
    defaults: SloDefaults | None = None,
    runbook_base: str = DEFAULT_RUNBOOK,
) -> list[dict[str, Any]]:
    defaults = defaults or SloDefaults()
    groups = []
    for slo in slos:
        min_runs = slo.min_runs if slo.min_runs is not None else defaults.min_runs
        for sli in slis(slo):
            groups.append(
                {
                    "name": f"{GROUP_PREFIX}.{slo.name}.{sli.kind}",
                    "rules": indicator_rules(sli, str(min_runs), runbook_base),
                }
            )
    return groups
