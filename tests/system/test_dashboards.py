"""The Grafana dashboards: generated, typed by the SDK's builders, and valid PromQL."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring import dashboards, slo_dashboard

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
BOARDS = dashboards.boards()


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _titles(board: Any) -> set[str]:
    return {panel["title"] for panel in board["panels"]}


def test_committed_dashboards_are_generated() -> None:
    assert dashboards.main(["--check"]) == 0, "run `make dashboards`"


def test_the_builders_types_reject_a_wrong_panel(tmp_path: Path) -> None:
    """The dashboards are typed by the SDK's builders under `mypy --strict`: a string where
    Grafana wants a number, or a value outside an option's enum, fails; the right ones pass."""
    common = "from grafana_foundation_sdk.models import common\nfrom monitoring import panels\n"
    good = tmp_path / "good.py"
    good.write_text(
        common + 'panels.headline("R", "up", "d").height(4)'
        ".color_mode(common.BigValueColorMode.BACKGROUND)\n"
    )
    bad = tmp_path / "bad.py"
    bad.write_text(common + 'panels.headline("R", "up", "d").height("four").color_mode("shiny")\n')

    def mypy(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path), str(path)],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )

    assert mypy(good).returncode == 0, mypy(good).stdout
    result = mypy(bad)
    assert result.returncode != 0
    assert 'Argument 1 to "height"' in result.stdout
    assert 'Argument 1 to "color_mode"' in result.stdout


def test_datasource_is_a_variable_everywhere() -> None:
    for name, board in BOARDS.items():
        for node in _walk(board):
            if "datasource" in node and isinstance(node["datasource"], dict):
                assert node["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, name
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"


def test_workflow_dashboard_has_the_variables_and_panels() -> None:
    board = BOARDS["workflow-runs.json"]
    names = [v["name"] for v in board["templating"]["list"]]
    assert names == ["datasource", "provider", "source", "workflow"]
    assert {
        "Throughput by status",
        "Failure ratio by workflow",
        "Active runs by status",
        "Run duration p50 / p95 / p99",
        "Run duration heatmap",
        "Queue wait p50 / p95",
        "Top error codes",
        "Oldest active run by workflow",
        "Review backlog",
        "Failed steps by step type",
        "Step failure ratio",
        "Step duration p95",
        "Firing alerts",
    } <= _titles(board)
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            if "ALERTS" not in target["expr"]:
                assert 'workflow=~"$workflow"' in target["expr"], panel["title"]


def test_health_dashboard_has_the_panels() -> None:
    board = BOARDS["exporter-health.json"]
    assert {
        "Source up",
        "Time since last successful collection",
        "API requests by code",
        "API latency p50 / p95",
        "Retries and rate limiting",
        "Invalid records",
        "Dropped label values",
    } <= _titles(board)


def test_slo_dashboard_has_the_variables_and_panels() -> None:
    board = BOARDS[slo_dashboard.FILE]
    assert board["schemaVersion"] >= 41  # built with the Grafana 11.6 builders
    names = [v["name"] for v in board["templating"]["list"]]
    assert names == ["datasource", "slo", "source", "workflow"]
    assert {
        "Objective",
        "Error budget left",
        "SLI over the window",
        "Burn rate per window",
        "Runs counted in the last hour",
        "Firing SLO alerts",
    } <= _titles(board)
    (burn,) = [p for p in board["panels"] if p["title"] == "Burn rate per window"]
    assert [t["expr"].split("{")[0] for t in burn["targets"]] == [
        f"slo:sli_error:ratio_rate{w}" for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
    ]
    for panel in board["panels"]:
        for target in panel["targets"]:
            assert 'slo=~"$slo"' in target["expr"], panel["title"]


def test_panels_do_not_overlap() -> None:
    for name, board in BOARDS.items():
        cells: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, (name, panel["title"])
            mine = {
                (x, y)
                for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])
            }
            assert not mine & cells, (name, panel["title"])
            cells |= mine


def test_every_panel_query_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by `make test`"
    rules = [
        {"record": f"panel:check:{i}", "expr": dashboards.concrete(expr)}
        for i, (_, expr) in enumerate(
            q for board in BOARDS.values() for q in dashboards.panel_queries(board)
        )
    ]
    assert len(rules) > 25
    path = tmp_path / "panels.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))

    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_catches_a_broken_query(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool
    path = tmp_path / "bad.rules.yml"
    bad = dashboards.concrete("sum by (status) (rate(workflow_runs_finished_total[$__range])")
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "p", "rules": [{"record": "a:b", "expr": bad}]}]})
    )
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
