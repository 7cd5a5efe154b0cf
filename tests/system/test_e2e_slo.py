"""End to end on loopback: an SLO on a simulated workflow, its rules from `slo-rules` loaded into a
real Prometheus scraping the exporter. Good runs keep the budget whole; an incident (every new
run fails) makes the short windows burn, the budget fall below zero and the fast page fire, with
the SLO's and the workflow's labels; every panel of the SLOs dashboard has data. Real windows: a
Prometheus minutes old holds only minutes of data, so the incident fills its 1h and 5m windows
alike."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from monitoring import dashboards, slo_dashboard
from tests.conftest import SimFactory, source_for
from tests.loopback import (
    EXPORTER,
    Processes,
    free_port,
    prometheus_query,
    start_exporter,
    start_prometheus,
    until,
)

pytestmark = [pytest.mark.system, pytest.mark.timeout(120)]

SLO = "e2e-invoices"


def _value(base: str, expr: str) -> float | None:
    result = prometheus_query(base, expr)
    return float(result[0]["value"][1]) if result else None


def test_an_incident_spends_the_budget_and_pages(tmp_path: Path, simulator: SimFactory) -> None:
    sim = simulator("plextera", seed=71, history_seconds=600)
    sim.world.arrival_rate_per_min = 0  # only the runs this test makes
    workflow = sim.world.add_workflow("SLO invoices").name
    sim.start_driver(speed=1.0)
    config = {
        "interval": "1s",
        "state_path": str(tmp_path / "state.db"),
        "new_series_hold": "2s",
        "sources": [source_for(sim, "plextera", name="plextera-slo")],
        "slos": [
            {
                "name": SLO,
                "sources": ["plextera-slo"],
                "workflows": {"include": [workflow]},
                "min_runs": 10,
                "success": {"objective": 99.0},
            }
        ],
    }
    processes = Processes()
    status = {"native": sim.native_for("succeeded")}
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            sim.world.add_runs(2, workflow=workflow, native_status=status["native"])
            stop.wait(0.5)

    feeder = threading.Thread(target=traffic, daemon=True)
    try:
        exporter_port, prom_port = free_port(), free_port()
        start_exporter(processes, tmp_path, exporter_port, config)
        rules = tmp_path / "slo.rules.yml"
        generated = subprocess.run(
            [*EXPORTER, "slo-rules", "--config.file", str(tmp_path / "exporter.yml")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert generated.returncode == 0, generated.stderr
        rules.write_text(generated.stdout, encoding="utf-8")
        start_prometheus(
            processes,
            tmp_path,
            prom_port,
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "scrape_configs": [
                    {
                        "job_name": "workflow-runs-exporter",
                        "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
                    }
                ],
            },
        )
        base = f"http://127.0.0.1:{prom_port}"
        own = f'{{slo="{SLO}",sli="success",source="plextera-slo",workflow="{workflow}"}}'
        budget = f"slo:period_error_budget_remaining:ratio{own}"
        page = (
            f'ALERTS{{alertname="WorkflowSLOBurnRatePage",alertstate="firing",slo="{SLO}",'
            f'window="1h",workflow="{workflow}"}}'
        )
        feeder.start()
        until("the whole budget while every run succeeds", lambda: _value(base, budget) == 1, 40)
        assert _value(base, "slo:objective:ratio") == 0.99
        assert not prometheus_query(base, page)

        status["native"] = sim.native_for("failed")  # the incident: every new run fails
        until(
            "the fast page firing",
            lambda: bool(prometheus_query(base, page)),
            40,
        )
        (alert,) = prometheus_query(base, page)
        labels = alert["metric"]
        assert labels["severity"] == "critical"
        assert (labels["source"], labels["provider"], labels["sli"]) == (
            "plextera-slo",
            "plextera",
            "success",
        )
        left = _value(base, budget)
        assert left is not None
        assert left < 0, "a 99% objective's budget is overspent by minutes of failures only"
        burn = _value(base, f"slo:current_burn_rate:ratio{own}")
        assert burn is not None
        assert burn > 14.4
        # Every panel of the SLOs dashboard, as Grafana would query it, has data now.
        board = dashboards.as_data(slo_dashboard.dashboard())
        empty = [
            title
            for title, expr in dashboards.panel_queries(board)
            if not prometheus_query(base, dashboards.concrete(expr))
        ]
        assert not empty, f"SLO dashboard panels without data: {empty}"
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                inner = variable["query"]["query"].removeprefix("label_values(").rstrip(")")
                selector, label = inner.rsplit(",", 1)
                found = prometheus_query(base, dashboards.concrete(selector))
                assert any(label.strip() in s["metric"] for s in found), variable["name"]
    finally:
        stop.set()
        if feeder.is_alive():
            feeder.join(timeout=5)
        processes.stop_all()
