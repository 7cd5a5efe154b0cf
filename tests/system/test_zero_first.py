"""A counter series born after the first start is served at zero before its first increments
show, so Prometheus's increase() and rate() count them: in-process with a controlled clock, across
a restart, and with a real Prometheus scraping a real exporter process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ExporterFactory, SimFactory, source_for
from tests.loopback import (
    Processes,
    free_port,
    prometheus_query,
    start_exporter,
    start_prometheus,
    until,
)
from tests.series import errors, finished
from tests.system.test_e2e_alerting import JOB, _rules_file

NEW = "Late claims"
CODE = "NEW_CODE_X"


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def _fail_new_workflow(sim: object, count: int) -> None:
    world = sim.world  # type: ignore[attr-defined]
    workflow = world.add_workflow(NEW)
    failed = sim.native_for("failed")  # type: ignore[attr-defined]
    for run in world.add_runs(count, workflow=workflow.name):
        world.finish(run.id, failed, error_code=CODE)


def test_a_new_workflows_first_failures_wait_until_it_was_served_at_zero(
    simulator: SimFactory, exporter_factory: ExporterFactory, tmp_path: Path
) -> None:
    sim = simulator("plextera", seed=71, workflows=2)
    sim.world.add_runs(10)
    sim.world.advance(600)
    clock = Clock(sim.world.now())
    state = tmp_path / "held.db"
    exporter = exporter_factory(
        [source_for(sim, "plextera")], clock=clock, state=state, new_series_hold="60s"
    )
    assert exporter.collect_all()[0].ok
    # The first start's backfill is history: shown at once.
    assert finished(exporter, "plextera-test") == sim.world.truth().finished

    _fail_new_workflow(sim, 3)
    clock.now += timedelta(seconds=30)
    assert exporter.collect_all()[0].ok
    assert not {k: v for k, v in finished(exporter, "plextera-test").items() if k[0] == NEW}
    assert (NEW, CODE) not in errors(exporter, "plextera-test")
    # Served at zero meanwhile (present, not absent).
    text = httpx_free_render(exporter)
    assert f'workflow="{NEW}"' in text

    # Across a restart the hold and the held counts both stay.
    exporter.shutdown()
    clock.now += timedelta(seconds=20)
    restarted = exporter_factory(
        [source_for(sim, "plextera")], clock=clock, state=state, new_series_hold="60s"
    )
    assert (NEW, CODE) not in errors(restarted, "plextera-test")
    clock.now += timedelta(seconds=45)  # past the hold: born at +30 s, now +95 s
    assert errors(restarted, "plextera-test")[(NEW, CODE)] == 3
    assert finished(restarted, "plextera-test") == sim.world.truth().finished


def test_a_source_whose_first_runs_come_after_the_start_holds_their_series_too(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    """Only the first start's backfill is history. A source with nothing in its backfill window
    (a new workspace) never advanced its watermark; its first runs, finished after the start,
    are the incident of a new workflow failing from its first run, and wait like any other."""
    sim = simulator("plextera", seed=74, workflows=1, arrival_rate_per_min=0)
    clock = Clock(sim.world.now())
    exporter = exporter_factory([source_for(sim, "plextera")], clock=clock, new_series_hold="60s")
    assert exporter.collect_all()[0].ok  # a complete scan: nothing there

    _fail_new_workflow(sim, 3)
    clock.now += timedelta(seconds=30)
    assert exporter.collect_all()[0].ok
    assert not finished(exporter, "plextera-test")
    assert f'workflow="{NEW}"' in httpx_free_render(exporter)
    clock.now += timedelta(seconds=61)
    assert errors(exporter, "plextera-test")[(NEW, CODE)] == 3
    assert finished(exporter, "plextera-test") == sim.world.truth().finished


def httpx_free_render(exporter: object) -> str:
    from exporter.exposition.formats import generate_text

    return generate_text(exporter.registry).decode()  # type: ignore[attr-defined]


@pytest.mark.system
@pytest.mark.timeout(180)
def test_prometheus_counts_the_first_failures_of_a_new_workflow(
    simulator: SimFactory, tmp_path: Path
) -> None:
    sim = simulator("plextera", seed=72, workflows=2, history_seconds=600)
    sim.world.arrival_rate_per_min = 0
    processes = Processes()
    try:
        query = _scraped_with_a_hold(
            processes,
            tmp_path,
            source_for(sim, "plextera", name="zero-first"),
            _rules_file(tmp_path),
        )

        until(
            "the exporter scraped a few times",
            lambda: len(query('count_over_time(up{job="workflow-runs-exporter"}[1m]) >= 3')) == 1,
            60,
        )
        _fail_new_workflow(sim, 4)  # all in one cycle: a series born at 4 without the hold
        errors_series = f'workflow_run_errors_total{{workflow="{NEW}",code="{CODE}"}}'
        failed_series = f'workflow_runs_finished_total{{workflow="{NEW}",status="failed"}}'

        def risen(series: str) -> float | None:
            rows = query(f"max_over_time({series}[2m]) - min_over_time({series}[2m])")
            return float(rows[0]["value"][1]) if rows else None

        until("Prometheus saw the new series rise from 0", lambda: risen(errors_series) == 4, 60)
        assert risen(failed_series) == 4
        # The headline alert sees the classic incident: a new workflow failing from its first run.
        until(
            "WorkflowRunsFailedSpike fires for the new workflow",
            lambda: bool(query(f'ALERTS{{alertname="WorkflowRunsFailedSpike",workflow="{NEW}"}}')),
            60,
        )
        # increase() over the span counts them (it extrapolates a little: at least the four).
        rows = query(f"increase({errors_series}[2m])")
        assert rows
        assert float(rows[0]["value"][1]) >= 4
    finally:
        processes.stop_all()


NEW_STEP = "ocr_check"


@pytest.mark.system
@pytest.mark.timeout(180)
def test_prometheus_counts_the_first_failed_steps_of_a_new_step(
    simulator: SimFactory, tmp_path: Path
) -> None:
    """A step type first seen after the start, in a workflow already exported: its series is
    born when its first runs are counted, and increase() sees those first failed steps."""
    sim = simulator("plextera", seed=73, workflows=1, history_seconds=600)
    sim.world.arrival_rate_per_min = 0
    world = sim.world
    workflow = world.workflows[0].name
    with world.lock:
        # Every run final before the exporter starts: nothing it has yet to count changes steps.
        for run in [
            r
            for r in world.runs.values()
            if not world.vocabulary.canonical(r.native_status).terminal
        ]:
            world.finish(run.id, sim.native_for("succeeded"))
    processes = Processes()
    try:
        query = _scraped_with_a_hold(
            processes, tmp_path, source_for(sim, "plextera", name="zero-first-steps")
        )

        known = f'workflow_runs_finished_total{{workflow="{workflow}",status="succeeded"}}'
        until(
            "the workflow's series scraped a few times",
            lambda: len(query(f"count_over_time({known}[1m]) >= 3")) == 1,
            60,
        )
        assert not query(f'workflow_run_steps_total{{step="{NEW_STEP}"}}')
        with world.lock:
            # From now on the API names every step of a new run NEW_STEP.
            vocabulary = replace(world.vocabulary, step_labels=(NEW_STEP,))
            world.vocabulary = sim.vocabulary = vocabulary
            failed = sim.native_for("failed")
            for run in world.add_runs(3, workflow=workflow):
                world.finish(run.id, failed)  # all in one cycle: born at 3 without the hold
        series = (
            f'workflow_run_steps_total{{workflow="{workflow}",step="{NEW_STEP}",status="failed"}}'
        )

        def risen() -> float | None:
            rows = query(f"max_over_time({series}[2m]) - min_over_time({series}[2m])")
            return float(rows[0]["value"][1]) if rows else None

        until("Prometheus saw the new step series rise from 0", lambda: risen() == 3, 60)
        rows = query(f"increase({series}[2m])")
        assert rows
        assert float(rows[0]["value"][1]) >= 3
    finally:
        processes.stop_all()


def _scraped_with_a_hold(
    processes: Processes, workdir: Path, source: dict[str, Any], rules: Path | None = None
) -> Callable[[str], list[dict[str, Any]]]:
    """An exporter holding new series for 3 s and a Prometheus scraping it every second (with
    `rules` evaluated every second); returns a PromQL query function."""
    exporter_port, prom_port = free_port(), free_port()
    start_exporter(
        processes,
        workdir,
        exporter_port,
        {
            "interval": "1s",
            "state_path": str(workdir / "state.db"),
            "new_series_hold": "3s",
            "sources": [source],
        },
    )
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": JOB,
                "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
            }
        ],
    }
    if rules is not None:
        config["rule_files"] = [str(rules)]
    start_prometheus(processes, workdir, prom_port, config)
    return lambda expr: prometheus_query(f"http://127.0.0.1:{prom_port}", expr)
