"""A seeded, evolving world of workflow runs, shared by every provider's simulator.

The world knows lifecycle stages (queued, running, review, succeeded, ...); each provider names
them in its own vocabulary (`Vocabulary`) and renders runs in its own wire format. Everything is
deterministic from the seed, and the world's clock only moves when `advance()` is called, so tests
drive it exactly.

Over 300 lines with no named split: every method moves or reads the one set of runs and its
clock; wire formats, truth and records already live apart.
"""

from __future__ import annotations

import random
import threading
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta

from exporter.core.model import TERMINAL_STATUSES, RunStatus
from exporter.simulator.records import RunIds, SimRun, SimWorkflow, Vocabulary
from exporter.simulator.truth import GroundTruth, count_truth, has_finished

ERROR_CODES = ("UNSUPPORTED_DOCUMENT", "WORKFLOW_RUN_FAILED", "TIMEOUT", "EXTRACTION_FAILED")
STEADY_FAILURE_RATIO = 0.001
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
        # Workflows that fail one run in a thousand instead of one in six or so (the demo's SLO
        # workflow, whose objective the usual failures would spend at once).
        self.steady_workflows: set[str] = set()
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
            if run is not None and has_finished(self.vocabulary, run):
                # It finished and stays finished: the truth keeps counting it.
                self.deleted_finished.append(run)

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
            return count_truth(
                self.vocabulary,
                list(self.runs.values()),
                self.deleted_finished,
                self.origin_of,
                origins,
            )

    def break_steps(self, n: int) -> list[SimRun]:
        """Garbles the step lists of `n` runs (the API then sends a string for them)."""
        with self.lock:
            chosen = sorted(self.runs.values(), key=lambda r: r.key)[:n]
            for run in chosen:
                run.steps_broken = True
            self._changes += 1
            return chosen

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
        if workflow.name in self.steady_workflows and outcome in ("failed", "rejected"):
            outcome = "failed" if roll < STEADY_FAILURE_RATIO else "succeeded"
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
