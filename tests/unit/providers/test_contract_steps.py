"""Step counts against every simulator's ground truth: exactly, once, from the pages alone."""

from __future__ import annotations

import pytest

from exporter.core.errors import ConfigError
from exporter.simulator import SIMULATORS
from tests.conftest import PROVIDERS, ExporterFactory, SimFactory, source_for
from tests.series import by_labels, finished, step_durations, steps

# Where the runs list carries steps, they are counted by default.
LISTED = {"plextera", "cortex"}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_step_counts_equal_the_truth_where_the_list_carries_steps(
    provider: str, simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator(provider, seed=31)
    sim.world.add_runs(40)
    sim.world.advance(1800)
    exporter = exporter_factory([source_for(sim, provider, page_size=15)])

    assert exporter.collect_all()[0].ok
    sim.world.advance(1800)  # more runs finish: counted in the next cycle, the others not again
    assert exporter.collect_all()[0].ok

    source = f"{provider}-test"
    truth = sim.world.truth()
    assert finished(exporter, source) == truth.finished
    if provider in LISTED:
        assert truth.steps, "the simulated runs must have steps"
        assert {status for _wf, _step, status in truth.steps} >= {"succeeded", "failed"}
        assert steps(exporter, source) == truth.steps
        assert step_durations(exporter, source) == truth.step_durations
    else:
        # Extend's steps are off by default (only failed runs' details carry them); Noxus has none.
        assert not steps(exporter, source)
    requests = {r.path for r in sim.requests}
    assert not any("step" in path for path in requests), "steps never cost a request"


def test_extend_counts_failed_runs_steps_when_asked_and_nothing_else(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("extend", seed=32)
    sim.world.add_runs(40)
    sim.world.advance(3600)
    exporter = exporter_factory([source_for(sim, "extend", steps=True)])

    assert exporter.collect_all()[0].ok

    truth = sim.world.truth()
    assert truth.failed_run_steps
    assert steps(exporter, "extend-test") == truth.failed_run_steps
    details = [r for r in sim.requests if r.path.count("/") > 1 and "workflow_runs/" in r.path]
    failed = sum(n for (_wf, status), n in truth.finished.items() if status == "failed")
    assert len(details) == failed, "details are fetched for failed runs only, as without steps"


def test_noxus_refuses_steps_true_with_the_field_named(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("noxus", seed=33)
    with pytest.raises(ConfigError, match="steps"):
        exporter_factory([source_for(sim, "noxus", steps=True)])


@pytest.mark.parametrize("provider", sorted(LISTED))
def test_steps_off_reads_no_steps(
    provider: str, simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator(provider, seed=34)
    sim.world.add_runs(20)
    sim.world.advance(3600)
    exporter = exporter_factory([source_for(sim, provider, steps=False)])

    assert exporter.collect_all()[0].ok
    assert finished(exporter, f"{provider}-test") == sim.world.truth().finished
    assert not steps(exporter, f"{provider}-test")


@pytest.mark.parametrize("provider", sorted(LISTED))
def test_a_garbled_step_list_counts_the_run_and_the_bad_steps_once(
    provider: str, simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator(provider, seed=35)
    sim.world.add_runs(20)
    sim.world.advance(3600)
    broken = sim.world.break_steps(3)
    exporter = exporter_factory([source_for(sim, provider)])

    for _ in range(2):  # the second cycle re-reads the same runs: nothing counted again
        assert exporter.collect_all()[0].ok

    source = f"{provider}-test"
    truth = sim.world.truth()
    assert finished(exporter, source) == truth.finished
    assert steps(exporter, source) == truth.steps
    invalid = by_labels(exporter, "workflow_exporter_invalid_records_total", source, "reason")
    finished_broken = sum(1 for run in broken if run.finished_at is not None)
    assert finished_broken
    assert invalid[("step",)] == finished_broken


@pytest.mark.parametrize("mode", ["listed", "unlisted"])
def test_plextera_nested_runs_count_once_and_only_from_the_top_level_list(
    mode: str, simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("plextera", seed=36, variant=SIMULATORS["plextera"].variants[f"nested_{mode}"])
    sim.world.add_runs(40)
    sim.world.advance(1800)
    # The exporter keeps the world's time: a world run ahead of the wall clock would date every
    # run in the future (said as `clock_ahead`).
    exporter = exporter_factory([source_for(sim, "plextera", page_size=10)], clock=sim.world.now)
    for _ in range(3):
        assert exporter.collect_all()[0].ok
        sim.world.advance(900)
    assert exporter.collect_all()[0].ok

    source = "plextera-test"
    truth = sim.world.truth()
    assert finished(exporter, source) == truth.finished
    assert steps(exporter, source) == truth.steps
    with sim.world.lock:
        runs = sim.world.runs
        nested = {
            child: runs[child]
            for parent in runs.values()
            if parent.finished_at is not None
            for child in parent.children
        }
    assert len(nested) >= 5, "finished runs carry nested runs"
    inconsistent = by_labels(
        exporter, "workflow_exporter_scan_inconsistencies_total", source, "reason"
    )
    if mode == "listed":
        # Each nested run is counted once, as the top-level list shows it (truth counts it once).
        assert all(not run.hidden for run in nested.values())
        assert not inconsistent
    else:
        assert all(run.hidden for run in nested.values())
        assert inconsistent == {("nested_run_unlisted",): len(nested)}
