"""Exactly once, against the real simulators: runs arrive and finish while pages are read, the
process restarts on the same state file, and every counter still equals ground truth."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from exporter.app import Exporter
from exporter.collection.cycle import SourceCollector
from exporter.collection.poll import PollCycle
from exporter.providers import registry
from tests.conftest import PROVIDERS, ExporterFactory, SimFactory, source_for
from tests.series import active, errors, finished, samples, step_durations, steps


def assert_matches_truth(exporter: Exporter, sim: object, source: str) -> None:
    truth = sim.world.truth()  # type: ignore[attr-defined]
    assert finished(exporter, source) == truth.finished
    assert active(exporter, source) == truth.active
    assert errors(exporter, source) == truth.errors
    # Steps count with their runs, so exactly as often (where the source counts them).
    counts_steps = registry()[sim.provider].steps_by_default  # type: ignore[attr-defined]
    assert steps(exporter, source) == (truth.steps if counts_steps else Counter())
    assert step_durations(exporter, source) == (truth.step_durations if counts_steps else Counter())


def assert_histograms_match_counters(exporter: Exporter, source: str) -> None:
    counts = {
        (labels["workflow"], labels["status"]): value
        for labels, value in samples(exporter.registry, "workflow_run_duration_seconds_count")
        if labels["source"] == source
    }
    for (workflow, status), value in finished(exporter, source).items():
        assert counts.get((workflow, status)) == value


@pytest.mark.parametrize("provider", PROVIDERS)
def test_counts_equal_truth_while_runs_arrive_during_paging(
    provider: str, simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator(provider, seed=11)
    sim.world.add_runs(30)
    source = f"{provider}-test"
    exporter = exporter_factory([source_for(sim, provider, page_size=8)], clock=sim.world.now)
    sim.arrivals_per_list_request = 1  # every page read shifts the list

    for _ in range(12):
        sim.world.advance(300)
        assert exporter.collect_all()[0].ok

    sim.arrivals_per_list_request = 0
    for _ in range(2):
        assert exporter.collect_all()[0].ok
    assert_matches_truth(exporter, sim, source)
    assert_histograms_match_counters(exporter, source)
    assert sim.world.truth().runs > 100


@pytest.mark.parametrize("provider", PROVIDERS)
def test_counters_continue_across_a_restart_on_the_same_state_file(
    provider: str, simulator: SimFactory, exporter_factory: ExporterFactory, tmp_path: Path
) -> None:
    sim = simulator(provider, seed=12)
    sim.world.add_runs(25)
    source = f"{provider}-test"
    state = tmp_path / "restart.db"
    first = exporter_factory(
        [source_for(sim, provider, page_size=10)], state=state, clock=sim.world.now
    )
    for _ in range(3):
        sim.world.advance(600)
        assert first.collect_all()[0].ok
    before = finished(first, source)
    first.shutdown()

    sim.world.advance(900)  # runs keep arriving and finishing while the exporter is down
    second = exporter_factory(
        [source_for(sim, provider, page_size=10)], state=state, clock=sim.world.now
    )
    after_restart = finished(second, source)
    assert after_restart == before, "counters must continue, not reset"
    for _ in range(2):
        sim.world.advance(300)
        assert second.collect_all()[0].ok

    assert_matches_truth(second, sim, source)
    assert all(
        second_value >= before[key] for key, second_value in finished(second, source).items()
    )


@pytest.mark.parametrize("provider", PROVIDERS)
def test_first_start_counts_only_the_backfill_window(
    provider: str, simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator(provider, seed=13, arrival_rate_per_min=0)
    old = sim.world.add_runs(8)
    for run in old:
        sim.world.finish(run.id, sim.native_for("succeeded"))
    sim.world.advance(4 * 3600)  # the old runs finished long before the window
    recent = sim.world.add_runs(6)
    for run in recent[:4]:
        sim.world.finish(run.id, sim.native_for("failed"))
    source = f"{provider}-test"
    exporter = exporter_factory(
        [{**source_for(sim, provider), "backfill": "1h"}], clock=sim.world.now
    )

    assert exporter.collect_all()[0].ok

    assert finished(exporter, source) == Counter(
        (run.workflow.name, "failed") for run in recent[:4]
    )
    assert sum(active(exporter, source).values()) == 2


def test_a_plextera_run_older_than_the_backfill_and_still_processing_is_counted_when_it_ends(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    """The first cycle's `PROCESSING` listing finds it, however far below the scan it lies;
    later cycles list only when the scan missed tracked runs."""
    sim = simulator("plextera", seed=14, arrival_rate_per_min=0)
    (old,) = sim.world.add_runs(1, native_status=sim.native_for("running"))
    old.run_for = 10 * 3600.0  # still processing when the exporter first starts
    sim.world.advance(2 * 3600)
    for run in sim.world.add_runs(10):  # a page and more between it and what the scan reads
        sim.world.finish(run.id, sim.native_for("succeeded"))
    sim.world.advance(2 * 3600)
    recent = sim.world.add_runs(5)
    source = "plextera-test"
    exporter = exporter_factory(
        [{**source_for(sim, "plextera", page_size=5), "backfill": "1h"}], clock=sim.world.now
    )
    assert exporter.collect_all()[0].ok
    sim.world.advance(60)
    sim.world.finish(old.id, sim.native_for("failed"))
    for run in recent:
        sim.world.finish(run.id, sim.native_for("succeeded"))

    assert exporter.collect_all()[0].ok

    assert sum(finished(exporter, source).values()) == 6
    assert finished(exporter, source)[(old.workflow.name, "failed")] == 1


class KilledError(Exception):
    """The process dying between two chunk commits of a long scan."""


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_long_scan_commits_in_chunks_and_dying_between_them_counts_nothing_twice(
    provider: str,
    simulator: SimFactory,
    exporter_factory: ExporterFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A catch-up scan of many runs commits every `chunk_runs` runs (bounded memory) with the
    cursor held back; killed after two chunks, the restarted exporter reads from the same floor,
    skips what the chunks counted, and ends equal to ground truth."""
    sim = simulator(provider, seed=15, history_seconds=3600, arrival_rate_per_min=8)
    source = f"{provider}-test"
    monkeypatch.setattr(SourceCollector, "chunk_runs", 60)
    chunk_commits: list[int] = []
    commit_chunk = PollCycle._commit_chunk

    def dies_after_two(self: PollCycle, *args: Any) -> None:
        commit_chunk(self, *args)
        chunk_commits.append(1)
        if len(chunk_commits) == 2:
            raise KilledError

    monkeypatch.setattr(PollCycle, "_commit_chunk", dies_after_two)
    state = tmp_path / "state.db"
    settings = source_for(sim, provider, page_size=20)
    first = exporter_factory([settings], state=state, clock=sim.world.now)
    (report,) = first.collect_all()
    assert not report.ok
    assert "KilledError" in (report.error or "")
    partly = sum(finished(first, source).values())
    assert 0 < partly < sum(sim.world.truth().finished.values()), "the chunks were committed"
    first.shutdown()

    restarted = exporter_factory([settings], state=state, clock=sim.world.now)
    sim.arrivals_per_list_request = 1  # and the list shifts under the pages
    for _ in range(3):
        sim.world.advance(120)
        assert restarted.collect_all()[0].ok
    sim.arrivals_per_list_request = 0
    for _ in range(2):
        assert restarted.collect_all()[0].ok
    assert len(chunk_commits) > 2, "the catch-up after the restart committed in chunks too"
    assert_matches_truth(restarted, sim, source)
    assert_histograms_match_counters(restarted, source)
