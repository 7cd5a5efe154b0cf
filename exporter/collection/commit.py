"""The decide-and-commit a poll and a hint share: which runs the source's filters keep, what the
pure accounting core decides of them within the label and series budgets, and the one transaction
that writes it (with the alerting agent's part) before the reporting says what was counted."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from exporter.collection.context import SourceContext
from exporter.collection.reporting import CycleReporting
from exporter.core.accounting import (
    OTHER_LABEL,
    ActiveRun,
    Cursor,
    CycleChanges,
    LabelBudget,
    PairBudget,
    SeriesTab,
    StepBudget,
    decide,
)
from exporter.core.errors import StateWriteError
from exporter.core.model import Run


class Commit:
    def __init__(self, context: SourceContext, reporting: CycleReporting) -> None:
        self._context = context
        self._reporting = reporting

    def admits(self, run: Run, verdicts: dict[tuple[str, str | None], bool]) -> bool:
        # Many runs share few workflows: each workflow is matched against the patterns once.
        key = (run.workflow_id, run.workflow_name)
        wanted = verdicts.get(key)
        if wanted is None:
            wanted = verdicts[key] = self._context.settings.workflows.admits(*key)
        return wanted and self._context.provider.admits(run)

    def screen(
        self, seen: dict[str, Run], active: dict[str, ActiveRun]
    ) -> tuple[dict[str, Run], dict[str, ActiveRun], set[str]]:
        """The runs this source counts, the active runs it still tracks, and the ids of active
        runs to let go: a filter changed by a reload takes them off the active gauges, and what
        was counted stays counted."""
        verdicts: dict[tuple[str, str | None], bool] = {}
        kept = {run_id: run for run_id, run in seen.items() if self.admits(run, verdicts)}
        workflows = self._context.settings.workflows
        # A run read this cycle is judged by what was read; one not read, by what was stored:
        # its label is the workflow's name where it has one (`other`: folded, name unknown).
        let_go = {
            a.id
            for a in active.values()
            if a.id not in kept
            and (
                a.id in seen
                or not workflows.admits(
                    a.workflow_id, None if a.workflow == OTHER_LABEL else a.workflow
                )
            )
        }
        if not let_go:
            return kept, active, let_go
        return kept, {i: a for i, a in active.items() if i not in let_go}, let_go

    def decide(
        self,
        seen: dict[str, Run],
        vanished: list[str],
        active: dict[str, ActiveRun],
        counted: set[str],
        cursor: Cursor,
        now: datetime,
        without_detail: Collection[str] = (),
    ) -> CycleChanges:
        context = self._context
        name, s, store = context.name, context.settings, context.store
        tab = SeriesTab(context.series) if context.series is not None else None
        changes = decide(
            runs=seen.values(),
            vanished=vanished,
            without_detail=without_detail,
            active=active,
            counted=counted,
            cursor=cursor,
            workflows=LabelBudget(
                store.labels(name, "workflow"),
                s.max_workflows,
                series=tab,
                cost=context.workflow_cost,
                owners=store.workflow_owners(name),
            ),
            codes=LabelBudget(store.labels(name, "code"), s.max_error_codes),
            error_pairs=PairBudget(store.error_pairs(name), tab),
            steps=StepBudget(
                store.step_pairs(name), s.max_steps, series=tab, cost=context.step_cost
            ),
            now=now,
            history=cursor.never_advanced and not context.scanned,
        )
        changes.series_reserved = tab.taken if tab is not None else 0
        return changes

    def apply(
        self,
        seen: dict[str, Run],
        changes: CycleChanges,
        active: dict[str, ActiveRun],
        cursor: Cursor,
        now: datetime,
    ) -> None:
        context = self._context
        name, provider = context.name, context.provider
        agent = context.alerts()
        also = (
            agent.for_cycle(name, provider.name, changes, active, now, context.settings.labels)
            if agent is not None
            else None
        )
        try:
            context.store.apply(name, provider.name, changes, cursor, also)
        except StateWriteError as exc:
            if context.series is not None:
                context.series.release(changes.series_reserved)
            context.state_writes.failed(exc)
            raise
        context.state_writes.succeeded()
        self._reporting.committed(seen, changes)
