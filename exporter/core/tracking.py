"""What a source carries from one cycle to the next: its cursor through the runs list, and the
runs it tracks until they finish."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from exporter.core.model import RunStatus


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
