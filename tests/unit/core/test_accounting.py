"""The pure accounting core: what is counted, when, and never twice."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.core.accounting import decide, fresher, merge_sighting
from exporter.core.budgets import OTHER_LABEL, LabelBudget
from exporter.core.model import ERROR_STATUSES, TERMINAL_STATUSES, UNSPECIFIED_CODE, Run, RunStatus
from exporter.core.tracking import ActiveRun, Cursor
from exporter.core.units import DURATION
from tests.core_runs import T0, CoreState, at, make_run, wide_cursor

OVERLAP = timedelta(minutes=10)
RETENTION = timedelta(hours=24)


# Counting terminal runs ------------------------------------------------------------------


def test_terminal_run_is_counted_once_and_never_again() -> None:
    state = CoreState()
    run = make_run(status=RunStatus.SUCCEEDED, created=0, started=5, finished=65)

    first = state.cycle([run], now=at(100))
    second = state.cycle([run], now=at(200))
    third = state.cycle([run, run], now=at(300))

    assert first.finished == Counter({("Invoices", "succeeded"): 1})
    assert first.counted == [("run-1", at(65))]
    assert state.finished == Counter({("Invoices", "succeeded"): 1})
    for later in (second, third):
        assert not later.finished
        assert not later.counted
        assert not later.observations
    assert len(state.durations) == 1


def test_run_in_counted_set_is_skipped_even_when_decide_sees_it_fresh() -> None:
    run = make_run(status=RunStatus.FAILED, finished=10, error_code="X")
    changes = decide(
        runs=[run],
        active={},
        counted={"run-1"},
        cursor=wide_cursor(),
        workflows=LabelBudget((), 10),
        codes=LabelBudget((), 10),
        now=at(20),
    )
    assert not changes.finished
    assert not changes.errors
    assert not changes.counted
    assert not changes.observations


def test_counted_run_that_is_still_tracked_active_is_removed_not_counted() -> None:
    tracked = ActiveRun(
        id="run-1",
        workflow="Invoices",
        status=RunStatus.RUNNING,
        created_at=at(0),
        cursor_time=at(0),
    )
    changes = decide(
        runs=[make_run(status=RunStatus.SUCCEEDED, finished=10)],
        active={"run-1": tracked},
        counted={"run-1"},
        cursor=wide_cursor(),
        workflows=LabelBudget(["Invoices"], 10),
        codes=LabelBudget((), 10),
        now=at(20),
    )
    assert changes.active_removals == {"run-1"}
    assert not changes.finished


def test_tracked_active_run_that_finishes_is_counted_with_duration_and_error_code() -> None:
    state = CoreState()
    state.cycle([make_run(status=RunStatus.RUNNING, created=0, started=10)], now=at(20))
    assert set(state.active) == {"run-1"}

    finished = make_run(
        status=RunStatus.FAILED,
        created=0,
        started=10,
        finished=70,
        error_code="UNSUPPORTED_DOCUMENT",
    )
    changes = state.cycle([finished], now=at(100))

    assert changes.finished == Counter({("Invoices", "failed"): 1})
    assert changes.errors == Counter({("Invoices", "UNSUPPORTED_DOCUMENT"): 1})
    assert changes.active_removals == {"run-1"}
    assert [(o.metric, o.status, o.value) for o in changes.observations] == [
        (DURATION, "failed", 60.0)
    ]
    assert changes.new_codes == ["UNSUPPORTED_DOCUMENT"]
    assert state.active == {}


def test_provider_duration_is_preferred_over_timestamps() -> None:
    changes = CoreState().cycle(
        [make_run(status=RunStatus.SUCCEEDED, started=10, finished=70, duration=42.5)],
        now=at(100),
    )
    assert [o.value for o in changes.observations if o.metric == DURATION] == [42.5]


def test_duration_without_end_time_is_bounded_by_now() -> None:
    changes = CoreState().cycle(
        [make_run(status=RunStatus.CANCELLED, created=0, started=30)], now=at(100)
    )
    assert [o.value for o in changes.observations if o.metric == DURATION] == [70.0]


def test_failed_run_without_code_counts_as_unspecified() -> None:
    changes = CoreState().cycle([make_run(status=RunStatus.FAILED, finished=5)], now=at(10))
    assert changes.errors == Counter({("Invoices", UNSPECIFIED_CODE): 1})


def test_failed_and_rejected_runs_count_as_errors() -> None:
    runs = [
        make_run(f"r-{status.value}", status=status, finished=5, error_code="E")
        for status in TERMINAL_STATUSES
    ]
    changes = CoreState().cycle(runs, now=at(10))
    assert changes.errors == Counter({("Invoices", "E"): 2})  # failed and rejected
    assert changes.finished == Counter({("Invoices", s.value): 1 for s in TERMINAL_STATUSES})


def test_newest_finish_per_workflow_and_status() -> None:
    changes = CoreState().cycle(
        [
            make_run("a", status=RunStatus.SUCCEEDED, finished=20),
            make_run("b", status=RunStatus.SUCCEEDED, finished=50),
            make_run("c", status=RunStatus.SUCCEEDED, finished=30),
            make_run("d", status=RunStatus.FAILED, finished=40, workflow="Claims"),
        ],
        now=at(100),
    )
    assert changes.last_finished == {
        ("Invoices", "succeeded"): at(50),
        ("Claims", "failed"): at(40),
    }


def test_finish_without_an_instant_is_dated_when_counted() -> None:
    day_start = at(-12 * 3600)
    dated = replace(
        make_run("dated", status=RunStatus.SUCCEEDED, finished=0),
        finished_at=day_start,
        day_only=frozenset({"finished_at"}),
    )
    undated = make_run("undated", status=RunStatus.CANCELLED, workflow="Claims")
    ahead = make_run("ahead", status=RunStatus.FAILED, finished=500, workflow="Ahead")
    changes = CoreState().cycle([dated, undated, ahead], now=at(100))
    assert changes.last_finished == {
        ("Invoices", "succeeded"): at(100),
        ("Claims", "cancelled"): at(100),
        ("Ahead", "failed"): at(100),  # a provider clock ahead never dates a finish later
    }


def test_an_unknown_status_with_an_end_time_has_finished() -> None:
    state = CoreState()
    state.cycle([make_run("ended", status=RunStatus.UNKNOWN, finished=5)], now=at(10))
    state.cycle([make_run("open", status=RunStatus.UNKNOWN)], now=at(10))
    assert state.finished == Counter({("Invoices", "unknown"): 1})
    assert set(state.active) == {"open"}


def test_a_run_known_only_by_its_day_is_counted_without_durations_or_waits() -> None:
    day_start = at(-12 * 3600)
    run = replace(
        make_run("dated", status=RunStatus.SUCCEEDED),
        created_at=day_start,
        cursor_time=day_start + timedelta(days=1),
        started_at=day_start,
        finished_at=day_start,
        day_only=frozenset({"created_at", "started_at", "finished_at"}),
    )
    # First start at T0 with a one-hour backfill: the baseline lies after the day's start, yet
    # the run may have been created at any time of the day, so it counts.
    state = CoreState(cursor=Cursor.first_start(T0, timedelta(hours=1)))
    changes = state.cycle([run], now=at(10))
    assert changes.finished == Counter({("Invoices", "succeeded"): 1})
    assert changes.observations == []
    # Its prune key is the end of its day: re-read until then, it is never counted again.
    assert changes.counted == [("dated", day_start + timedelta(days=1))]


def test_an_active_run_known_only_by_its_day_ages_from_when_it_was_first_seen() -> None:
    day_start = at(-15 * 3600)
    run = replace(
        make_run("dated"),
        created_at=day_start,
        cursor_time=day_start + timedelta(days=1),
        day_only=frozenset({"created_at"}),
    )
    state = CoreState()
    state.cycle([run], now=at(10))
    state.cycle([run], now=at(40))
    assert state.active["dated"].created_at == at(10)


# What is too old to count ----------------------------------------------------------------


def _cursor_at_t0() -> Cursor:
    """Baseline and horizon both at T0."""
    return Cursor(baseline=T0, watermark=T0, horizon=T0)


def test_untracked_terminal_run_older_than_baseline_is_ignored() -> None:
    state = CoreState(cursor=_cursor_at_t0())
    old = make_run(status=RunStatus.SUCCEEDED, created=-60, finished=30)
    changes = state.cycle([old], now=at(100))
    assert changes.ignored_old == 1
    assert not changes.finished
    assert not changes.counted
    assert not changes.observations


def test_untracked_terminal_run_finished_before_horizon_is_ignored() -> None:
    cursor = Cursor(baseline=at(-3600), watermark=T0, horizon=T0)
    state = CoreState(cursor=cursor)
    changes = state.cycle(
        [make_run(status=RunStatus.FAILED, created=-600, finished=-1)], now=at(100)
    )
    assert changes.ignored_old == 1
    assert not changes.finished
    assert not changes.errors


def test_horizon_uses_cursor_time_when_finish_time_is_missing() -> None:
    cursor = Cursor(baseline=at(-3600), watermark=T0, horizon=T0)
    run = make_run(status=RunStatus.SUCCEEDED, created=-600, cursor=-1)
    assert CoreState(cursor=cursor).cycle([run], now=at(100)).ignored_old == 1
    recent = make_run(status=RunStatus.SUCCEEDED, created=-600, cursor=1)
    changes = CoreState(cursor=cursor).cycle([recent], now=at(100))
    assert changes.counted == [("run-1", at(1))]


def test_terminal_run_at_baseline_and_horizon_is_counted() -> None:
    run = make_run(status=RunStatus.SUCCEEDED, created=0, finished=0)
    changes = CoreState(cursor=_cursor_at_t0()).cycle([run], now=at(100))
    assert changes.finished == Counter({("Invoices", "succeeded"): 1})


def test_tracked_run_older_than_baseline_is_counted_when_it_finishes() -> None:
    state = CoreState(cursor=_cursor_at_t0())
    state.cycle([make_run(status=RunStatus.RUNNING, created=-600, started=-500)], now=at(10))
    changes = state.cycle(
        [make_run(status=RunStatus.SUCCEEDED, created=-600, started=-500, finished=5)],
        now=at(20),
    )
    assert changes.finished == Counter({("Invoices", "succeeded"): 1})
    assert changes.ignored_old == 0


# Active runs and queue wait --------------------------------------------------------------


def test_non_terminal_runs_are_tracked_with_their_status_and_progress() -> None:
    state = CoreState()
    changes = state.cycle(
        [
            make_run("q", status=RunStatus.QUEUED, created=1),
            make_run("r", status=RunStatus.RUNNING, created=2, started=3, progress=0.5),
            make_run("h", status=RunStatus.NEEDS_REVIEW, created=3, started=4),
            make_run("u", status=RunStatus.UNKNOWN, created=4),
        ],
        now=at(10),
    )
    assert not changes.finished
    assert {run_id: a.status for run_id, a in state.active.items()} == {
        "q": RunStatus.QUEUED,
        "r": RunStatus.RUNNING,
        "h": RunStatus.NEEDS_REVIEW,
        "u": RunStatus.UNKNOWN,
    }
    assert state.active["r"].progress == 0.5
    assert state.active["r"].last_seen == at(10)
    assert state.active["r"].workflow_id == "id-Invoices"
    assert not any(a.awaiting_detail for a in state.active.values())


def test_queue_wait_is_observed_once_when_the_run_starts() -> None:
    state = CoreState()
    state.cycle([make_run(status=RunStatus.QUEUED, created=0)], now=at(5))
    assert state.queue_waits == []
    assert not state.active["run-1"].queue_wait_observed

    state.cycle([make_run(status=RunStatus.RUNNING, created=0, started=12)], now=at(20))
    assert [o.value for o in state.queue_waits] == [12.0]
    assert state.active["run-1"].queue_wait_observed

    state.cycle([make_run(status=RunStatus.NEEDS_REVIEW, created=0, started=12)], now=at(30))
    state.cycle(
        [make_run(status=RunStatus.SUCCEEDED, created=0, started=12, finished=40)], now=at(50)
    )
    assert [o.value for o in state.queue_waits] == [12.0]
    assert state.queue_waits[0].status == ""
    assert len(state.durations) == 1


def test_queue_wait_is_observed_at_finish_when_never_seen_started() -> None:
    state = CoreState()
    state.cycle([make_run(status=RunStatus.QUEUED, created=0)], now=at(5))
    state.cycle(
        [make_run(status=RunStatus.SUCCEEDED, created=0, started=8, finished=30)], now=at(40)
    )
    assert [o.value for o in state.queue_waits] == [8.0]


def test_queue_wait_of_a_run_first_seen_finished_is_observed_once() -> None:
    state = CoreState()
    run = make_run(status=RunStatus.FAILED, created=0, started=3, finished=30)
    state.cycle([run], now=at(40))
    state.cycle([run], now=at(50))
    assert [o.value for o in state.queue_waits] == [3.0]


def test_no_queue_wait_for_a_run_that_never_started() -> None:
    state = CoreState()
    state.cycle([make_run(status=RunStatus.CANCELLED, created=0, finished=30)], now=at(40))
    assert state.queue_waits == []
    assert len(state.durations) == 1


# Runs waiting for detail -----------------------------------------------------------------


def test_run_needing_detail_is_parked_and_counted_when_the_detail_arrives() -> None:
    state = CoreState()
    summary = make_run(status=RunStatus.FAILED, started=2, finished=30, needs_detail=True)

    parked = state.cycle([summary], now=at(40))
    again = state.cycle([summary], now=at(50))

    for changes in (parked, again):
        assert not changes.finished
        assert not changes.errors
        assert not changes.counted
        assert not [o for o in changes.observations if o.metric == DURATION]
    assert state.active["run-1"].awaiting_detail
    assert state.active["run-1"].status is RunStatus.FAILED

    detailed = replace(summary, needs_detail=False, error_code="PARSE_ERROR")
    done = state.cycle([detailed], now=at(60))
    assert done.finished == Counter({("Invoices", "failed"): 1})
    assert done.errors == Counter({("Invoices", "PARSE_ERROR"): 1})
    assert state.active == {}
    assert [o.value for o in state.queue_waits] == [2.0]

    assert not state.cycle([detailed, summary], now=at(70)).finished


def test_parked_run_keeps_its_queue_wait_observed_flag() -> None:
    state = CoreState()
    state.cycle([make_run(status=RunStatus.RUNNING, started=4)], now=at(10))
    state.cycle(
        [make_run(status=RunStatus.FAILED, started=4, finished=20, needs_detail=True)], now=at(30)
    )
    assert state.active["run-1"].queue_wait_observed
    state.cycle([make_run(status=RunStatus.FAILED, started=4, finished=20)], now=at(40))
    assert len(state.queue_waits) == 1
    assert state.finished == Counter({("Invoices", "failed"): 1})


def test_detail_and_summary_in_the_same_cycle_count_once() -> None:
    state = CoreState()
    summary = make_run(status=RunStatus.FAILED, finished=5, needs_detail=True)
    detailed = replace(summary, needs_detail=False, error_code="E1")
    changes = state.cycle([detailed, summary], now=at(10))
    assert changes.errors == Counter({("Invoices", "E1"): 1})
    assert state.active == {}


# Vanished runs ---------------------------------------------------------------------------


def test_vanished_active_runs_are_removed_without_counting() -> None:
    state = CoreState()
    state.cycle(
        [
            make_run("gone", status=RunStatus.RUNNING, started=1),
            make_run("kept", status=RunStatus.RUNNING, started=1),
        ],
        now=at(10),
    )
    changes = state.cycle([], now=at(20), vanished=["gone", "never-tracked"])
    assert changes.active_removals == {"gone"}
    assert changes.vanished == ["gone"]
    assert not changes.finished
    assert not changes.counted
    assert set(state.active) == {"kept"}


def test_run_seen_in_the_same_cycle_is_not_treated_as_vanished() -> None:
    state = CoreState()
    state.cycle([make_run(status=RunStatus.RUNNING)], now=at(10))
    changes = state.cycle([make_run(status=RunStatus.RUNNING)], now=at(20), vanished=["run-1"])
    assert changes.vanished == []
    assert "run-1" in state.active


# Label bounds ----------------------------------------------------------------------------


def test_label_budget_admits_up_to_the_limit_then_folds_into_other() -> None:
    budget = LabelBudget(["a"], limit=2)
    assert budget.label("a") == "a"
    assert budget.label("b") == "b"
    assert budget.label("c") == OTHER_LABEL
    assert budget.label("b") == "b"
    assert budget.label("d") == OTHER_LABEL
    assert budget.label("c") == OTHER_LABEL
    # `other` is remembered once used, so its series are pre-created like any workflow's.
    assert budget.newly_admitted == ["b", OTHER_LABEL]
    assert budget.dropped == 3


def test_workflows_past_the_bound_fold_into_other_and_count_drops() -> None:
    state = CoreState(max_workflows=2)
    state.workflows.add("A")
    runs = [
        make_run(f"r-{wf}", status=RunStatus.SUCCEEDED, workflow=wf, finished=5)
        for wf in ("A", "B", "C", "D")
    ]
    changes = state.cycle(runs, now=at(10))
    assert changes.finished == Counter(
        {("A", "succeeded"): 1, ("B", "succeeded"): 1, (OTHER_LABEL, "succeeded"): 2}
    )
    assert changes.new_workflows == ["B", OTHER_LABEL]
    assert changes.dropped_labels == Counter({"workflow": 2})
    assert {o.workflow for o in changes.observations} == {"A", "B", OTHER_LABEL}


def test_error_codes_past_the_bound_fold_into_other() -> None:
    state = CoreState(max_codes=1)
    runs = [
        make_run(f"r-{code}", status=RunStatus.FAILED, finished=5, error_code=code)
        for code in ("E1", "E2", "E3")
    ]
    changes = state.cycle(runs, now=at(10))
    assert changes.errors == Counter({("Invoices", "E1"): 1, ("Invoices", OTHER_LABEL): 2})
    assert changes.new_codes == ["E1", OTHER_LABEL]
    assert changes.dropped_labels == Counter({"code": 2})


def test_tracked_run_keeps_the_label_it_was_given() -> None:
    state = CoreState(max_workflows=1)
    state.cycle([make_run("r1", status=RunStatus.RUNNING, workflow="A")], now=at(1))
    state.cycle([make_run("r2", status=RunStatus.RUNNING, workflow="B")], now=at(2))
    assert state.active["r2"].workflow == OTHER_LABEL
    changes = state.cycle(
        [
            make_run("r1", status=RunStatus.SUCCEEDED, workflow="A", finished=3),
            make_run("r2", status=RunStatus.SUCCEEDED, workflow="B", finished=3),
        ],
        now=at(4),
    )
    assert changes.finished == Counter({("A", "succeeded"): 1, (OTHER_LABEL, "succeeded"): 1})
    # Neither run needed a new label this cycle.
    assert not changes.dropped_labels


# Cursor ----------------------------------------------------------------------------------


def test_first_start_puts_everything_at_now_minus_backfill() -> None:
    cursor = Cursor.first_start(T0, timedelta(hours=2))
    assert cursor.baseline == cursor.watermark == cursor.horizon == at(-7200)
    assert cursor.scan_floor(OVERLAP) == at(-7200)


def test_scan_floor_is_overlap_below_watermark_but_never_below_baseline() -> None:
    cursor = Cursor(baseline=at(-3600), watermark=T0, horizon=at(-3600))
    assert cursor.scan_floor(OVERLAP) == at(-600)
    assert cursor.scan_floor(timedelta(hours=5)) == at(-3600)


def test_advanced_moves_watermark_and_horizon_forward() -> None:
    cursor = Cursor(baseline=at(-3600), watermark=T0, horizon=at(-3600))
    moved = cursor.advanced(at(300), now=at(400), overlap=OVERLAP, retention=RETENTION)
    assert moved.watermark == at(300)
    assert moved.horizon == max(at(-3600), at(300) - RETENTION)
    assert moved.baseline == cursor.baseline
    short = cursor.advanced(at(300), now=at(400), overlap=OVERLAP, retention=timedelta(minutes=20))
    assert short.horizon == at(300 - 1200)


def test_advanced_never_moves_backwards() -> None:
    cursor = Cursor(baseline=at(-3600), watermark=T0, horizon=at(-60))
    moved = cursor.advanced(at(-500), now=at(10), overlap=OVERLAP, retention=timedelta(minutes=20))
    assert moved.watermark == T0
    assert moved.horizon == at(-60)
    assert cursor.advanced(None, now=at(10), overlap=OVERLAP, retention=RETENTION) == cursor


def test_advanced_caps_a_provider_clock_far_in_the_future() -> None:
    cursor = Cursor(baseline=at(-3600), watermark=T0, horizon=at(-3600))
    moved = cursor.advanced(at(86400 * 30), now=at(100), overlap=OVERLAP, retention=RETENTION)
    # Never past our own now: the overlap below the watermark still covers runs listed late.
    assert moved.watermark == at(100)
    # What the next scan re-reads still reaches a whole overlap below now.
    assert moved.scan_floor(OVERLAP) == at(100) - OVERLAP


@given(
    steps=st.lists(
        st.tuples(st.integers(-(10**6), 10**7) | st.none(), st.integers(0, 10**6)), max_size=20
    )
)
def test_cursor_is_monotonic_and_never_ahead_of_now(
    steps: list[tuple[int | None, int]],
) -> None:
    cursor = Cursor.first_start(T0, timedelta(hours=1))
    now_seconds = 0
    for newest, elapsed in steps:
        now_seconds += elapsed
        now = at(now_seconds)
        moved = cursor.advanced(None if newest is None else at(newest), now, OVERLAP, RETENTION)
        assert moved.watermark >= cursor.watermark
        assert moved.horizon >= cursor.horizon
        assert moved.baseline == cursor.baseline
        assert moved.watermark <= max(cursor.watermark, now)
        assert moved.horizon <= max(cursor.horizon, moved.watermark - RETENTION)
        cursor = moved


# Deduplication ---------------------------------------------------------------------------


def test_terminal_sighting_beats_non_terminal_in_either_order() -> None:
    running = make_run(status=RunStatus.RUNNING, cursor=100)
    done = make_run(status=RunStatus.SUCCEEDED, cursor=50, finished=60)
    assert fresher(done, running)
    assert not fresher(running, done)
    for order in ([running, done], [done, running]):
        seen: dict[str, Run] = {}
        for run in order:
            merge_sighting(seen, run)
        assert seen["run-1"] is done


def test_newer_cursor_time_wins_between_sightings_of_the_same_kind() -> None:
    older = make_run(status=RunStatus.QUEUED, cursor=10)
    newer = make_run(status=RunStatus.RUNNING, cursor=20, started=15)
    for order in ([older, newer], [newer, older]):
        seen: dict[str, Run] = {}
        for run in order:
            merge_sighting(seen, run)
        assert seen["run-1"] is newer


def test_detailed_sighting_beats_one_needing_detail_at_the_same_age() -> None:
    summary = make_run(status=RunStatus.FAILED, finished=5, needs_detail=True)
    detailed = replace(summary, needs_detail=False, error_code="E")
    assert fresher(detailed, summary)
    assert not fresher(summary, detailed)


def test_later_read_wins_when_nothing_else_differs() -> None:
    first = make_run(status=RunStatus.RUNNING, progress=0.1)
    second = make_run(status=RunStatus.RUNNING, progress=0.2)
    seen: dict[str, Run] = {}
    merge_sighting(seen, first)
    merge_sighting(seen, second)
    assert seen["run-1"] is second


def test_merge_keeps_distinct_runs_apart() -> None:
    seen: dict[str, Run] = {}
    for run in (make_run("a"), make_run("b"), make_run("a")):
        merge_sighting(seen, run)
    assert set(seen) == {"a", "b"}


# The property: every finished run counted once, with its final status --------------------

_NEXT: dict[RunStatus, tuple[RunStatus, ...]] = {
    RunStatus.QUEUED: (RunStatus.RUNNING, RunStatus.CANCELLED, RunStatus.SKIPPED),
    RunStatus.RUNNING: (
        RunStatus.NEEDS_REVIEW,
        RunStatus.UNKNOWN,
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.CANCELLED,
    ),
    RunStatus.NEEDS_REVIEW: (RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.REJECTED),
    RunStatus.UNKNOWN: (RunStatus.RUNNING, RunStatus.FAILED),
}
_WORKFLOWS = ("Invoices", "Claims", "Receipts")
_CODES = (None, "UNSUPPORTED_DOCUMENT", "WORKFLOW_RUN_FAILED")


class _World:
    """The provider's truth: every version each run has had, in order."""

    def __init__(self, cursor_is_update_time: bool) -> None:
        self.cursor_is_update_time = cursor_is_update_time
        self.history: dict[str, list[Run]] = {}
        self.clock = 0
        self.changed: set[str] = set()

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    def current(self, run_id: str) -> Run:
        return self.history[run_id][-1]

    def create(self, workflow: str, status: RunStatus) -> None:
        now = self.tick()
        run = make_run(
            f"run-{len(self.history)}",
            status=status,
            workflow=workflow,
            created=now,
            started=now if status is RunStatus.RUNNING else None,
        )
        self.history[run.id] = [run]
        self.changed.add(run.id)

    def advance(self, run_id: str, status: RunStatus, code: str | None) -> None:
        now = self.tick()
        run = self.current(run_id)
        started = run.started_at
        if started is None and status not in (RunStatus.CANCELLED, RunStatus.SKIPPED):
            started = at(now)
        self.history[run_id].append(
            replace(
                run,
                status=status,
                native_status=status.value.upper(),
                started_at=started,
                finished_at=at(now) if status.terminal else None,
                cursor_time=at(now) if self.cursor_is_update_time else run.cursor_time,
                error_code=code if status is RunStatus.FAILED else None,
            )
        )
        self.changed.add(run_id)

    def open_runs(self) -> list[str]:
        return sorted(r for r in self.history if not self.current(r).status.terminal)


def _draw_world_changes(data: st.DataObject, world: _World) -> None:
    for _ in range(data.draw(st.integers(0, 6), label="events")):
        open_runs = world.open_runs()
        if not open_runs or data.draw(st.booleans(), label="create"):
            world.create(
                data.draw(st.sampled_from(_WORKFLOWS), label="workflow"),
                data.draw(st.sampled_from([RunStatus.QUEUED, RunStatus.RUNNING]), label="initial"),
            )
        else:
            run_id = data.draw(st.sampled_from(open_runs), label="run")
            status = data.draw(st.sampled_from(_NEXT[world.current(run_id).status]), label="next")
            world.advance(run_id, status, data.draw(st.sampled_from(_CODES), label="code"))


def _draw_sightings(
    data: st.DataObject, world: _World, shown_before: dict[str, int], final: bool
) -> list[Run]:
    """What one cycle's pages and lookups return: every run changed since the last cycle (in its
    current version), some unchanged ones, stale versions from during the cycle, duplicates, any
    order. A failed run may come as a summary that needs detail, unless this is the final cycle.
    """
    pool: list[Run] = []
    for run_id in sorted(world.history):
        versions = world.history[run_id]
        current = versions[-1]
        must_show = final or run_id in world.changed
        if not must_show and not data.draw(st.booleans(), label="show unchanged"):
            continue
        sightings = [current]
        if current.status is RunStatus.FAILED and not final:
            kind = data.draw(st.sampled_from(["detail", "summary", "both"]), label="detail")
            summary = replace(current, needs_detail=True, error_code=None)
            sightings = {"detail": [current], "summary": [summary], "both": [summary, current]}[
                kind
            ]
        # A page read while the run changed: any version since the last cycle's may show too.
        # The final cycle is a quiet, complete scan.
        stale_from = shown_before.get(run_id, 0)
        for version in versions[stale_from:-1]:
            if not final and data.draw(st.booleans(), label="stale"):
                sightings.append(version)
        pool.extend(sightings * data.draw(st.integers(1, 2), label="copies"))
        shown_before[run_id] = len(versions) - 1
    return data.draw(st.permutations(pool), label="order")


@settings(max_examples=150, deadline=None)
@given(data=st.data(), cursor_is_update_time=st.booleans())
def test_every_finished_run_is_counted_once_with_its_final_status(
    data: st.DataObject, cursor_is_update_time: bool
) -> None:
    world = _World(cursor_is_update_time)
    state = CoreState(max_workflows=len(_WORKFLOWS), max_codes=len(_CODES))
    shown_before: dict[str, int] = {}
    cycles = data.draw(st.integers(1, 8), label="cycles")
    for number in range(cycles + 1):
        final = number == cycles
        if not final:
            _draw_world_changes(data, world)
        sightings = _draw_sightings(data, world, shown_before, final)
        world.changed.clear()
        changes = state.cycle(sightings, now=at(world.tick()))

        for run_id, _ in changes.counted:
            assert world.current(run_id).status.terminal
        # A finished run shown with its detail is counted in that very cycle, whatever stale
        # sightings came with it.
        shown_finished = {r.id for r in sightings if r.status.terminal and not r.needs_detail}
        assert shown_finished <= state.counted
        if cursor_is_update_time:
            # Every change bumps the cursor time: the newest sighting is the one believed.
            for run_id in {r.id for r in sightings}:
                current = world.current(run_id)
                if not current.status.terminal:
                    assert state.active[run_id].status is current.status
        assert not set(state.active) & state.counted
        # Only what has finished may be counted, each with its final status.
        model_so_far = Counter(
            (world.current(r).workflow_label, world.current(r).status.value) for r in state.counted
        )
        assert state.finished == model_so_far

    terminal = [world.current(r) for r in world.history if world.current(r).status.terminal]
    assert state.counted == {run.id for run in terminal}
    assert state.finished == Counter((run.workflow_label, run.status.value) for run in terminal)
    assert state.errors == Counter(
        (run.workflow_label, run.error_code or UNSPECIFIED_CODE)
        for run in terminal
        if run.status in ERROR_STATUSES
    )
    # Every finished run observed one duration; every run that started one queue wait.
    assert Counter((o.workflow, o.status) for o in state.durations) == state.finished
    started = [world.current(r) for r in world.history if world.current(r).started_at]
    assert sorted((o.workflow, o.value) for o in state.queue_waits) == sorted(
        (run.workflow_label, run.queue_wait_seconds) for run in started
    )
    # What is still open is tracked, with its current status.
    assert {r: a.status for r, a in state.active.items()} == {
        r: world.current(r).status for r in world.open_runs()
    }
    assert not any(a.awaiting_detail for a in state.active.values())


def test_property_world_helper_reaches_every_terminal_status() -> None:
    """Guards the generator above: each terminal status is reachable from a fresh run."""
    reachable: set[RunStatus] = set()
    frontier = [RunStatus.QUEUED, RunStatus.RUNNING]
    while frontier:
        status = frontier.pop()
        for nxt in _NEXT.get(status, ()):
            if nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    assert reachable >= TERMINAL_STATUSES


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_each_terminal_status_is_counted_under_its_own_label(status: RunStatus) -> None:
    changes = CoreState().cycle([make_run(status=status, finished=1)], now=at(2))
    assert changes.finished == Counter({("Invoices", status.value): 1})


def test_a_parked_failed_run_that_vanishes_is_counted_once_with_code_unspecified() -> None:
    state = CoreState()
    state.cycle(
        [make_run(status=RunStatus.FAILED, started=2, finished=30, needs_detail=True)], now=at(40)
    )

    changes = state.cycle([], now=at(50), vanished=["run-1"])

    assert changes.finished == Counter({("Invoices", "failed"): 1})
    assert changes.errors == Counter({("Invoices", "unspecified"): 1})
    assert len(state.durations) == 1
    assert state.active == {}
    assert not state.cycle([], now=at(60), vanished=["run-1"]).finished


def test_an_older_unfinished_sighting_does_not_unpark_a_failed_run() -> None:
    state = CoreState()
    state.cycle(
        [make_run(status=RunStatus.FAILED, cursor=30, finished=30, needs_detail=True)], now=at(40)
    )

    state.cycle([make_run(status=RunStatus.RUNNING, cursor=10)], now=at(50))

    assert state.active["run-1"].awaiting_detail
    assert state.active["run-1"].status is RunStatus.FAILED


def test_the_other_workflow_is_remembered_so_its_series_are_precreated() -> None:
    state = CoreState(max_workflows=1)
    state.cycle(
        [make_run(f"r-{wf}", status=RunStatus.SUCCEEDED, workflow=wf, finished=5) for wf in "AB"],
        now=at(10),
    )
    assert state.workflows == {"A", OTHER_LABEL}
