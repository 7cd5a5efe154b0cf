"""The SLOs dashboard, built with Grafana's own builders (grafana-foundation-sdk, Grafana 11.6).

It reads only the series the SLO rules record (docs/slos.md): each SLO's objective, its
indicator over the SLO's window, the error budget left, the burn rate over every window the
alerts read, the runs the low-traffic guard counts, and the SLO alerts firing. Registered in
`monitoring.dashboards.DASHBOARDS`, so `make dashboards` writes `grafana/slos.json` and the same
checks run on it.
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from exporter.slo.burn import PAGE_ALERT, TICKET_ALERT, TIERS, WINDOWS

FILE = "slos.json"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
# The recorded per-workflow series, narrowed by the dashboard's variables.
SELECTED = 'slo=~"$slo",source=~"$source",workflow=~"$workflow"'
BUDGET = 'slo:error_budget:ratio{slo=~"$slo"}'
LEGEND = "{{slo}} {{sli}} {{workflow}} ({{source}})"


def _query(expr: str, legend: str = LEGEND, ref: str = "A", instant: bool = False) -> Any:
    query = (
        prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)
    )
    return query.instant().format(PromQueryFormat.TABLE) if instant else query.range()


def _variable(name: str, label: str, query: str) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .query(query)
        .datasource(DATASOURCE)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .include_all(True)
        .all_value(".*")
        .multi(True)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .current(model.VariableOption(text="All", value="$__all"))
    )


def _at(h: int, w: int, x: int, y: int) -> model.GridPos:
    return model.GridPos(h=h, w=w, x=x, y=y)


def _stat(title: str, expr: str, description: str, pos: model.GridPos) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(_query(expr))
        .unit("percentunit")
        .grid_pos(pos)
    )


def _series(title: str, description: str, pos: model.GridPos) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .grid_pos(pos)
    )


def build() -> dict[str, Any]:
    burn = _series(
        "Burn rate per window",
        "Error ratio over each window the alerts read, divided by the budget: 1 spends the"
        f" budget exactly over the SLO's window; the page fires above {TIERS[0].factor:g}"
        f" (1h and 5m) or {TIERS[1].factor:g} (6h and 30m), the ticket above"
        f" {TIERS[2].factor:g} (1d and 2h) or {TIERS[3].factor:g} (3d and 6h).",
        _at(9, 24, 0, 14),
    )
    for index, window in enumerate(WINDOWS):
        burn = burn.with_target(
            _query(
                f"slo:sli_error:ratio_rate{window}{{{SELECTED}}}\n"
                f"  / on (slo, sli) group_left {BUDGET}",
                f"{window} {LEGEND}",
                chr(ord("A") + index),
            )
        )
    board = (
        dashboard.Dashboard("Workflow runs SLOs")
        .uid("workflow-runs-slos")
        .description(
            "Service-level objectives of workflow runs: objective, indicator, error budget,"
            " burn rates and SLO alerts (docs/slos.md)."
        )
        .tags(["workflow-runs-exporter"])
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
        .with_variable(_variable("slo", "SLO", "label_values(slo:objective:ratio, slo)"))
        .with_variable(
            _variable(
                "source", "Source", 'label_values(slo:sli_total:increase1h{slo=~"$slo"}, source)'
            )
        )
        .with_variable(
            _variable(
                "workflow",
                "Workflow",
                'label_values(slo:sli_total:increase1h{slo=~"$slo",source=~"$source"}, workflow)',
            )
        )
        .with_panel(
            _stat(
                "Objective",
                'slo:objective:ratio{slo=~"$slo"}',
                "The share of runs each SLO promises: good ones (success) or fast ones (latency).",
                _at(5, 6, 0, 0),
            )
        )
        .with_panel(
            _stat(
                "Error budget left",
                f"slo:period_error_budget_remaining:ratio{{{SELECTED}}}",
                "Of the SLO window's error budget, the share not yet spent; below 0 overspent.",
                _at(5, 18, 6, 0),
            )
        )
        .with_panel(
            _series(
                "SLI over the window",
                "The share of good runs over each SLO's whole window (e.g. 30 days).",
                _at(9, 12, 0, 5),
            )
            .with_target(
                _query(
                    f"1 - slo:period_burn_rate:ratio{{{SELECTED}}}\n"
                    f"  * on (slo, sli) group_left {BUDGET}"
                )
            )
            .unit("percentunit")
        )
        .with_panel(
            _series(
                "Error budget left over time",
                "How the budget was spent: a steep fall is an incident.",
                _at(9, 12, 12, 5),
            )
            .with_target(_query(f"slo:period_error_budget_remaining:ratio{{{SELECTED}}}"))
            .unit("percentunit")
        )
        .with_panel(burn)
        .with_panel(
            _series(
                "Runs counted in the last hour",
                "The low-traffic guard: a burn-rate alert fires only with at least min_runs runs"
                " in its long window (docs/slos.md, few runs).",
                _at(8, 12, 0, 23),
            ).with_target(_query(f"slo:sli_total:increase1h{{{SELECTED}}}"))
        )
        .with_panel(
            table.Panel()
            .title("Firing SLO alerts")
            .description("Burn-rate alerts firing now; `window` is the alert's long window.")
            .datasource(DATASOURCE)
            .grid_pos(_at(8, 12, 12, 23))
            .with_target(
                _query(
                    f'ALERTS{{alertname=~"{PAGE_ALERT}|{TICKET_ALERT}",alertstate="firing",'
                    f'slo=~"$slo"}}',
                    instant=True,
                )
            )
        )
    )
    encoded: dict[str, Any] = json.loads(JSONEncoder(sort_keys=True).encode(board.build()))
    # The builders write an interval variable's settings on every variable; Grafana's schema
    # knows them on interval variables only.
    for variable in encoded["templating"]["list"]:
        if variable["type"] != "interval":
            for key in _INTERVAL_ONLY:
                variable.pop(key, None)
    return encoded


_INTERVAL_ONLY = ("auto", "auto_count", "auto_min")
