"""HTTP faults: each takes one source down (source_up 0) while the other goes on, and after
recovery nothing is missed or counted twice."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ExporterFactory, SimFactory, source_for
from tests.series import active, finished, up

FAULTS: dict[str, dict[str, Any]] = {
    "rate_limited": {"kind": "status", "code": 429, "retry_after": 0},
    "server_error": {"kind": "status", "code": 500},
    "bad_gateway": {"kind": "status", "code": 502},
    "timeout": {"kind": "delay", "seconds": 1.5},
    "malformed_page": {"kind": "malformed_json"},
    "truncated_page": {"kind": "truncated"},
    "connection_reset": {"kind": "reset"},
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_fault_downs_one_source_only_and_recovery_loses_nothing(
    fault: str, simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    faulty = simulator("plextera", seed=21)
    healthy = simulator("noxus", seed=22)
    for sim in (faulty, healthy):
        sim.world.add_runs(15)
    sources = [
        source_for(faulty, "plextera", name="faulty", page_size=5, max_retries=1, timeout="0.5s"),
        source_for(healthy, "noxus", name="healthy", page_size=5, max_retries=1),
    ]
    exporter = exporter_factory(sources, clock=faulty.world.now)
    assert all(report.ok for report in exporter.collect_all())

    for sim in (faulty, healthy):
        sim.world.advance(900)
    spec = dict(FAULTS[fault])
    faulty.faults.inject(spec.pop("kind"), count=100, **spec)
    reports = {report.source: report for report in exporter.collect_all()}

    assert not reports["faulty"].ok
    assert reports["faulty"].error
    assert up(exporter, "faulty") == 0
    assert reports["healthy"].ok
    assert up(exporter, "healthy") == 1
    assert finished(exporter, "healthy") == healthy.world.truth().finished

    faulty.faults.clear()
    assert all(report.ok for report in exporter.collect_all())
    assert up(exporter, "faulty") == 1
    for name, sim in (("faulty", faulty), ("healthy", healthy)):
        truth = sim.world.truth()
        assert finished(exporter, name) == truth.finished
        assert active(exporter, name) == truth.active


def test_a_transient_fault_is_retried_within_the_cycle(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("plextera", seed=23)
    sim.world.add_runs(10)
    exporter = exporter_factory([source_for(sim, "plextera", max_retries=3)])
    sim.faults.inject("status", count=2, code=429, retry_after=0)

    report = exporter.collect_all()[0]

    assert report.ok, report.error
    assert finished(exporter, "plextera-test") == sim.world.truth().finished
    assert sim.faults.injected["status"] == 2
