"""Helpers for the pure-core tests: canonical runs at fixed times, an in-memory state that
applies `decide`'s changes the way the store does (removals first, then upserts), and one cycle
against a real store, wired as the collector wires it (without a provider)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from exporter.core.accounting import CycleChanges, Observation, decide, merge_sighting
from exporter.core.budgets import LabelBudget
from exporter.core.model import Run, RunStatus
from exporter.core.tracking import ActiveRun, Cursor
from exporter.core.units import DURATION, QUEUE_WAIT
from exporter.state.store import Store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """A point in time `seconds` after T0 (negative: before)."""
    return T0 + timedelta(seconds=seconds)


def make_run(
    run_id: str = "run-1",
    *,
    status: RunStatus = RunStatus.RUNNING,
    workflow: str = "Invoices",
    created: float = 0.0,
    started: float | None = None,
    finished: float | None = None,
    cursor: float | None = None,
    duration: float | None = None,
    progress: float | None = None,
    error_code: str | None = None,
    needs_detail: bool = False,
) -> Run:
    """A canonical run; times are seconds after T0, `cursor` defaults to the creation time."""
    return Run(
        id=run_id,
        workflow_id=f"id-{workflow}",
        workflow_name=workflow,
        status=status,
        native_status=status.value.upper(),
        created_at=at(created),
        cursor_time=at(created if cursor is None else cursor),
        started_at=None if started is None else at(started),
        finished_at=None if finished is None else at(finished),
        duration_seconds=duration,
        progress=progress,
        error_code=error_code,
        needs_detail=needs_detail,
    )


def wide_cursor() -> Cursor:
    """A cursor whose baseline and horizon lie a day before T0: nothing in the tests is too old."""
    return Cursor.first_start(T0, timedelta(days=1))


@dataclass
class CoreState:
    """What the store keeps for one source, in memory, fed through `decide`."""

    cursor: Cursor = field(default_factory=wide_cursor)
    max_workflows: int = 200
    max_codes: int = 50
    active: dict[str, ActiveRun] = field(default_factory=dict)
    counted: set[str] = field(default_factory=set)
    workflows: set[str] = field(default_factory=set)
    codes: set[str] = field(default_factory=set)
    finished: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    observations: list[Observation] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)

    def cycle(
        self, sightings: Iterable[Run], now: datetime, vanished: Iterable[str] = ()
    ) -> CycleChanges:
        """Dedupes the sightings as the collector does, decides, and applies the changes."""
        seen: dict[str, Run] = {}
        for run in sightings:
            merge_sighting(seen, run)
        changes = decide(
            runs=seen.values(),
            vanished=vanished,
            active=dict(self.active),
            counted={run_id for run_id in seen if run_id in self.counted},
            cursor=self.cursor,
            workflows=LabelBudget(self.workflows, self.max_workflows),
            codes=LabelBudget(self.codes, self.max_codes),
            now=now,
        )
        self.apply(changes)
        return changes

    def apply(self, changes: CycleChanges) -> None:
        new_ids = [run_id for run_id, _ in changes.counted]
        # The store's primary key would refuse these; fail here with a clearer message.
        assert len(new_ids) == len(set(new_ids)), f"counted twice in one cycle: {new_ids}"
        again = set(new_ids) & self.counted
        assert not again, f"counted again: {sorted(again)}"
        self.counted.update(new_ids)
        for run_id in changes.active_removals:
            self.active.pop(run_id, None)
        self.active.update(changes.active_upserts)
        self.workflows.update(changes.new_workflows)
        self.codes.update(changes.new_codes)
        self.finished.update(changes.finished)
        self.errors.update(changes.errors)
        self.observations.extend(changes.observations)
        self.dropped.update(changes.dropped_labels)

    def observed(self, metric: str) -> list[Observation]:
        return [obs for obs in self.observations if obs.metric == metric]

    @property
    def durations(self) -> list[Observation]:
        return self.observed(DURATION)

    @property
    def queue_waits(self) -> list[Observation]:
        return self.observed(QUEUE_WAIT)


def cycle_into(
    store: Store,
    source: str,
    runs: Iterable[Run],
    now: datetime,
    *,
    provider: str = "plextera",
    cursor: Cursor | None = None,
    max_workflows: int = 200,
) -> CycleChanges:
    """Dedupes, decides against what the store holds, and commits, as one collection cycle."""
    seen: dict[str, Run] = {}
    for run in runs:
        merge_sighting(seen, run)
    cursor = cursor or store.cursor(source) or wide_cursor()
    changes = decide(
        runs=seen.values(),
        active=store.active(source),
        counted=store.counted_among(source, seen),
        cursor=cursor,
        workflows=LabelBudget(store.labels(source, "workflow"), max_workflows),
        codes=LabelBudget(store.labels(source, "code"), 50),
        now=now,
    )
    store.apply(source, provider, changes, cursor)
    return changes
