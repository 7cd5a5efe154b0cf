"""A seeded, evolving world of workflow runs, shared by every provider's simulator.

The world knows lifecycle stages (queued, running, review, succeeded, ...); each provider names
them in its own vocabulary (`Vocabulary`) and renders runs in its own wire format. Everything is
deterministic from the seed, and the world's clock only moves when `advance()` is called, so tests
drive it exactly.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from exporter.core.model import TERMINAL_STATUSES, RunStatus, StepStatus

ERROR_CODES = ("UNSUPPORTED_DOCUMENT", "WORKFLOW_RUN_FAILED", "TIMEOUT", "EXTRACTION_FAILED")
WORKFLOW_NAMES = (
    "Invoices",
    "Bank statements",
    "Insurance claims",
    "Purchase orders",
    "KYC documents",
    "Receipts",
    "Contracts",
    "Payslips",
)


@dataclass(frozen=True)
class Vocabulary:
    """How one provider names the lifecycle stages, and its canonical table."""

    queued: str
    running: str
    succeeded: str
    failed: str
    cancelled: str
    table: Mapping[str, RunStatus]
    review: str | None = None  # a run waiting on a human
    rejected: str | None = None
    skipped: str | None = None
    error_codes: bool = True  # False: the API exposes no code (truth uses `unspecified`)
    # True: rejected runs carry a code drawn like failed ones' (Plextera's `error` on rejections).
    rejection_codes: bool = False
    # Steps as this API shows them: the label of step i (cycled; empty: the runs carry no
    # steps), each canonical step status's native word, and the provider's table back.
    step_labels: tuple[str, ...] = ()
    step_names: Mapping[StepStatus, str] = field(default_factory=dict)
    step_table: Mapping[str, StepStatus] = field(default_factory=dict)
    step_times: bool = False  # steps carry their start and end (Cortex)

    def canonical(self, native: str) -> RunStatus:
        return self.table.get(native, RunStatus.UNKNOWN)

    def step_label(self, index: int) -> str:
        return self.step_labels[index % len(self.step_labels)]

    def step_native(self, state: StepStatus) -> str:
        return self.step_names[state]

    def step_canonical(self, state: StepStatus) -> StepStatus:
        """What a client reading this API makes of a step in `state`."""
        return self.step_table.get(self.step_names[state], StepStatus.UNKNOWN)


@dataclass(frozen=True)
class SimWorkflow:
    id: str
    name: str


# How the world's API numbers runs: `global` ids are unique in the whole app; `per_workflow` ids
# count within each workflow (`1`, `2`, ... in every one, as an API that addresses runs only
# under their workflow may), so two runs of two workflows share an id; `control_chars` ids come
# in pairs that differ only in a control character (`run-7\x01`, `run-7\x02`).
RunIds = Literal["global", "per_workflow", "control_chars"]


@dataclass
class SimRun:
    id: str  # the API's id: unique only as the world's `run_ids` promise
    workflow: SimWorkflow
    native_status: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    steps_total: int = 3
    steps_completed: int = 0
    error_code: str | None = None
    error_message: str | None = None
    duration_ms: int | None = None
    # Planned lifecycle, in simulated seconds from creation.
    start_after: float = 0.0
    run_for: float = 0.0
    review_for: float | None = None
    outcome: str = "succeeded"
    # Fixed when the run finishes (None while it runs: then `step_states` derives them).
    final_steps: tuple[StepStatus, ...] | None = None
    # (start, end) of each step of a finished run; None where the step never started or ended.
    step_spans: tuple[tuple[datetime | None, datetime | None], ...] = ()
    # The API sends this run's step list garbled (not a list): a client counts it invalid.
    steps_broken: bool = False
    # Nested runs (Plextera): shown inside this run's first step; a hidden run is in no list, so
    # no truth a client of the lists can know includes it.
    children: list[str] = field(default_factory=list)
    hidden: bool = False
    # The world's own key for the run (`World.runs`): its id, unless ids repeat (`per_workflow`).
    key: str = ""

    def __post_init__(self) -> None:
        self.key = self.key or self.id

    @property
    def progress(self) -> float:
        return self.steps_completed / self.steps_total if self.steps_total else 0.0

    def step_states(self) -> tuple[StepStatus, ...]:
        if self.final_steps is not None:
            return self.final_steps
        return tuple(
            StepStatus.SUCCEEDED
            if index < self.steps_completed
            else StepStatus.UNFINISHED
            if index == self.steps_completed and self.started_at is not None
            else StepStatus.NOT_STARTED
            for index in range(self.steps_total)
        )

    def settle_steps(self, status: RunStatus) -> None:
        """Each step's end as the run ends: a failed or cancelled run stops at the step it was
        in (later steps never start), a skipped one skips them all, the others complete them."""
        total = self.steps_total
        at = min(self.steps_completed, total - 1) if total else 0
        states: list[StepStatus] = []
        for index in range(total):
            if status is RunStatus.SKIPPED:
                states.append(StepStatus.SKIPPED)
            elif status in (RunStatus.FAILED, RunStatus.CANCELLED):
                stopped = StepStatus.FAILED if status is RunStatus.FAILED else StepStatus.CANCELLED
                states.append(
                    StepStatus.SUCCEEDED
                    if index < at
                    else stopped
                    if index == at
                    else StepStatus.NOT_STARTED
                )
            else:
                states.append(StepStatus.SUCCEEDED)
        self.final_steps = tuple(states)
        ran = [i for i, state in enumerate(states) if state not in _NEVER_RAN]
        began, ended = self.started_at, self.finished_at
        spans: list[tuple[datetime | None, datetime | None]] = [(None, None)] * total
        if began is not None and ended is not None and ran:
            width = (ended - began) / len(ran)
            for order, index in enumerate(ran):
                spans[index] = (began + width * order, began + width * (order + 1))
        self.step_spans = tuple(spans)

    def reopen_steps(self) -> None:
        self.final_steps = None
        self.step_spans = ()


_NEVER_RAN = frozenset({StepStatus.NOT_STARTED, StepStatus.SKIPPED})


@dataclass
class GroundTruth:
    finished: Counter[tuple[str, str]] = field(default_factory=Counter)
    active: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    runs: int = 0
    # (workflow, step, step status) over the steps of finished runs; the same over failed runs
    # only (what a client that sees steps only in failed runs' details can know); and
    # (workflow, step) -> steps that carry a start and an end.
    steps: Counter[tuple[str, ...]] = field(default_factory=Counter)
    failed_run_steps: Counter[tuple[str, ...]] = field(default_factory=Counter)
    step_durations: Counter[tuple[str, ...]] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        def rows(counter: Mapping[Any, int]) -> list[list[Any]]:
            return [[*key, n] for key, n in sorted(counter.items())]

        return {
            "finished": rows(self.finished),
            "active": rows(self.active),
            "errors": rows(self.errors),
            "runs": self.runs,
            "steps": rows(self.steps),
            "failed_run_steps": rows(self.failed_run_steps),
            "step_durations": rows(self.step_durations),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GroundTruth:
        def counter(rows: list[list[Any]]) -> Counter[tuple[str, str]]:
            return Counter({(str(a), str(b)): int(n) for a, b, n in rows})

        def keyed(rows: list[list[Any]]) -> Counter[tuple[str, ...]]:
            return Counter({tuple(str(v) for v in row[:-1]): int(row[-1]) for row in rows})

        return cls(
            counter(data["finished"]),
            counter(data["active"]),
            counter(data["errors"]),
            int(data["runs"]),
            keyed(data.get("steps", [])),
            keyed(data.get("failed_run_steps", [])),
            keyed(data.get("step_durations", [])),
        )


class World:
    def __init__(
        self,
        vocabulary: Vocabulary,
        *,
        seed: int = 1,
        workflows: int = 4,
        arrival_rate_per_min: float = 6.0,
        start: datetime | None = None,
        nested_every: int = 0,
        nested_hidden: bool = False,
        run_ids: RunIds = "global",
    ) -> None:
        self.vocabulary = vocabulary
        # Every `nested_every`-th run is a nested run of the one created before it.
        self.nested_every = nested_every
        self.nested_hidden = nested_hidden
        self._created = 0
        self._last_created: SimRun | None = None
        self.rng = random.Random(seed)
        self.arrival_rate_per_min = arrival_rate_per_min
        self.lock = threading.RLock()
        self._now = (start or datetime.now(tz=UTC)).replace(microsecond=0)
        self.workflows = [
            SimWorkflow(self._uuid(), WORKFLOW_NAMES[i % len(WORKFLOW_NAMES)] + _suffix(i))
            for i in range(workflows)
        ]
        # Every run by its key (`SimRun.key`: its id where ids are unique).
        self.runs: dict[str, SimRun] = {}
        # Runs that can still change by themselves: a large world evolves only these.
        self._live: dict[str, SimRun] = {}
        self.deleted_finished: list[SimRun] = []
        self._arrival_debt = 0.0
        self._changes = 0
        self._sort_cache: dict[str, tuple[int, list[SimRun], list[tuple[float, str]]]] = {}
        # Called after each step of `advance` with the step's seconds (a scripted incident).
        self.on_advance: list[Callable[[World, float], None]] = []
        # Where runs come from (Cortex's `origin`), spread over these by run id: no random draw,
        # so setting it leaves every other property of the world as it was.
        self.origins: tuple[str, ...] = ("WORKFLOW",)
        # Called (under the lock) as each run finishes: the simulators' webhook senders.
        self.finish_listeners: list[Callable[[SimRun], None]] = []
        # How the API numbers runs (`RunIds`); the world keys them by `SimRun.key` whatever it
        # is, so the truth counts every run even where two share an id.
        self.run_ids = run_ids
        self._per_workflow: Counter[str] = Counter()

    # Time -----------------------------------------------------------------------------------

    def now(self) -> datetime:
        with self.lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Moves simulated time forward in steps, evolving every run and letting new ones arrive."""
        with self.lock:
            remaining = seconds
            while remaining > 0:
                step = min(remaining, 30.0)
                remaining -= step
                self._now += timedelta(seconds=step)
                self._arrive(step)
                for run in list(self._live.values()):
                    self._evolve(run)
                for hook in self.on_advance:
                    hook(self, step)

    def _arrive(self, seconds: float) -> None:
        self._arrival_debt += self.arrival_rate_per_min * seconds / 60.0
        while self._arrival_debt >= 1.0:
            self._arrival_debt -= 1.0
            self._new_run(self._now)

    # Runs -------------------------------------------------------------------------------------

    def add_runs(
        self, n: int, *, workflow: str | None = None, native_status: str | None = None
    ) -> list[SimRun]:
        with self.lock:
            created = []
            for _ in range(n):
                run = self._new_run(self.now(), workflow)
                if native_status is not None:
                    self.set_status(run.key, native_status)
                created.append(run)
            return created

    def add_workflow(self, name: str) -> SimWorkflow:
        with self.lock:
            workflow = SimWorkflow(self._uuid(), name)
            self.workflows.append(workflow)
            return workflow

    def finish(self, key: str, native_status: str, error_code: str | None = None) -> SimRun:
        """`key`: the run's `SimRun.key` (its id, unless ids repeat), as for every method here."""
        with self.lock:
            run = self.runs[key]
            now = self.now()
            run.started_at = run.started_at or now
            run.finished_at = now
            self._live.pop(key, None)
            run.native_status = native_status
            run.updated_at = now
            self._changes += 1
            run.duration_ms = int((now - run.started_at).total_seconds() * 1000)
            status = self.vocabulary.canonical(native_status)
            run.settle_steps(status)
            if status is RunStatus.FAILED or (
                status is RunStatus.REJECTED and self.vocabulary.rejection_codes
            ):
                run.error_code = error_code or self.rng.choice(ERROR_CODES)
                what = "step failed" if status is RunStatus.FAILED else "run rejected"
                run.error_message = f"{what}: {run.error_code.lower().replace('_', ' ')}"
            else:
                # A run failed earlier and finished again differently carries no stale error.
                run.error_code = run.error_message = None
            for listener in self.finish_listeners:
                listener(run)
            return run

    def set_status(self, key: str, native_status: str) -> SimRun:
        with self.lock:
            run = self.runs[key]
            if self.vocabulary.canonical(native_status) in TERMINAL_STATUSES:
                return self.finish(key, native_status)
            run.native_status = native_status
            run.updated_at = self.now()
            self._changes += 1
            if native_status == self.vocabulary.running and run.started_at is None:
                run.started_at = self.now()
            if run.finished_at is not None:
                # Reopened: an active run has no end, and it evolves again from here.
                run.finished_at = None
                run.duration_ms = None
                run.error_code = run.error_message = None
                run.reopen_steps()
                self._live[run.key] = run
            return run

    def delete(self, key: str) -> None:
        with self.lock:
            run = self.runs.pop(key, None)
            self._changes += 1
            self._live.pop(key, None)
            if run is not None and self._has_finished(run):
                # It finished and stays finished: the truth keeps counting it.
                self.deleted_finished.append(run)

    def delete_settled(self, min_age_seconds: float) -> SimRun | None:
        """Deletes a random run that finished at least this long ago (long enough for a client
        polling every few seconds to have counted it), as a user cleaning up would."""
        with self.lock:
            cutoff = self._now - timedelta(seconds=min_age_seconds)
            settled = [
                r
                for r in self.runs.values()
                if r.finished_at is not None and r.finished_at <= cutoff
            ]
            if not settled:
                return None
            run = self.rng.choice(sorted(settled, key=lambda r: r.key))
            self.delete(run.key)
            return run

    def delete_active(self) -> SimRun | None:
        """Deletes a random run that has not finished (a user removing a queued or stuck run):
        it never finished, so no truthful count includes it, whenever a client looks."""
        with self.lock:
            live = [r for r in self._live.values() if r.key in self.runs]
            if not live:
                return None
            run = self.rng.choice(sorted(live, key=lambda r: r.key))
            self.delete(run.key)
            return run

    def forget_finished_before(self, cutoff: datetime) -> int:
        """Drops runs that finished before `cutoff`, without a trace (a platform's own retention;
        used by soak runs, whose truth is not compared)."""
        with self.lock:
            old = [r.key for r in self.runs.values() if r.finished_at and r.finished_at < cutoff]
            for key in old:
                del self.runs[key]
            self._changes += 1
            return len(old)

    def runs_newest_first(self) -> list[SimRun]:
        return self.sorted_ascending("created")[0][::-1]

    def runs_by_update(self) -> list[SimRun]:
        return self.sorted_ascending("updated")[0][::-1]

    def sorted_ascending(self, by: str) -> tuple[list[SimRun], list[tuple[float, str]]]:
        """Runs in ascending (timestamp, key) order with those pairs, cached until the world
        changes: a large static world (benchmarks) serves every page without sorting again."""
        with self.lock:
            cached = self._sort_cache.get(by)
            if cached is not None and cached[0] == self._changes:
                return cached[1], cached[2]
            field = "created_at" if by == "created" else "updated_at"
            keyed = sorted(((getattr(r, field).timestamp(), r.key), r) for r in self.runs.values())
            runs = [run for _, run in keyed]
            keys = [key for key, _ in keyed]
            self._sort_cache[by] = (self._changes, runs, keys)
            return runs, keys

    def touch(self) -> None:
        """Marks the world changed (for callers that edit runs directly)."""
        with self.lock:
            self._changes += 1

    def origin_of(self, run: SimRun) -> str:
        return self.origins[zlib.crc32(run.id.encode()) % len(self.origins)]

    def truth(self, origins: Collection[str] | None = None) -> GroundTruth:
        """What a client should count; `origins`: of the runs from those origins only."""
        with self.lock:
            truth = GroundTruth(runs=sum(1 for run in self.runs.values() if not run.hidden))
            for run in [*self.runs.values(), *self.deleted_finished]:
                if run.hidden:
                    continue
                status = self.vocabulary.canonical(run.native_status)
                key = (run.workflow.name, status.value)
                if origins is not None and self.origin_of(run) not in origins:
                    continue
                if not self._has_finished(run):
                    truth.active[key] += 1
                    continue
                truth.finished[key] += 1
                self._step_truth(run, status, truth)
                # A rejected run counts as an error too (a project decision), with its code only
                # where the API exposes one for rejections.
                if status is RunStatus.FAILED or status is RunStatus.REJECTED:
                    exposed = (
                        self.vocabulary.error_codes
                        if status is RunStatus.FAILED
                        else self.vocabulary.rejection_codes
                    )
                    code = run.error_code if exposed else None
                    truth.errors[(run.workflow.name, code or "unspecified")] += 1
            return truth

    def _step_truth(self, run: SimRun, status: RunStatus, truth: GroundTruth) -> None:
        v = self.vocabulary
        if not v.step_labels or run.steps_broken:
            return
        for index, state in enumerate(run.step_states()):
            label = v.step_label(index)
            key = (run.workflow.name, label, v.step_canonical(state).value)
            truth.steps[key] += 1
            if status is RunStatus.FAILED:
                truth.failed_run_steps[key] += 1
            spans = run.step_spans
            if v.step_times and index < len(spans) and None not in spans[index]:
                truth.step_durations[(run.workflow.name, label)] += 1

    def break_steps(self, n: int) -> list[SimRun]:
        """Garbles the step lists of `n` runs (the API then sends a string for them)."""
        with self.lock:
            chosen = sorted(self.runs.values(), key=lambda r: r.key)[:n]
            for run in chosen:
                run.steps_broken = True
            self._changes += 1
            return chosen

    def _has_finished(self, run: SimRun) -> bool:
        """Terminal, or in a status the vocabulary does not know but with an end time: a client
        that sees the end time knows the run is over, whatever its status is called."""
        status = self.vocabulary.canonical(run.native_status)
        if status is RunStatus.UNKNOWN:
            return run.finished_at is not None
        return status in TERMINAL_STATUSES

    def truth_json(self) -> str:
        return json.dumps(self.truth().as_json())

    # Internals --------------------------------------------------------------------------------

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _new_run(self, at: datetime, workflow_name: str | None = None) -> SimRun:
        workflow = next(
            (w for w in self.workflows if w.name == workflow_name), None
        ) or self.rng.choice(self.workflows)
        roll = self.rng.random()
        outcome = (
            "failed"
            if roll < 0.15
            else "cancelled"
            if roll < 0.2
            else "rejected"
            if roll < 0.23 and self.vocabulary.rejected
            else "skipped"
            if roll < 0.26 and self.vocabulary.skipped
            else "succeeded"
        )
        review_for = None
        if self.vocabulary.review and self.rng.random() < 0.15:
            review_for = self.rng.uniform(300, 3600)
        drawn = self._uuid()
        api_id = self._api_id(drawn, workflow)
        run = SimRun(
            id=api_id,
            # Ids that repeat cannot be keys: the drawn uuid is (the API never shows it).
            key=drawn if self.run_ids == "per_workflow" else api_id,
            workflow=workflow,
            native_status=self.vocabulary.queued,
            created_at=at,
            updated_at=at,
            steps_total=self.rng.randint(1, 5),
            start_after=self.rng.expovariate(1 / 20),
            # Long-tailed: most runs take a minute or two, some most of an hour.
            run_for=min(3600.0, self.rng.lognormvariate(4.5, 0.8)),
            review_for=review_for,
            outcome=outcome,
        )
        self.runs[run.key] = run
        self._changes += 1
        self._live[run.key] = run
        self._created += 1
        parent = self._last_created
        if self.nested_every and self._created % self.nested_every == 0 and parent is not None:
            parent.children.append(run.id)
            run.hidden = self.nested_hidden
        self._last_created = run
        return run

    def _evolve(self, run: SimRun) -> None:
        v = self.vocabulary
        status = v.canonical(run.native_status)
        if status in TERMINAL_STATUSES or status is RunStatus.UNKNOWN:
            return
        age = (self._now - run.created_at).total_seconds()
        if status is RunStatus.QUEUED and age >= run.start_after:
            run.native_status = v.running
            run.started_at = run.created_at + timedelta(seconds=run.start_after)
            run.updated_at = self._now
            self._changes += 1
            return
        if status is RunStatus.RUNNING and run.started_at is not None:
            elapsed = (self._now - run.started_at).total_seconds()
            done = min(run.steps_total, int(run.steps_total * elapsed / max(run.run_for, 1)))
            if done != run.steps_completed:
                run.steps_completed = done
                run.updated_at = self._now
                self._changes += 1
            if elapsed < run.run_for:
                return
            if run.review_for is not None and v.review:
                run.native_status = v.review
                run.updated_at = self._now
                self._changes += 1
                return
            self._complete(run)
            return
        if status is RunStatus.NEEDS_REVIEW and run.started_at is not None:
            waited = (self._now - run.started_at).total_seconds() - run.run_for
            if waited >= (run.review_for or 0):
                self._complete(run)

    def _api_id(self, drawn: str, workflow: SimWorkflow) -> str:
        """The id the API gives a new run (`run_ids`); `drawn`: the uuid drawn for it."""
        if self.run_ids == "per_workflow":
            self._per_workflow[workflow.id] += 1
            return f"run-{self._per_workflow[workflow.id]}"
        if self.run_ids == "control_chars":
            pair, second = divmod(self._created, 2)
            return f"run-{pair}{chr(1 + second)}"
        return drawn

    def run_of(self, run_id: str, workflow_id: str | None = None) -> SimRun | None:
        """The run the API's id `run_id` names (within `workflow_id`, where ids repeat)."""
        with self.lock:
            if self.run_ids != "per_workflow":
                return self.runs.get(run_id)
            return next(
                (
                    run
                    for run in self.runs.values()
                    if run.id == run_id and run.workflow.id == workflow_id
                ),
                None,
            )

    def _complete(self, run: SimRun) -> None:
        v = self.vocabulary
        native = {
            "succeeded": v.succeeded,
            "failed": v.failed,
            "cancelled": v.cancelled,
            "rejected": v.rejected or v.succeeded,
            "skipped": v.skipped or v.succeeded,
        }[run.outcome]
        self.finish(run.key, native)
        if run.outcome == "succeeded":
            run.steps_completed = run.steps_total


def _suffix(index: int) -> str:
    return "" if index < len(WORKFLOW_NAMES) else f" {index // len(WORKFLOW_NAMES) + 1}"
