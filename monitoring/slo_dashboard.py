"""The SLOs dashboard: each SLO's objective, its indicator over the SLO's window, the error
budget left, the burn rate over every window the alerts read, the runs the low-traffic guard
counts, and the SLO alerts firing. It reads only the series the SLO rules record
(docs/slos.md), so its queries have data where those rules run (tests/system/test_e2e_slo.py).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.builders import stat, timeseries

from exporter.slo.burn import PAGE_ALERT, TICKET_ALERT, TIERS, WINDOWS
from monitoring.panels import dashboard_of, last_value, panel, query, series, table_of

FILE = "slos.json"
# The recorded per-workflow series, narrowed by the dashboard's variables.
SELECTED = 'slo=~"$slo",source=~"$source",workflow=~"$workflow"'
BUDGET = 'slo:error_budget:ratio{slo=~"$slo"}'
LEGEND = "{{slo}} {{sli}} {{workflow}} ({{source}})"

# The filter variables, from the recorded series, each filtered by the ones before it.
VARIABLES = {
    "slo": ("SLO", "label_values(slo:objective:ratio, slo)"),
    "source": ("Source", 'label_values(slo:sli_total:increase1h{slo=~"$slo"}, source)'),
    "workflow": (
        "Workflow",
        'label_values(slo:sli_total:increase1h{slo=~"$slo",source=~"$source"}, workflow)',
    ),
}


def _burn_rates() -> timeseries.Panel:
    tiers = ", ".join(f"{t.factor:g} over {t.long_window} and {t.short_window}" for t in TIERS)
    return panel(
        timeseries.Panel(),
        "Burn rate per window",
        "Error ratio over each window the alerts read, divided by the budget: 1 spends the"
        f" budget exactly over the SLO's window. The alerts fire above: {tiers}.",
        [
            query(
                f"slo:sli_error:ratio_rate{window}{{{SELECTED}}}\n"
                f"  / on (slo, sli) group_left {BUDGET}",
                f"{window} {LEGEND}",
            )
            for window in WINDOWS
        ],
        width=24,
        height=9,
    )


def dashboard() -> builders.Dashboard:
    board = dashboard_of(
        "workflow-runs-slos",
        "Workflow runs SLOs",
        "Service-level objectives of workflow runs: objective, indicator, error budget, burn"
        " rates and SLO alerts (docs/slos.md).",
        list(VARIABLES),
        VARIABLES,
    )
    objective = panel(
        stat.Panel(),
        "Objective",
        "The share of runs each SLO promises: good ones (success) or fast ones (latency).",
        [query('slo:objective:ratio{slo=~"$slo"}', "{{slo}} {{sli}}")],
        unit="percentunit",
        width=6,
        height=5,
    )
    left = panel(
        stat.Panel(),
        "Error budget left",
        "Of the SLO window's error budget, the share not yet spent; below 0 overspent.",
        [query(f"slo:period_error_budget_remaining:ratio{{{SELECTED}}}", LEGEND)],
        unit="percentunit",
        width=18,
        height=5,
    )
    board.with_panel(objective.reduce_options(last_value()))
    board.with_panel(left.reduce_options(last_value()))
    board.with_panel(
        series(
            "SLI over the window",
            f"1 - slo:period_burn_rate:ratio{{{SELECTED}}}\n  * on (slo, sli) group_left {BUDGET}",
            LEGEND,
            "The share of good runs over each SLO's whole window (e.g. 30 days).",
            unit="percentunit",
        )
    )
    board.with_panel(
        series(
            "Error budget left over time",
            f"slo:period_error_budget_remaining:ratio{{{SELECTED}}}",
            LEGEND,
            "How the budget was spent: a steep fall is an incident.",
            unit="percentunit",
        )
    )
    board.with_panel(_burn_rates())
    board.with_panel(
        series(
            "Runs counted in the last hour",
            f"slo:sli_total:increase1h{{{SELECTED}}}",
            LEGEND,
            "The low-traffic guard: a burn-rate alert fires only with at least min_runs runs in"
            " its long window (docs/slos.md, few runs).",
        )
    )
    board.with_panel(
        table_of(
            "Firing SLO alerts",
            f'ALERTS{{alertname=~"{PAGE_ALERT}|{TICKET_ALERT}",alertstate="firing",slo=~"$slo"}}',
            "Burn-rate alerts firing now; `window` is the alert's long window.",
        )
    )
    return board
