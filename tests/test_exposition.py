"""The fast text writer writes exactly what prometheus_client writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client import generate_latest

from exporter.exposition import generate_text
from exporter.server import MetricsServer
from tests.conftest import PROVIDERS, ExporterFactory, SimFactory, source_for
from tests.loopback import free_port


def test_the_fast_writer_is_byte_identical_to_prometheus_client(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sources = []
    for seed, provider in enumerate(PROVIDERS):
        sim = simulator(provider, seed=120 + seed)
        sim.world.add_runs(40)
        sim.world.advance(3600)
        sim.unknown_status(2)
        sources.append(source_for(sim, provider))
    # Label values that need escaping must come out escaped the same way.
    sources[0]["name"] = "quote-and-slash"
    frozen = datetime.now(UTC) + timedelta(hours=2)  # ages must not move between two renders
    exporter = exporter_factory(sources, clock=lambda: frozen)
    assert all(report.ok for report in exporter.collect_all())

    fast = generate_text(exporter.registry)
    reference = generate_latest(exporter.registry)

    assert stable(fast) == stable(reference)
    assert len(stable(fast)) > 1000
    assert b"workflow_run_duration_seconds_bucket" in fast


def stable(text: bytes) -> list[bytes]:
    """Without the process's own figures (memory, CPU), which change from one call to the next."""
    return [
        line for line in text.splitlines() if b"process_" not in line and b"python_gc" not in line
    ]


def test_the_server_sends_the_fast_text_and_openmetrics_on_request(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    from exporter.commands.run import server_hooks

    sim = simulator("noxus", seed=130)
    sim.world.add_runs(10)
    exporter = exporter_factory([source_for(sim, "noxus")])
    exporter.collect_all()
    server = MetricsServer(f"127.0.0.1:{free_port()}", server_hooks(exporter))
    server.start()
    try:
        text = httpx.get(server.url("/metrics"))
        assert text.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert "workflow_runs_finished_total{" in text.text
        om = httpx.get(server.url("/metrics"), headers={"Accept": "application/openmetrics-text"})
        assert om.headers["Content-Type"].startswith("application/openmetrics-text")
        assert om.text.rstrip().endswith("# EOF")
    finally:
        server.stop()
