"""What every dashboard shares, on the builders of Grafana's SDK (`grafana-foundation-sdk`):
the data source and filter variables, the query shapes, and the panel conventions.

Every query goes through the `${datasource}` variable (no datasource uid is baked in), and every
selector honours the dashboard's variables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from grafana_foundation_sdk.builders import bargauge, heatmap, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.models import common, dashboard
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DATASOURCE = dashboard.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["workflow-runs-exporter"]

# Selectors the panels share; Grafana expands the variables (`.*` when "All" is chosen).
WORKFLOW_FILTER = 'source=~"$source",provider=~"$provider",workflow=~"$workflow"'
SOURCE_FILTER = 'source=~"$source"'
SOURCE_PROVIDER_FILTER = 'source=~"$source",provider=~"$provider"'

# The filter variables, each filtered by the ones before it: (label, values query).
VARIABLE_QUERIES = {
    "provider": ("Provider", "label_values(workflow_exporter_source_up, provider)"),
    "source": (
        "Source",
        'label_values(workflow_exporter_source_up{provider=~"$provider"}, source)',
    ),
    "workflow": (
        "Workflow",
        'label_values(workflow_runs_finished_total{source=~"$source",provider=~"$provider"}, '
        "workflow)",
    ),
}

# Every panel kind the dashboards use; the helpers below take any of them.
AnyPanel = TypeVar(
    "AnyPanel", timeseries.Panel, stat.Panel, table.Panel, bargauge.Panel, heatmap.Panel
)


def rate(metric: str, selector: str, by: str, window: str = "$__rate_interval") -> str:
    return f"sum by ({by}) (rate({metric}{{{selector}}}[{window}]))"


def quantile(q: str, metric: str, selector: str, by: str) -> str:
    return f"histogram_quantile({q}, {rate(metric + '_bucket', selector, by + ', le')})"


def query(
    expr: str,
    legend: str = "__auto",
    *,
    instant: bool = False,
    heatmap_buckets: bool = False,
    exemplar: bool = False,
) -> prometheus.Dataquery:
    """One PromQL target; `exemplar` shows the series' exemplars (a run id per bucket) as points
    to click through."""
    target = prometheus.Dataquery().datasource(DATASOURCE).expr(expr).legend_format(legend)
    target = target.instant() if instant else target.range()
    if exemplar:
        target.exemplar(True)
    if heatmap_buckets:
        target.format(PromQueryFormat.HEATMAP)
    elif instant:
        target.format(PromQueryFormat.TABLE)
    return target


def panel(
    builder: AnyPanel,
    title: str,
    description: str,
    queries: list[prometheus.Dataquery],
    *,
    unit: str = "short",
    width: int = 12,
    height: int = 8,
) -> AnyPanel:
    """A panel of any kind with what every panel carries; the dashboard places it left to right
    in Grafana's 24 columns."""
    builder.title(title).description(description).datasource(DATASOURCE).unit(unit)
    builder.span(width).height(height)
    for index, target in enumerate(queries):
        builder.with_target(target.ref_id(chr(ord("A") + index)))
    return builder


def series(
    title: str,
    expr: str,
    legend: str,
    description: str,
    *,
    unit: str = "short",
    width: int = 12,
) -> timeseries.Panel:
    """One query over time: the shape of most panels."""
    return panel(
        timeseries.Panel(), title, description, [query(expr, legend)], unit=unit, width=width
    )


def headline(title: str, expr: str, description: str, *, unit: str = "short") -> stat.Panel:
    """A small stat of the top row: the latest value, coloured."""
    value = panel(stat.Panel(), title, description, [query(expr)], unit=unit, width=4, height=4)
    return value.reduce_options(last_value()).color_mode(common.BigValueColorMode.VALUE)


def last_value() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().calcs(["lastNotNull"])


def table_of(title: str, expr: str, description: str, *, unit: str = "short") -> table.Panel:
    """The latest value per series, as rows."""
    return panel(table.Panel(), title, description, [query(expr, instant=True)], unit=unit)


def bars(title: str, expr: str, legend: str, description: str) -> bargauge.Panel:
    """Totals over the time range, as horizontal bars."""
    gauge = panel(bargauge.Panel(), title, description, [query(expr, legend, instant=True)])
    return gauge.orientation(common.VizOrientation.HORIZONTAL).display_mode(
        common.BarGaugeDisplayMode.GRADIENT
    )


def row(title: str) -> builders.Row:
    return builders.Row(title)


def datasource_variable() -> builders.DatasourceVariable:
    return (
        builders.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(dashboard.VariableOption(text="default", value="default"))
    )


def filter_variable(
    name: str, queries: Mapping[str, tuple[str, str]] = VARIABLE_QUERIES
) -> builders.QueryVariable:
    """A multi-value filter variable: its label and the query of its values, from `queries`."""
    label, values = queries[name]
    return (
        builders.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query({"query": values, "refId": f"{name}-values"})
        # On time range change: new workflows appear without a reload.
        .refresh(dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .include_all(True)
        .all_value(".*")
        .multi(True)
        .sort(dashboard.VariableSort.ALPHABETICAL_ASC)
        .current(dashboard.VariableOption(text="All", value="$__all"))
    )


def dashboard_of(
    uid: str,
    title: str,
    description: str,
    variables: Sequence[str],
    queries: Mapping[str, tuple[str, str]] = VARIABLE_QUERIES,
) -> builders.Dashboard:
    """A dashboard with the shared conventions: tags, shared crosshair, refresh, the data source
    variable and the named filter variables (their values from `queries`), in that order."""
    board = (
        builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .tooltip(dashboard.DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .with_variable(datasource_variable())
    )
    for name in variables:
        board.with_variable(filter_variable(name, queries))
    return board
