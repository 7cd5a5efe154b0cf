"""What a cycle reads: the arithmetic of requests behind the collector's choices, with no I/O.

A cycle re-reads the active runs it tracks either by reading the list deeper (pages, shared
with every other run on them) or by looking runs up one by one (a request each). These
functions pick the cheaper way from what the last scans saw.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime

from exporter.core.accounting import ActiveRun
from exporter.core.model import Run


def listing_pays(
    active: Mapping[str, ActiveRun],
    seen: Collection[str],
    seen_in_chunks: Collection[str],
    page_size: int,
) -> bool:
    """Whether an active-runs listing saves requests over looking up the runs the scan missed.

    The listing exists to re-read tracked runs the scan did not reach; when the scan reached them
    all it has nothing to add, and when it missed only a few, looking those up costs no more than
    the listing's pages (about one per `page_size` tracked runs) would.
    """
    missed = sum(1 for run_id in active if run_id not in seen and run_id not in seen_in_chunks)
    return missed > max(1, -(-len(active) // page_size))


def deepen_floor(
    floor: datetime,
    active_times: list[datetime],
    *,
    density: float | None,
    page_size: int,
    window_start: datetime,
) -> datetime:
    """How deep to read so that active runs are re-read by pages rather than looked up one by one.

    Each active run below the floor costs one lookup unless the scan reaches down to it; reaching
    a run at time t costs about (floor - t) * density / page_size more pages, with `density` the
    runs per second of list time seen lately. Take the depth that saves the most requests, never
    below `window_start`. Without an estimate yet, do not deepen: lookups are bounded anyway.
    """
    if density is None:
        return floor
    below = sorted((t for t in active_times if window_start <= t < floor), reverse=True)
    best, best_saving = floor, 0.0
    for reached, t in enumerate(below, start=1):
        pages = (floor - t).total_seconds() * density / page_size
        if reached - pages > best_saving:
            best, best_saving = t, reached - pages
    return best


def follow_floor(
    floor: datetime,
    active_times: list[datetime],
    *,
    density: float | None,
    page_size: int,
    window_start: datetime,
    max_extra_pages: int = 20,
) -> datetime:
    """How deep to read when active runs cannot be looked up (the source's single-run endpoint is
    absent): down to the oldest active run within `window_start`, but no more than about
    `max_extra_pages` pages below the floor by the density seen lately. Runs further down are
    left to the audit walk, so a long-waiting run costs a late count, never a page storm."""
    below = [t for t in active_times if window_start <= t < floor]
    if not below:
        return floor
    target = min(below)
    if density is None:
        return target
    reachable = (floor - target).total_seconds() * density / page_size
    if reachable <= max_extra_pages:
        return target
    return floor - (floor - target) * (max_extra_pages / reachable)


def list_density(in_window: int, floor: datetime, newest: datetime | None) -> float | None:
    """Runs per second of list time between the floor and the newest run of a complete scan."""
    if newest is None:
        return None
    span = (newest - floor).total_seconds()
    return in_window / span if span > 0 and in_window else None


def runs_in_window(seen: Mapping[str, Run], floor: datetime) -> int:
    """Runs at or above the floor: what `list_density` divides by the window's span."""
    return sum(1 for run in seen.values() if run.cursor_time >= floor)
