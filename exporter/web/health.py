"""What `/healthz` means: collection still moves, and what it reads can be kept. Pure: the
exporter hands in what it knows.

A process whose collections hang (a request stuck past every timeout, a held lock, a scheduler
thread that died) serves ever older numbers while looking alive; a failing liveness probe gets
it restarted instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from exporter.providers import SourceSettings

# How late a job may be before the scheduler counts as stopped: its own loop wakes at the due
# time, so anything past a few seconds means the scheduler thread no longer runs.
SCHEDULER_SLACK = 10.0


def collection_bound(interval: timedelta, settings: SourceSettings) -> float:
    """Seconds a collection may run before it counts as hung: three intervals, plus the longest
    one request may take with all its retries (`request_deadline` * (`max_retries` + 1)).
    A cycle of many slow pages can legitimately take longer; one that does is worth a restart
    anyway, since its numbers are that old."""
    request = settings.request_deadline.total_seconds() * (settings.max_retries + 1)
    return 3 * interval.total_seconds() + request


@dataclass(frozen=True, slots=True)
class Collecting:
    """A source's view for the check: since when its oldest running collection runs (None:
    none runs) and how long one may."""

    source: str
    running_for: float | None
    bound: float


@dataclass(frozen=True, slots=True)
class Due:
    """A scheduled job and how far past its due time it is (negative: not due yet)."""

    job: str
    overdue: float
    interval: float


@dataclass(frozen=True, slots=True)
class Unwritable:
    """A part whose last state write was refused (a source, the alert outbox), and why."""

    what: str
    error: str


def problems(
    collecting: Iterable[Collecting],
    scheduler_running: bool | None,
    due: Iterable[Due],
    unwritable: Iterable[Unwritable] = (),
) -> list[str]:
    """Why the process is not healthy; empty when it is. `scheduler_running` None: not
    scheduling (a one-shot or a test), so nothing to check there. A state that refuses writes
    is a reason too: collection runs but keeps nothing, and a restart may land on a volume
    that takes writes (or make the fault plain to whoever looks)."""
    found = [
        f"source {c.source}: collection running for {c.running_for:.0f}s, "
        f"longer than its bound of {c.bound:.0f}s"
        for c in collecting
        if c.running_for is not None and c.running_for > c.bound
    ]
    found += [f"state not writable: {u.what}: {u.error}" for u in unwritable]
    if scheduler_running is False:
        found.append("scheduler is not running")
    elif scheduler_running:
        found += [
            f"scheduler stopped ticking: job {d.job} overdue by {d.overdue:.0f}s"
            for d in due
            if d.overdue > d.interval + SCHEDULER_SLACK
        ]
    return found
