"""A bounded in-memory record of the runs each source counted lately, for people (the landing
page and the demo's summary lines), never for metrics: Prometheus keeps the history.

Per source it holds the last few failures, per-minute counts by status for the last hour (by
when each run finished, so the first start's backfill shows as the hour it was), and totals
since the process started. Its size is bounded whatever the rate of runs.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from exporter.core.accounting import FinishedRun
from exporter.core.model import ERROR_STATUSES

WINDOW_MINUTES = 60
FAILURES_KEPT = 8


@dataclass(frozen=True, slots=True)
class RecentFailure:
    workflow: str
    code: str
    finished_at: datetime


@dataclass
class _SourceRecord:
    totals: Counter[str] = field(default_factory=Counter)
    # Minute (Unix seconds // 60) -> status -> runs finished in it.
    minutes: dict[int, Counter[str]] = field(default_factory=dict)
    failures: list[RecentFailure] = field(default_factory=list)  # the newest by finish time


class RecentRuns:
    def __init__(self) -> None:
        self._sources: dict[str, _SourceRecord] = {}
        self._lock = threading.Lock()

    def record(self, source: str, runs: Iterable[FinishedRun], now: datetime) -> None:
        """Runs one cycle of `source` counted; called once they are committed."""
        oldest = _minute(now) - WINDOW_MINUTES + 1
        # The start of the oldest minute kept: a run that finished before it (most of a first
        # start's backfill) only adds to the totals.
        window_start = datetime.fromtimestamp(oldest * 60, UTC)
        with self._lock:
            record = self._sources.setdefault(source, _SourceRecord())
            for run in runs:
                status = str(run.status)  # the value (`.value` is a slow property on an enum)
                record.totals[status] += 1
                # A finish time ahead of our clock (a skewed provider, the demo's fast world)
                # counts as now, so the record never holds more than the window's minutes.
                finished = min(run.finished_at, now)
                if finished >= window_start:
                    minute = _minute(finished)
                    counts = record.minutes.get(minute)
                    if counts is None:  # not `setdefault`: that builds a Counter for every run
                        counts = record.minutes[minute] = Counter()
                    counts[status] += 1
                if run.status in ERROR_STATUSES:
                    # Shown with its age: never a time the page has not reached yet.
                    record.failures.append(RecentFailure(run.workflow, run.code, finished))
            # A scan reads newest first and a backfill holds old runs: keep the newest by time.
            record.failures.sort(key=lambda f: f.finished_at)
            del record.failures[:-FAILURES_KEPT]
            for stale in [m for m in record.minutes if m < oldest]:
                del record.minutes[stale]

    def last_hour(self, source: str, now: datetime) -> Counter[str]:
        """Runs finished in the last hour, by status."""
        oldest = _minute(now) - WINDOW_MINUTES + 1
        with self._lock:
            record = self._sources.get(source)
            total: Counter[str] = Counter()
            if record is not None:
                for minute, counts in record.minutes.items():
                    if minute >= oldest:
                        total.update(counts)
            return total

    def failures(self, source: str) -> list[RecentFailure]:
        """The last few failures, newest first."""
        with self._lock:
            record = self._sources.get(source)
            return list(reversed(record.failures)) if record is not None else []

    def totals(self, source: str) -> Counter[str]:
        """Runs counted since the process started (the first start's backfill included)."""
        with self._lock:
            record = self._sources.get(source)
            return Counter(record.totals) if record is not None else Counter()

    def forget(self, source: str) -> None:
        with self._lock:
            self._sources.pop(source, None)


def _minute(at: datetime) -> int:
    return int(at.timestamp()) // 60
