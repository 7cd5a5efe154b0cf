"""From a slow bucket to the run: OpenMetrics scrapes carry a recent run id on the duration
buckets; the classic text carries none; a real Prometheus stores them and serves them back."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

from exporter.exposition.formats import generate_text
from tests.conftest import ExporterFactory, SimFactory, source_for
from tests.loopback import Processes, free_port, start_exporter, start_prometheus, until


def test_openmetrics_duration_buckets_name_a_recent_run_and_classic_text_does_not(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("plextera", seed=81, workflows=2)
    sim.world.add_runs(20)
    sim.world.advance(3600)
    exporter = exporter_factory([source_for(sim, "plextera")])
    assert exporter.collect_all()[0].ok

    text = openmetrics(exporter.registry).decode()  # type: ignore[no-untyped-call]
    with_exemplar = [
        line
        for line in text.splitlines()
        if line.startswith("workflow_run_duration_seconds_bucket") and " # {" in line
    ]
    assert with_exemplar
    run_ids = {line.split('run_id="')[1].split('"')[0] for line in with_exemplar}
    assert run_ids <= set(sim.world.runs)
    assert " # {" not in generate_text(exporter.registry).decode()


@pytest.mark.system
@pytest.mark.timeout(180)
def test_prometheus_stores_the_exemplars_and_leads_to_a_real_run(
    simulator: SimFactory, tmp_path: Path
) -> None:
    sim = simulator("plextera", seed=82, workflows=2, history_seconds=600)
    sim.start_driver(speed=30.0)
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
                "sources": [source_for(sim, "plextera", name="exemplars")],
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
            "--enable-feature=exemplar-storage",
        )
        found: set[str] = set()

        def exemplars() -> bool:
            now = time.time()
            response = httpx.get(
                f"http://127.0.0.1:{prom_port}/api/v1/query_exemplars",
                params={
                    "query": "workflow_run_duration_seconds_bucket",
                    "start": now - 300,
                    "end": now + 5,
                },
                timeout=5,
            )
            for series in response.json().get("data") or []:
                for exemplar in series.get("exemplars", []):
                    found.add(exemplar["labels"]["run_id"])
            return bool(found)

        until("Prometheus holds exemplars of the duration buckets", exemplars, 90)
        assert found & set(sim.world.runs), found
    finally:
        processes.stop_all()
        sim.stop_driver()
