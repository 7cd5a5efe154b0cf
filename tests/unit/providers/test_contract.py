"""The contract every provider meets against its own simulator (picked up from the registry)."""

from __future__ import annotations

import pytest

from exporter.providers import registry
from exporter.simulator import SIMULATORS
from tests.conftest import PROVIDERS, ExporterFactory, SimFactory, source_for
from tests.series import active, by_labels, errors, finished, up


def test_every_provider_has_a_simulator_and_the_other_way_round() -> None:
    assert set(registry()) == set(SIMULATORS)
    assert PROVIDERS, "no provider found in the registry"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_walks_every_page_and_maps_every_run(
    provider: str, simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator(provider, seed=3)
    sim.world.add_runs(57)
    sim.world.advance(1800)  # a mix of finished, failed, running and waiting runs
    exporter = exporter_factory([source_for(sim, provider, page_size=10)])

    report = exporter.collect_all()[0]

    assert report.ok, report.error
    truth = sim.world.truth()
    assert truth.runs >= 57
    assert finished(exporter, f"{provider}-test") == truth.finished
    assert active(exporter, f"{provider}-test") == truth.active
    assert errors(exporter, f"{provider}-test") == truth.errors
    list_requests = [r for r in sim.requests if r.method == "GET" and "runs" in r.path]
    assert len(list_requests) >= truth.runs // 10, "every page must be walked"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_sends_the_documented_auth_header(
    provider: str, simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator(provider, seed=4)
    sim.world.add_runs(5)
    exporter = exporter_factory([source_for(sim, provider)])

    assert exporter.collect_all()[0].ok
    assert sim.requests
    for request in sim.requests:
        header_values = " ".join(request.headers.values())
        assert sim.api_key in header_values


@pytest.mark.parametrize("provider", PROVIDERS)
def test_wrong_key_fails_the_source_with_a_clear_error_and_no_key(
    provider: str, simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator(provider, seed=5)
    sim.world.add_runs(3)
    wrong_key = "wrong-key-0123456789"
    exporter = exporter_factory([{**source_for(sim, provider), "api_key": wrong_key}])

    report = exporter.collect_all()[0]

    assert not report.ok
    assert report.error is not None
    assert "401" in report.error
    assert wrong_key not in report.error
    assert up(exporter, f"{provider}-test") == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unknown_status_is_unknown_counted_and_never_breaks_the_page(
    provider: str, simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator(provider, seed=6)
    sim.world.add_runs(20)
    sim.unknown_status(3)
    exporter = exporter_factory([source_for(sim, provider, page_size=7)])

    assert exporter.collect_all()[0].ok

    source = f"{provider}-test"
    truth = sim.world.truth()
    assert sum(n for (_, status), n in active(exporter, source).items() if status == "unknown") == 3
    assert active(exporter, source) == truth.active
    unknown = by_labels(exporter, "workflow_exporter_unknown_status_total", source, "native_status")
    assert sum(unknown.values()) >= 3


@pytest.mark.parametrize("provider", PROVIDERS)
def test_status_map_overrides_the_default_table(
    provider: str, simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator(provider, seed=7)
    sim.world.add_runs(10)
    sim.unknown_status(2)
    native = sim.unknown_status_value
    exporter = exporter_factory([source_for(sim, provider, status_map={native: "cancelled"})])

    assert exporter.collect_all()[0].ok

    cancelled = sum(
        n
        for (_, status), n in finished(exporter, f"{provider}-test").items()
        if status == "cancelled"
    )
    truth_cancelled = sum(n for (_, s), n in sim.world.truth().finished.items() if s == "cancelled")
    assert cancelled == truth_cancelled + 2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_invalid_record_is_skipped_and_the_rest_of_the_page_counted(
    provider: str, simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator(provider, seed=8)
    sim.world.add_runs(12)
    sim.world.advance(3600)
    sim.bad_record(1)
    exporter = exporter_factory([source_for(sim, provider, page_size=50)])

    first = exporter.collect_all()[0]

    source = f"{provider}-test"
    assert first.ok
    invalid = by_labels(exporter, "workflow_exporter_invalid_records_total", source, "reason")
    assert sum(invalid.values()) == 1
    seen = sum(finished(exporter, source).values()) + sum(active(exporter, source).values())
    # Only the broken record may be missing (a status listing can still find it).
    assert seen >= sim.world.truth().runs - 1

    # The record is whole again on the next read: nothing was lost, nothing counted twice.
    assert exporter.collect_all()[0].ok
    truth = sim.world.truth()
    assert finished(exporter, source) == truth.finished
    assert active(exporter, source) == truth.active
