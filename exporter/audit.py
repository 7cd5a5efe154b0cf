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

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from exporter.errors import SourceError
from exporter.model import Run

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
