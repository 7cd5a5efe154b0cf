"""The pure core that decides what to count. No I/O: the collector feeds it, the store persists it.

Over 300 lines with no named split: the decision rules read and update the same cycle's changes;
the tracking of active runs lives in `tracking`.

Exactly-once rests on four rules, applied to each run seen in a cycle (deduplicated by its key
first: `Run.id`, the API's id exactly, scoped as the API scopes it, never a cleaned text):

1. A run id in the `counted` set is never counted again.
2. A terminal run the source tracks as active is counted now: it was seen unfinished, so it was
   never counted.
3. A terminal run seen for the first time is counted unless it is older than what this source
   promises to count: created before the first start's backfill window (`baseline`), or finished
   before the pruning `horizon` (its id may have been counted and then forgotten).
4. A non-terminal run is (re)tracked as active; its queue wait is observed once, when it starts.

The horizon trails the watermark by the retention window, which is validated to exceed the overlap
that every scan re-reads. A run id is only pruned once it finished before the horizon, and rule 3
ignores exactly those runs, so pruning never lets a run be counted twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from exporter.core.budgets import (
    OTHER_LABEL,
    LabelBudget,
    PairBudget,
    SeriesBudget,
    SeriesTab,
    StepBudget,
)
from exporter.core.frozen import quick_init
from exporter.core.model import ERROR_STATUSES, UNSPECIFIED_CODE, Run, RunStatus
from exporter.core.tracking import ActiveRun, Cursor
from exporter.core.units import DURATION, QUEUE_WAIT, STEP_DURATION

# The collector and the app import the budgets and the cursor from here, with what they decide.
__all__ = [
    "OTHER_LABEL",
    "ActiveRun",
    "Cursor",
    "CycleChanges",
    "FinishedRun",
    "LabelBudget",
    "Observation",
    "PairBudget",
    "SeriesBudget",
    "SeriesTab",
    "StepBudget",
    "decide",
    "fresher",
    "merge_sighting",
]


@dataclass(slots=True)
class Observation:
    metric: str  # DURATION, QUEUE_WAIT or STEP_DURATION
    workflow: str
    status: str  # "" for metrics without a status label; the step for STEP_DURATION
    value: float
    # The run behind a duration, and when it was counted: an exemplar, so a slow bucket leads
    # to a run (never a label).
    run_id: str = ""
    at: float = 0.0


@quick_init
@dataclass(frozen=True, slots=True)
class FinishedRun:
    """A run counted this cycle, as the alerting agent needs it (never a metric label)."""

    id: str  # the run's key (`Run.id`)
    workflow: str  # the bounded label value
    status: RunStatus
    code: str  # the bounded label value; `unspecified` when the provider gives none
    created_at: datetime
    finished_at: datetime
    error_message: str | None = None
    dashboard_url: str | None = None
    # The id as shown where it is not `id`: see `Run.shown`.
    shown_id: str | None = None

    @property
    def shown(self) -> str:
        return self.id if self.shown_id is None else self.shown_id


@dataclass(slots=True)
class CycleChanges:
    """Everything one cycle changes, committed by the store in one transaction."""

    finished: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    observations: list[Observation] = field(default_factory=list)
    counted: list[tuple[str, datetime]] = field(default_factory=list)  # (run id, prune key)
    finished_runs: list[FinishedRun] = field(default_factory=list)
    # (workflow, status) -> when the newest run counted this cycle reached that status.
    last_finished: dict[tuple[str, str], datetime] = field(default_factory=dict)
    active_upserts: dict[str, ActiveRun] = field(default_factory=dict)
    active_removals: set[str] = field(default_factory=set)
    new_workflows: list[str] = field(default_factory=list)
    new_codes: list[str] = field(default_factory=list)
    dropped_labels: Counter[str] = field(default_factory=Counter)
    cursor: Cursor | None = None
    # Error series (workflow, code) this cycle creates, and when: new counter series are served
    # at zero before their first increment counts (0: the first start's backfill, history).
    new_error_pairs: list[tuple[str, str]] = field(default_factory=list)
    born_at: float = 0.0
    # (workflow, step, step status) -> steps of the runs counted this cycle; the (workflow, step)
    # pairs this cycle admits (each created with every step status at zero), and step items of
    # counted runs that could not be read.
    steps: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    new_steps: list[tuple[str, str]] = field(default_factory=list)
    invalid_steps: int = 0
    # For logs and self-metrics.
    ignored_old: int = 0
    vanished: list[str] = field(default_factory=list)
    # Counted runs seen unfinished again (a retry under the same id), as shown: not counted
    # again.
    reopened: list[str] = field(default_factory=list)
    # Series reserved on the shared budget for the values this cycle admits: given back if its
    # commit fails.
    series_reserved: int = 0
    # Workflow label values this cycle gives a workflow id (`LabelBudget` owners), and the
    # collisions it found: (label both would read, the newcomer's id, the owner's id).
    new_owners: dict[str, str] = field(default_factory=dict)
    name_collisions: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def counted_ids(self) -> set[str]:
        return {run_id for run_id, _ in self.counted}

    def note_finish(self, workflow: str, status: str, when: datetime) -> None:
        key = (workflow, status)
        current = self.last_finished.get(key)
        if current is None or when > current:
            self.last_finished[key] = when


def fresher(candidate: Run, current: Run) -> bool:
    """Which of two sightings of the same run in one cycle to believe."""
    if candidate.terminal != current.terminal:
        return candidate.terminal  # terminal is final; a stale page cannot undo it
    if candidate.cursor_time != current.cursor_time:
        return candidate.cursor_time > current.cursor_time
    if candidate.needs_detail != current.needs_detail:
        return not candidate.needs_detail
    return True  # same age: the later read (lookups come after pages) wins


def merge_sighting(seen: dict[str, Run], run: Run) -> None:
    current = seen.get(run.id)
    if current is None or fresher(run, current):
        seen[run.id] = run


def decide(
    *,
    runs: Iterable[Run],
    vanished: Iterable[str] = (),
    without_detail: Iterable[str] = (),
    active: Mapping[str, ActiveRun],
    counted: set[str],
    cursor: Cursor,
    workflows: LabelBudget,
    codes: LabelBudget,
    now: datetime,
    error_pairs: PairBudget | None = None,
    steps: StepBudget | None = None,
    history: bool | None = None,
) -> CycleChanges:
    """Turn one cycle's sightings into the changes to commit. `runs` is already deduplicated.

    `without_detail`: parked failed runs whose failure detail cannot be had (the source's
    single-run endpoint is absent): counted now with code `unspecified`, not as vanished.

    `history`: whether what this cycle counts is the first start's backfill, whose new series
    show their counts at once (default: while the watermark has never advanced)."""
    changes = CycleChanges()
    pairs = error_pairs or PairBudget((), None)
    step_budget = steps or StepBudget((), 0)
    for run in runs:
        if run.id in counted:
            if run.id in active:  # defensive: a counted run is never active
                changes.active_removals.add(run.id)
            if not run.terminal:
                changes.reopened.append(run.shown)
            continue
        tracked = active.get(run.id)
        if run.terminal:
            counted_before = len(changes.counted)
            _decide_terminal(run, tracked, cursor, workflows, codes, pairs, now, changes)
            if len(changes.counted) > counted_before:
                # Counted now, so its steps are counted now: the same exactly-once as the run's.
                _count_steps(run, changes.finished_runs[-1].workflow, step_budget, changes)
        else:
            _track_active(run, tracked, workflows, now, changes)
    for run_id in vanished:
        tracked = active.get(run_id)
        if tracked is None or run_id in changes.active_upserts:
            continue
        changes.active_removals.add(run_id)
        changes.vanished.append(run_id)
        if tracked.awaiting_detail:
            # Known to have failed; only its reason is lost with it. Count it, code unknown.
            _count_parked_without_detail(tracked, now, changes, pairs)
    for run_id in without_detail:
        tracked = active.get(run_id)
        if tracked is None or not tracked.awaiting_detail or run_id in changes.active_upserts:
            continue
        if run_id in changes.active_removals:
            continue  # already counted above (vanished)
        changes.active_removals.add(run_id)
        _count_parked_without_detail(tracked, now, changes, pairs)
    changes.new_workflows = list(workflows.newly_admitted)
    changes.new_owners = dict(workflows.newly_owned)
    changes.name_collisions = list(workflows.collisions)
    changes.new_error_pairs = list(pairs.newly_known)
    if not (cursor.never_advanced if history is None else history):
        changes.born_at = now.timestamp()
    changes.new_codes = list(codes.newly_admitted)
    changes.new_steps = list(step_budget.newly_known)
    if step_budget.dropped:
        changes.dropped_labels["step"] += step_budget.dropped
    if workflows.dropped:
        changes.dropped_labels["workflow"] += workflows.dropped
    if codes.dropped or pairs.dropped:
        changes.dropped_labels["code"] += codes.dropped + pairs.dropped
    return changes


def _decide_terminal(
    run: Run,
    tracked: ActiveRun | None,
    cursor: Cursor,
    workflows: LabelBudget,
    codes: LabelBudget,
    pairs: PairBudget,
    now: datetime,
    changes: CycleChanges,
) -> None:
    finished_by = run.finished_by
    prune_key = finished_by or run.cursor_time
    if tracked is None and (run.cursor_time < cursor.baseline or prune_key < cursor.horizon):
        changes.ignored_old += 1
        return
    workflow = tracked.workflow if tracked else workflows.label(run.workflow_label, run.workflow_id)
    if run.needs_detail:
        changes.active_upserts[run.id] = ActiveRun(
            id=run.id,
            workflow=workflow,
            status=run.status,
            created_at=run.created_at,
            cursor_time=run.cursor_time,
            queue_wait_observed=tracked.queue_wait_observed if tracked else False,
            awaiting_detail=True,
            last_seen=now,
            workflow_id=run.workflow_id,
            shown_id=run.shown_id,
        )
        return
    status = str(run.status)  # the value (`.value` is a slow property on an enum)
    changes.finished[(workflow, status)] += 1
    duration = run.effective_duration_seconds
    if duration is None and run.finished_at is None:
        start = _exact_start(run)
        if start is not None:
            # No end time given: it ended by now, so now - start bounds it. Observing every
            # finished run keeps each histogram's _count equal to its counter. An end time that
            # was given but contradicts the start is no such case: nothing is observed rather
            # than a guess.
            duration = max(0.0, (now - start).total_seconds())
    if duration is not None:
        # None: only dates were given (a day is no instant to subtract), or the times given
        # contradict each other.
        changes.observations.append(
            Observation(DURATION, workflow, status, duration, run.shown, now.timestamp())
        )
    code = UNSPECIFIED_CODE
    if run.status in ERROR_STATUSES:
        code = pairs.code(workflow, codes.label(run.error_code or UNSPECIFIED_CODE))
        changes.errors[(workflow, code)] += 1
    changes.note_finish(workflow, status, _finish_instant(run, now))
    changes.finished_runs.append(
        FinishedRun(
            id=run.id,
            workflow=workflow,
            status=run.status,
            code=code,
            created_at=run.created_at,
            finished_at=run.finished_at or now,
            error_message=run.error_message,
            dashboard_url=run.dashboard_url,
            shown_id=run.shown_id,
        )
    )
    wait = run.queue_wait_seconds
    if wait is not None and not (tracked and tracked.queue_wait_observed):
        changes.observations.append(Observation(QUEUE_WAIT, workflow, "", wait))
    changes.counted.append((run.id, prune_key))
    if tracked is not None:
        changes.active_removals.add(run.id)


def _count_steps(run: Run, workflow: str, budget: StepBudget, changes: CycleChanges) -> None:
    changes.invalid_steps += run.invalid_steps
    for step in run.steps:
        label = budget.step(workflow, step.label)
        if label is None:
            continue  # the series budget is spent: counted as dropped, never a series
        changes.steps[(workflow, label, str(step.canonical))] += 1
        if step.duration_seconds is not None:
            changes.observations.append(
                Observation(STEP_DURATION, workflow, label, step.duration_seconds)
            )


def _finish_instant(run: Run, now: datetime) -> datetime:
    if run.finished_at is None or "finished_at" in run.day_only:
        # A day is no instant, and a missing end is only known to lie before now: the time the
        # run was counted stands in, so the gauge never claims a finish that did not yet happen.
        return now
    # A provider clock running ahead must not date a finish in the future: an alert on
    # time() - last_finished would wait that much longer to fire.
    return min(run.finished_at, now)


def _exact_start(run: Run) -> datetime | None:
    if run.started_at is not None:
        return None if "started_at" in run.day_only else run.started_at
    return run.created_at if run.created_exactly else None


def _count_parked_without_detail(
    tracked: ActiveRun, now: datetime, changes: CycleChanges, pairs: PairBudget
) -> None:
    status = tracked.status.value
    changes.finished[(tracked.workflow, status)] += 1
    changes.note_finish(tracked.workflow, status, now)
    duration = max(0.0, (now - tracked.created_at).total_seconds())
    changes.observations.append(
        Observation(DURATION, tracked.workflow, status, duration, tracked.shown, now.timestamp())
    )
    code = UNSPECIFIED_CODE
    if tracked.status in ERROR_STATUSES:
        code = pairs.code(tracked.workflow, UNSPECIFIED_CODE)
        changes.errors[(tracked.workflow, code)] += 1
    changes.finished_runs.append(
        FinishedRun(
            tracked.id,
            tracked.workflow,
            tracked.status,
            code,
            tracked.created_at,
            now,
            shown_id=tracked.shown_id,
        )
    )
    changes.counted.append((tracked.id, now))


def _track_active(
    run: Run,
    tracked: ActiveRun | None,
    workflows: LabelBudget,
    now: datetime,
    changes: CycleChanges,
) -> None:
    if tracked is not None and tracked.awaiting_detail and run.cursor_time <= tracked.cursor_time:
        return  # an older, unfinished sighting of a run already seen finished: keep it parked
    workflow = tracked.workflow if tracked else workflows.label(run.workflow_label, run.workflow_id)
    observed = tracked.queue_wait_observed if tracked else False
    wait = run.queue_wait_seconds
    if wait is not None and not observed:
        changes.observations.append(Observation(QUEUE_WAIT, workflow, "", wait))
        observed = True
    created = run.created_at
    if not run.created_exactly or created > now:
        # Only the day is known, or a clock ahead of ours dated it in the future: the age of the
        # run counts from when it was first seen.
        created = tracked.created_at if tracked else now
    changes.active_upserts[run.id] = ActiveRun(
        id=run.id,
        workflow=workflow,
        status=run.status,
        created_at=created,
        cursor_time=run.cursor_time,
        progress=run.progress,
        queue_wait_observed=observed,
        last_seen=now,
        workflow_id=run.workflow_id,
        shown_id=run.shown_id,
    )
