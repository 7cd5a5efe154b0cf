"""Durations and queue waits come only from times that agree with each other: an end before the
start or before the creation gives neither (an invalid field), never a stand-in like now - start.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from exporter.core.model import Run, RunStatus
from exporter.core.units import DURATION, QUEUE_WAIT
from exporter.providers.sanitize import Limits, RunSanitizer
from tests.conftest import ExporterFactory, SimFactory, source_for
from tests.core_runs import CoreState, at, make_run
from tests.series import by_labels, finished

# The pure core -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("created", "started", "ended", "contradiction"),
    [
        (0, 10, 70, None),
        (0, 70, 10, "is before started_at"),
        (50, None, 10, "is before created_at"),
        (50, 60, 40, "is before started_at"),
        (0, 10, 10, None),  # ended as it started: zero seconds, no contradiction
    ],
)
def test_an_end_before_the_start_or_the_creation_is_a_contradiction(
    created: float, started: float | None, ended: float, contradiction: str | None
) -> None:
    run = make_run(status=RunStatus.SUCCEEDED, created=created, started=started, finished=ended)
    found = run.contradicting_times
    assert (found is None) == (contradiction is None)
    if contradiction is not None:
        assert found is not None
        assert contradiction in found
        assert run.effective_duration_seconds is None
        assert run.queue_wait_seconds is None


def test_a_day_only_end_contradicts_only_when_its_whole_day_is_before_the_start() -> None:
    run = replace(
        make_run(status=RunStatus.SUCCEEDED, created=0, started=3600, finished=0),
        day_only=frozenset({"finished_at"}),
    )
    # Ended some time that day, maybe after 01:00: no contradiction (and no duration either,
    # a day being no instant).
    assert run.contradicting_times is None
    earlier = replace(run, finished_at=at(-2 * 86400))
    assert earlier.contradicting_times is not None


def test_the_provider_own_duration_still_stands() -> None:
    """Plextera's `durationMs` is the platform's measure, not computed from the times."""
    run = make_run(status=RunStatus.SUCCEEDED, created=0, started=70, finished=10, duration=42.0)
    assert run.contradicting_times is not None
    assert run.effective_duration_seconds == 42.0
    assert run.queue_wait_seconds is None


@pytest.mark.parametrize(("started", "ended"), [(70, 10), (None, -30)])
def test_a_run_with_contradicting_times_is_counted_without_duration_or_wait(
    started: float | None, ended: float
) -> None:
    state = CoreState()
    run = make_run(status=RunStatus.FAILED, created=0, started=started, finished=ended)
    changes = state.cycle([run], now=at(3600))
    assert changes.finished[("Invoices", "failed")] == 1
    assert [o for o in changes.observations if o.metric in (DURATION, QUEUE_WAIT)] == []
    assert [r.id for r in changes.finished_runs] == ["run-1"]


def test_a_run_without_an_end_time_is_still_bounded_by_now() -> None:
    """The one stand-in kept: no end time given at all, so it ended by now."""
    changes = CoreState().cycle(
        [make_run(status=RunStatus.CANCELLED, created=0, started=30)], now=at(100)
    )
    assert [o.value for o in changes.observations if o.metric == DURATION] == [70.0]


NOW = datetime(2026, 6, 1, tzinfo=UTC)


def sanitized(run: Run) -> tuple[Run, list[str]]:
    reported: list[tuple[str, str]] = []
    sanitizer = RunSanitizer(
        Limits(),
        lambda text: text,
        lambda run_id, what: reported.append((run_id, what)),
        lambda: NOW,
    )
    return sanitizer.run(run), [what for _, what in reported]


def test_the_sanitizer_reports_contradicting_times_as_an_invalid_field() -> None:
    run = Run(
        id="r1",
        workflow_id="wf",
        workflow_name="Invoices",
        status=RunStatus.SUCCEEDED,
        native_status="COMPLETED",
        created_at=NOW - timedelta(minutes=5),
        cursor_time=NOW - timedelta(minutes=5),
        started_at=NOW - timedelta(minutes=1),
        finished_at=NOW - timedelta(minutes=2),
    )
    cleaned, reported = sanitized(run)
    assert reported == [
        "finished_at 2026-05-31T23:58:00+00:00 is before started_at "
        "2026-05-31T23:59:00+00:00: no duration or queue wait taken"
    ]
    # Kept as given: the run counts, and when it ended is still the best there is.
    assert cleaned.finished_at == run.finished_at
    assert cleaned.effective_duration_seconds is None

    agreeing, nothing = sanitized(replace(run, finished_at=NOW))
    assert nothing == []
    assert agreeing.effective_duration_seconds == 60


# Through a simulator --------------------------------------------------------------------------


def test_a_served_run_ending_before_it_started_gets_no_duration(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("plextera", seed=31, arrival_rate_per_min=0)
    world = sim.world
    broken, fine = world.add_runs(2)
    for run in (broken, fine):
        world.finish(run.id, "COMPLETED")
    with world.lock:
        # Served with `completedAt` a minute before `startedAt` and no `durationMs`.
        broken.started_at = world.now()
        broken.finished_at = broken.started_at - timedelta(minutes=1)
        broken.duration_ms = None
    exporter = exporter_factory([source_for(sim, "plextera", name="plx")])

    assert exporter.collect_all()[0].ok

    truth = world.truth()
    assert finished(exporter, "plx") == truth.finished
    assert sum(truth.finished.values()) == 2
    durations = by_labels(exporter, "workflow_run_duration_seconds_count", "plx", "status")
    assert durations == {("succeeded",): 1}, "the broken run is counted but not observed"
    waits = by_labels(exporter, "workflow_run_queue_wait_seconds_count", "plx")
    assert sum(waits.values()) == 1, "only the run whose times agree has a queue wait"
    invalid = by_labels(exporter, "workflow_exporter_invalid_records_total", "plx", "reason")
    assert invalid == {("field",): 1}
