"""Clocks that disagree: a platform node whose clock runs ahead of ours dates runs in the future.

Such a run is counted like any other, but its list time must never move the watermark (the scan
floor trails the watermark by the overlap, and a floor pushed into the future skips runs that are
listed late). `AheadOfClock` sorts one scan's runs into those within the tolerance and those beyond
it, which are noted for the `clock_ahead` signal.
"""

from __future__ import annotations

from datetime import datetime

from exporter.core.model import Run


class AheadOfClock:
    """The runs of one scan dated beyond the clock-skew tolerance."""

    def __init__(self, limit: datetime) -> None:
        self.limit = limit
        self.runs: list[str] = []
        self.most = 0.0

    def holds(self, run: Run) -> bool:
        """Whether the run's list time is within the tolerance (else it is noted)."""
        if run.cursor_time <= self.limit or run.day_only:
            # A bare date stands at the end of its day by design (`Run.day_only`), not ahead.
            return True
        if len(self.runs) < 1_000:
            self.runs.append(run.id)
        self.most = max(self.most, (run.cursor_time - self.limit).total_seconds())
        return False
