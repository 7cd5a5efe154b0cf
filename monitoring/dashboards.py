"""The Grafana dashboards: the registry of every dashboard the project ships, and their files.

Each dashboard is built in its own module with the builders of Grafana's SDK and the shared
conventions of `monitoring.panels`. `python -m monitoring.dashboards` writes `grafana/*.json`;
`--check` only compares. `panel_queries()` lists each panel's PromQL for the tests: they
syntax-check it with promtool and run it against a real Prometheus and a real VictoriaMetrics.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from monitoring import health_dashboard, slo_dashboard, workflow_runs_dashboard

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GRAFANA_DIR = ROOT / "grafana"

# Every dashboard the project ships: its file name and the function that builds it. A new
# dashboard is a module of its own and one line here; the files, the chart's copies and the
# tests take every entry.
DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "workflow-runs.json": workflow_runs_dashboard.dashboard,
    "exporter-health.json": health_dashboard.dashboard,
    slo_dashboard.FILE: slo_dashboard.dashboard,
}


def as_data(board: Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model, its panels numbered in order (stable panel links)."""
    model = board.build()
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number
    data: dict[str, Any] = json.loads(JSONEncoder().encode(model))
    return data


def boards() -> dict[str, dict[str, Any]]:
    """File name -> JSON model of every registered dashboard."""
    return {name: as_data(build()) for name, build in DASHBOARDS.items()}


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def panel_queries(data: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, expr) for every query of every panel."""
    for panel in data["panels"]:
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


def expected_files(out_dir: Path = GRAFANA_DIR) -> dict[Path, str]:
    """Every generated dashboard file and its text."""
    return {out_dir / name: render(data) for name, data in boards().items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=GRAFANA_DIR)
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is not up to date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in expected_files(args.out_dir).items():
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date, run `make dashboards`: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
