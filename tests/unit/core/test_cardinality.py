"""Cardinality stays within its budget whatever the APIs send, and folding loses no count."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest

from tests.conftest import ExporterFactory, SimFactory, source_for
from tests.series import by_labels, finished

MAX_SERIES = 5_000


def test_ten_thousand_workflows_and_a_thousand_codes_stay_within_the_series_budget(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("plextera", seed=101, workflows=10_000, arrival_rate_per_min=0)
    for index, workflow in enumerate(sim.world.workflows):
        (run,) = sim.world.add_runs(1, workflow=workflow.name)
        sim.world.finish(run.id, "FAILED", error_code=f"E{index % 1000:04d}")
    exporter = exporter_factory(
        # Steps are bounded on their own (tests/unit/core/test_steps.py): here workflows and
        # codes alone.
        [source_for(sim, "plextera", max_workflows=20_000, max_error_codes=2_000, steps=False)],
        max_series=MAX_SERIES,
    )

    assert exporter.collect_all()[0].ok

    text = generate_latest(exporter.registry).decode()
    domain = [
        line for line in text.splitlines() if line.startswith(("workflow_run_", "workflow_runs_"))
    ]
    assert len(domain) <= MAX_SERIES
    # Admission reserves a workflow's worst case (every status, every bucket), so real use is
    # lower; but the budget must actually have admitted workflows up to its bound.
    admitted = {line.split('workflow="', 1)[1].split('"', 1)[0] for line in domain}
    assert len(admitted) >= MAX_SERIES // (exporter.workflow_cost + 1) - 1
    dropped = by_labels(
        exporter, "workflow_exporter_label_values_dropped_total", "plextera-test", "label"
    )
    assert dropped[("workflow",)] > 0
    # Folded into `other`, never lost: every run is still counted once.
    counts = finished(exporter, "plextera-test")
    assert sum(counts.values()) == 10_000
    assert counts[("other", "failed")] > 0

    # A restart rebuilds the budget from the state: still within it after more work.
    sim.world.add_runs(50, workflow=sim.world.workflows[-1].name)
    assert exporter.collect_all()[0].ok
    text = generate_latest(exporter.registry).decode()
    assert (
        sum(1 for line in text.splitlines() if line.startswith(("workflow_run_", "workflow_runs_")))
        <= MAX_SERIES
    )


def test_a_restart_takes_the_same_share_of_the_series_budget_as_before_it(
    simulator: SimFactory, exporter_factory: ExporterFactory, tmp_path: Path
) -> None:
    """What the stored labels take of `max_series` is what admitting them took: `other` (a
    folded workflow, code or step) is admitted past the budget without reserving, so a
    restart must not charge for it either, or every restart would fold more into `other`."""
    sim = simulator("plextera", seed=42, workflows=3)
    sim.world.add_runs(60)
    sim.world.advance(1800)
    state = tmp_path / "budget.db"
    source = source_for(sim, "plextera", max_steps=1, max_workflows=2, max_error_codes=1)
    exporter = exporter_factory([source], state=state)
    assert exporter.collect_all()[0].ok
    source_name = "plextera-test"
    assert "other" in exporter.store.labels(source_name, "workflow")
    assert any(code == "other" for _wf, code in exporter.store.error_pairs(source_name))
    assert any(step == "other" for _wf, step in exporter.store.step_pairs(source_name))
    used = exporter.series.used
    exporter.shutdown()

    restarted = exporter_factory([source], state=state)
    assert restarted.series.used == used
