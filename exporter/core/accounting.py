"""The pure core that decides what to count. No I/O: the collector feeds it, the store persists it.

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

import hashlib
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from exporter.core.model import ERROR_STATUSES, UNSPECIFIED_CODE, Run, RunStatus
from exporter.core.units import DURATION, QUEUE_WAIT, STEP_DURATION

OTHER_LABEL = "other"
# Between a workflow's name and the suffix that tells it from another workflow of that name.
COLLISION_SEPARATOR = "~"
_SUFFIX_LENGTHS = (4, 8, 16)


@dataclass(frozen=True, slots=True)
class ActiveRun:
    """A run the source tracks because it has not reached a terminal status (or awaits detail).
    `id` is the run's key (`Run.id`)."""

    id: str
    workflow: str
    status: RunStatus
    created_at: datetime
    cursor_time: datetime
    progress: float | None = None
    queue_wait_observed: bool = False
    # Terminal, but the provider needs a detail lookup (failure reason) before it is counted.
    awaiting_detail: bool = False
    # When the run was last seen in any response; stale active runs are looked up oldest first.
    last_seen: datetime | None = None
    # The provider's workflow id (the label may be a name, or `other`): some APIs need it to
    # look a run up.
    workflow_id: str | None = None
    # The id as shown where it is not `id` (the run's key): see `Run.shown`.
    shown_id: str | None = None

    @property
    def shown(self) -> str:
        return self.id if self.shown_id is None else self.shown_id


@dataclass(frozen=True, slots=True)
class Cursor:
    """Per-source position in time, in the provider's clock."""

    baseline: datetime  # first start minus backfill: nothing finished before it is counted
    watermark: datetime  # newest cursor_time seen in a complete scan
    horizon: datetime  # counted ids finished before this are pruned

    @classmethod
    def first_start(cls, now: datetime, backfill: timedelta) -> Cursor:
        baseline = now - backfill
        return cls(baseline=baseline, watermark=baseline, horizon=baseline)

    @property
    def never_advanced(self) -> bool:
        """No scan has completed with a run in it yet (a first cycle, or one that failed)."""
        return self.watermark == self.baseline

    def scan_floor(self, overlap: timedelta) -> datetime:
        return max(self.baseline, self.watermark - overlap)

    def advanced(
        self, newest_seen: datetime | None, now: datetime, overlap: timedelta, retention: timedelta
    ) -> Cursor:
        if newest_seen is None:
            return self
        # A provider clock running ahead must not push the watermark past our own now: the scan
        # floor trails the watermark by the overlap, which must stay below every run that may
        # still be listed late.
        watermark = max(self.watermark, min(newest_seen, now))
        horizon = max(self.horizon, watermark - retention)
        return replace(self, watermark=watermark, horizon=horizon)


class SeriesBudget:
    """The process-wide bound on exported series, shared by every source (thread-safe).

    Admitting a new label value reserves the series it will create; once the budget is spent,
    new values fold into `other` instead.
    """

    def __init__(self, limit: int, used: int = 0) -> None:
        self.limit = limit
        self.used = used
        self._lock = threading.Lock()

    def reserve(self, series: int) -> bool:
        with self._lock:
            if self.used + series > self.limit:
                return False
            self.used += series
            return True

    def release(self, series: int) -> None:
        with self._lock:
            self.used = max(0, self.used - series)


class SeriesTab:
    """One decision's reservations on the shared budget, kept count of so that a decision whose
    commit fails (a full disk) gives them back: its values are admitted again by the cycle that
    does commit, and would otherwise hold the budget twice."""

    def __init__(self, budget: SeriesBudget) -> None:
        self._budget = budget
        self.taken = 0

    def reserve(self, series: int) -> bool:
        if not self._budget.reserve(series):
            return False
        self.taken += series
        return True


class LabelBudget:
    """Admits label values up to a bound per source (and within the process's series budget,
    each new value reserving `cost` series); later values fold into `other`.

    Given owners (the workflow label: which workflow id each value stands for), a value is one
    workflow's: another id whose name reads the same (two workflows named alike, or ids that
    differ only in what cleaning removed) gets the value with a short suffix derived from its id
    (`Invoices~3fa2`), so two workflows stay two series; the suffixed value is admitted like any
    other, within the same bound. The first id to be counted under a value owns it for good (the
    owners are kept with the state), so a restart never moves a workflow to another series."""

    def __init__(
        self,
        admitted: Iterable[str],
        limit: int,
        series: SeriesBudget | SeriesTab | None = None,
        cost: int = 0,
        owners: Mapping[str, str] | None = None,
    ) -> None:
        self.admitted = set(admitted)
        self.limit = limit
        self.newly_admitted: list[str] = []
        self.dropped = 0
        self._series = series
        self._cost = cost
        self.owners = dict(owners or {})
        self.newly_owned: dict[str, str] = {}
        self.collisions: list[tuple[str, str, str]] = []

    def label(self, value: str, owner: str | None = None) -> str:
        if owner is None:
            return self._admit(value)
        label = self._admit(self._owned_value(value, owner))
        if label != OTHER_LABEL and label not in self.owners:
            self.owners[label] = owner
            self.newly_owned[label] = owner
            if label != value:
                self.collisions.append((value, owner, self.owners[value]))
        return label

    def _owned_value(self, value: str, owner: str) -> str:
        """`value` where it is free or `owner`'s own, else `value` with the shortest suffix of
        `owner`'s digest that no other id holds."""
        holder = self.owners.get(value)
        if holder is None or holder == owner:
            return value
        digest = hashlib.sha256(owner.encode("utf-8")).hexdigest()
        for length in _SUFFIX_LENGTHS:
            candidate = f"{value}{COLLISION_SEPARATOR}{digest[:length]}"
            if self.owners.get(candidate) in (None, owner):
                return candidate
        return f"{value}{COLLISION_SEPARATOR}{digest}"  # 256 bits: never held by another

    def _admit(self, value: str) -> str:
        if value in self.admitted:
            return value
        within_source = len(self.admitted - {OTHER_LABEL}) < self.limit
        if within_source and (self._series is None or self._series.reserve(self._cost)):
            self.admitted.add(value)
            self.newly_admitted.append(value)
            return value
        self.dropped += 1
        if OTHER_LABEL not in self.admitted:
            # Remembered like any value, so its series are pre-created from now on.
            self.admitted.add(OTHER_LABEL)
            self.newly_admitted.append(OTHER_LABEL)
        return OTHER_LABEL


class PairBudget:
    """(workflow, code) pairs of the errors counter: each new pair is one more series."""

    def __init__(
        self, known: Iterable[tuple[str, str]], series: SeriesBudget | SeriesTab | None
    ) -> None:
        self.known = set(known)
        self._series = series
        self.dropped = 0
        self.newly_known: list[tuple[str, str]] = []

    def code(self, workflow: str, code: str) -> str:
        if (workflow, code) in self.known:
            return code
        if code != OTHER_LABEL and self._series is not None and not self._series.reserve(1):
            self.dropped += 1
            code = OTHER_LABEL
        # `other` itself is admitted past the budget: one series per workflow at most.
        if (workflow, code) not in self.known:
            self.known.add((workflow, code))
            self.newly_known.append((workflow, code))
        return code


class StepBudget:
    """(workflow, step) pairs of the steps counter: up to `limit` steps per workflow, each new
    one reserving its series (`cost`: every step status and its duration histogram); later
    steps fold into the workflow's `other` step. A workflow's first step also reserves its
    `other`, so folding never overshoots the budget; a workflow whose first step finds the
    budget spent gets no step series at all (its steps are counted as dropped)."""

    def __init__(
        self,
        known: Iterable[tuple[str, str]],
        limit: int,
        series: SeriesBudget | SeriesTab | None = None,
        cost: int = 0,
    ) -> None:
        self.known = set(known)
        self.limit = limit
        self._series = series
        self._cost = cost
        self._per_workflow: Counter[str] = Counter(
            workflow for workflow, step in self.known if step != OTHER_LABEL
        )
        # Workflows whose `other` step is reserved (or admitted): known ones were, when admitted.
        self._reserved = {workflow for workflow, _step in self.known}
        self.dropped = 0
        self.newly_known: list[tuple[str, str]] = []

    def step(self, workflow: str, step: str) -> str | None:
        """The label to count the step under; None when it cannot have a series at all."""
        if (workflow, step) in self.known:
            return step
        if self._per_workflow[workflow] < self.limit and self._reserve(workflow):
            self._admit(workflow, step)
            self._per_workflow[workflow] += 1
            return step
        self.dropped += 1
        if workflow not in self._reserved:
            return None
        if (workflow, OTHER_LABEL) not in self.known:
            self._admit(workflow, OTHER_LABEL)
        return OTHER_LABEL

    def _reserve(self, workflow: str) -> bool:
        first = workflow not in self._reserved
        if self._series is not None and not self._series.reserve(self._cost * (2 if first else 1)):
            return False
        self._reserved.add(workflow)
        return True

    def _admit(self, workflow: str, step: str) -> None:
        self.known.add((workflow, step))
        self.newly_known.append((workflow, step))


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
    prune_key = run.finished_by or run.cursor_time
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
    status = run.status.value
    changes.finished[(workflow, status)] += 1
    duration = run.effective_duration_seconds
    start = _exact_start(run)
    if duration is None and start is not None and run.finished_at is None:
        # No end time given: it ended by now, so now - start bounds it. Observing every finished
        # run keeps each histogram's _count equal to its counter. An end time that was given
        # but contradicts the start is no such case: nothing is observed rather than a guess.
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
        changes.steps[(workflow, label, step.canonical.value)] += 1
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
