"""The exposition passes Prometheus's own checks: promtool's linter for the classic text format,
and a real Prometheus's scrape, which negotiates OpenMetrics, for that format."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from exporter.exposition.formats import generate_text
from tests.conftest import PROVIDERS, ExporterFactory, SimFactory, source_for
from tests.loopback import (
    Processes,
    free_port,
    prometheus_query,
    start_exporter,
    start_prometheus,
    until,
)

pytestmark = pytest.mark.system

TEAM = {"team": "payments"}


def test_metrics_pass_promtool_check_metrics(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by `make test` (scripts/install-system-deps.sh)"
    sources = []
    for seed, provider in enumerate(PROVIDERS):
        sim = simulator(provider, seed=50 + seed)
        sim.world.add_runs(20)
        sim.world.advance(1800)
        source = source_for(sim, provider)
        if seed == 0:
            source["labels"] = TEAM
        sources.append(source)
    exporter = exporter_factory(sources)
    assert all(r.ok for r in exporter.collect_all())
    text = generate_text(exporter.exposed).decode()  # what /metrics sends in the classic format
    assert "workflow_run_duration_seconds_bucket" in text
    assert 'team="payments"' in text

    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(120)
def test_prometheus_scrapes_the_openmetrics_answer_without_an_error(
    simulator: SimFactory, tmp_path: Path
) -> None:
    """`promtool check metrics` reads the classic text format only (it takes an exemplar for a
    bad timestamp), so OpenMetrics is checked by Prometheus's own parser, in a real scrape: it
    asks for OpenMetrics first, and a scrape it cannot parse fails the target."""
    sim = simulator("plextera", seed=58, workflows=2, history_seconds=600)
    sim.world.advance(600)
    processes = Processes()
    try:
        exporter_port, prom_port = free_port(), free_port()
        start_exporter(
            processes,
            tmp_path,
            exporter_port,
            {
                "interval": "1s",
                "state_path": str(tmp_path / "state.db"),
                "sources": [source_for(sim, "plextera", name="om", labels=TEAM)],
            },
        )
        start_prometheus(
            processes,
            tmp_path,
            prom_port,
            {
                "global": {"scrape_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "wre",
                        "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
                    }
                ],
            },
        )
        base = f"http://127.0.0.1:{prom_port}"

        def scraped() -> bool:
            targets = httpx.get(f"{base}/api/v1/targets", timeout=5).json()["data"]
            active = targets["activeTargets"]
            assert all(t["lastError"] == "" for t in active), active
            return bool(
                prometheus_query(base, 'workflow_run_duration_seconds_count{team="payments"}')
            )

        until("Prometheus scraped the duration histograms", scraped, 60)
        names = {
            series["metric"]["__name__"]
            for series in prometheus_query(base, 'count by (__name__) ({source="om"})')
        }
        assert names == {
            series["metric"]["__name__"]
            for series in prometheus_query(base, 'count by (__name__) ({team="payments"})')
        }, "every series of the source carries its static label"
        assert {"workflow_runs_finished_total", "workflow_exporter_source_up"} <= names
        health = httpx.get(f"{base}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        assert [target["health"] for target in health] == ["up"]
    finally:
        processes.stop_all()
