"""How the state file's rows hold the store's values: instants as epoch seconds, an active run as
one row, and the series a cycle's changes create (whose birth the file records)."""

from __future__ import annotations

from datetime import UTC, datetime

from exporter.core.accounting import CycleChanges
from exporter.core.model import RunStatus, StepStatus
from exporter.core.tracking import ActiveRun
from exporter.state.snapshot import born_key, error_born_key, step_born_key

STEP_STATUSES = tuple(status.value for status in StepStatus)


def epoch(value: datetime) -> float:
    return value.timestamp()


def instant(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


def active_to_row(
    source: str, run: ActiveRun
) -> tuple[
    str, str, str, str, float, float, float | None, int, int, float | None, str | None, str | None
]:
    return (
        source,
        run.id,
        run.workflow,
        run.status.value,
        epoch(run.created_at),
        epoch(run.cursor_time),
        run.progress,
        int(run.queue_wait_observed),
        int(run.awaiting_detail),
        epoch(run.last_seen) if run.last_seen else None,
        run.workflow_id,
        run.shown_id,
    )


def active_from_row(row: tuple[object, ...]) -> ActiveRun:
    (
        _source,
        run_id,
        workflow,
        status,
        created,
        cursor_time,
        progress,
        qwo,
        awaiting,
        seen,
        workflow_id,
        shown_id,
    ) = row
    assert isinstance(created, float)
    assert isinstance(cursor_time, float)
    return ActiveRun(
        id=str(run_id),
        workflow=str(workflow),
        status=RunStatus(str(status)),
        created_at=instant(created),
        cursor_time=instant(cursor_time),
        progress=float(progress) if isinstance(progress, int | float) else None,
        queue_wait_observed=bool(qwo),
        awaiting_detail=bool(awaiting),
        last_seen=instant(seen) if isinstance(seen, float) else None,
        workflow_id=str(workflow_id) if workflow_id is not None else None,
        shown_id=str(shown_id) if shown_id is not None else None,
    )


def born_series(changes: CycleChanges) -> list[str]:
    return [
        *(born_key(w) for w in changes.new_workflows),
        *(error_born_key(w, code) for w, code in changes.new_error_pairs),
        *(step_born_key(w, step) for w, step in changes.new_steps),
    ]
