"""The audit walk: the safety net under every fast path a source takes.

A cycle reads its list only down to a floor near the watermark, believes the totals, follows the
cursor and trusts lookups; each is a bet on something the API's docs do not promise. The audit
walk re-reads the whole list now and then, down to what the source still promises to count (the
retention horizon, or the first start's backfill window), and hands what it reads to the same
decide-and-commit as the fast path: what the fast path missed is counted then, once, and said
(`workflow_exporter_runs_found_late_total`).

It costs at most `requests_per_cycle` requests a cycle: one walk is one provider scan, kept open
across cycles and resumed where it stopped, so a long list is read over several cycles rather than
stalling one. A cycle in which the API asked to slow down (a 429) does not advance it. A walk that
fails part-way is dropped; the next begins from the top at the next cycle.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from exporter.core.errors import SourceError
from exporter.core.model import Run

# (floor) -> the runs of the whole list down to that floor, as the provider scans them.
StartScan = Callable[[datetime], Iterator[Run]]


@dataclass(slots=True)
class AuditStep:
    """What one cycle's share of the walk read, and how the walk stands after it."""

    runs: list[Run] = field(default_factory=list)
    completed: bool = False
    failure: SourceError | None = None


class AuditWalk:
    """One source's audit walk (confined to the source's collection thread)."""

    def __init__(self, interval: timedelta, requests_per_cycle: int) -> None:
        self.interval = interval
        self.requests_per_cycle = requests_per_cycle
        self._scan: Iterator[Run] | None = None
        self._last_started: datetime | None = None
        self.floor: datetime | None = None

    @property
    def enabled(self) -> bool:
        return self.interval > timedelta(0)

    @property
    def walking(self) -> bool:
        return self._scan is not None

    def due(self, now: datetime) -> bool:
        """A walk is under way, or one is due: an interval after the last one began (the first
        an interval after the source's first cycle, which itself read its backfill window)."""
        if not self.enabled:
            return False
        if self._scan is not None:
            return True
        if self._last_started is None:
            self._last_started = now
            return False
        return now - self._last_started >= self.interval

    def step(
        self, now: datetime, floor: datetime, start: StartScan, spent: Callable[[], int]
    ) -> AuditStep:
        """Reads the walk on until this cycle's requests are spent (`spent`: requests made since
        the cycle's share began) or the list ends."""
        if self._scan is None:
            self._scan, self._last_started, self.floor = start(floor), now, floor
        step = AuditStep()
        try:
            while spent() < self.requests_per_cycle:
                step.runs.append(next(self._scan))
        except StopIteration:
            step.completed = True
            self._scan = None
        except SourceError as exc:
            step.failure = exc
            self._scan = None
        return step

    def drop(self) -> None:
        """Abandons a walk under way (the source was rebuilt, or its scan cannot go on)."""
        self._scan = None


def found_late(
    audited: Collection[str],
    seen: Mapping[str, Run],
    *,
    tracked_before: Collection[str],
    newly_tracked: Collection[str],
    counted: Collection[str],
    floor: datetime,
    fast_newest: datetime | None,
) -> Counter[str]:
    """Why each run only the audit read, and that is counted (or tracked) now, was missed:
    `below_floor` (the fast scan stopped above it), `missed_by_scan` (its place lay within what
    the fast scan read: totals, a cursor or a shifted page lied), `active_untracked` (an active
    run nobody tracked). A run newer than all the fast scan read arrived since: simply new."""
    reasons: Counter[str] = Counter()
    for run_id in audited:
        run = seen.get(run_id)
        if run is None or run_id in tracked_before:
            continue
        if run_id in newly_tracked:
            reasons["active_untracked"] += 1
        elif run_id not in counted:
            continue
        elif run.cursor_time < floor:
            reasons["below_floor"] += 1
        elif fast_newest is not None and run.cursor_time <= fast_newest:
            reasons["missed_by_scan"] += 1
    return reasons
