"""One poll cycle for one source: read what changed, decide, commit once.

The cycle reads the runs list newest-first down to a floor, re-reads the active runs it tracks
(deepening the scan to cover recent ones, looking older ones up by id within a budget: see
`rechecks`), lets the pure accounting core decide, and commits the result with the new cursor in
one transaction (`commit`). A failure part-way still commits what was read (counted ids make that
safe) but keeps the cursor, so the next cycle reads the same ground again. What the cycle says
about what it counted is `reporting`'s.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from exporter.collection.commit import Commit
from exporter.collection.context import SourceContext
from exporter.collection.lookups import Support
from exporter.collection.rechecks import Rechecks
from exporter.collection.reporting import CycleReporting
from exporter.core.accounting import ActiveRun, Cursor, CycleChanges, merge_sighting
from exporter.core.errors import SourceError
from exporter.core.model import Run
from exporter.core.scancost import (
    deepen_floor,
    follow_floor,
    list_density,
    listing_pays,
    runs_in_window,
)
from exporter.core.skew import AheadOfClock

# After a 429, the audit walk waits this long (seconds) before it reads on.
AUDIT_RATE_LIMIT_PAUSE = 60.0


@dataclass(slots=True)
class CycleReport:
    source: str
    provider: str
    ok: bool
    error: str | None = None
    seen_by_status: Counter[str] = field(default_factory=Counter)
    counted: int = 0
    active: int = 0
    lookups: int = 0
    seconds: float = 0.0
    finished_at: float = 0.0
    failure: Exception | None = None  # for diagnostics: what went wrong, typed


class PollCycle:
    def __init__(
        self,
        context: SourceContext,
        commit: Commit,
        rechecks: Rechecks,
        reporting: CycleReporting,
    ) -> None:
        self._context = context
        self._commit = commit
        self._rechecks = rechecks
        self._reporting = reporting
        # Runs per page of the list near the watermark, smoothed over cycles: how deep a page
        # budget reaches when the scan deepens to follow active runs.
        self._density: float | None = None

    def run(self, chunk_runs: int) -> CycleReport:
        """One cycle; a scan that reads more than `chunk_runs` runs commits them in chunks."""
        context, commit, rechecks, reporting = (
            self._context,
            self._commit,
            self._rechecks,
            self._reporting,
        )
        s, store, provider = context.settings, context.store, context.provider
        name = s.name
        now = context.clock()
        started = time.monotonic()
        cursor = store.cursor(name) or Cursor.first_start(now, s.backfill)
        active = store.active(name)
        floor = cursor.scan_floor(s.overlap)
        if not provider.cursor_tracks_changes:
            floor = deepen_floor(
                floor,
                [a.cursor_time for a in active.values()],
                density=self._density,
                page_size=s.page_size,
                window_start=now - s.rescan_window,
            )
        floor = self._search_floor(floor, cursor, active, now)
        seen: dict[str, Run] = {}
        # What committed chunks leave behind: only the ids of runs they saw active (bounded by
        # the active set, not by the cycle's size) and running totals.
        chunks = _ChunkTotals()
        newest: datetime | None = None
        ahead = AheadOfClock(now + s.clock_skew_tolerance)
        failure: Exception | None = None
        scan_complete = False
        try:
            # A list read for the first time (a workflow created since the last cycle) goes down
            # to the backfill window, as the first start did.
            first_read_floor = max(cursor.baseline, now - s.backfill)
            for run in provider.scan(floor, first_read_floor=first_read_floor):
                merge_sighting(seen, run)
                # A run dated ahead of our clock (beyond the tolerance) is counted like any, but
                # never moves the watermark: the overlap below it must stay.
                if ahead.holds(run):
                    newest = run.cursor_time if newest is None else max(newest, run.cursor_time)
                if len(seen) >= chunk_runs:
                    self._commit_chunk(seen, cursor, floor, now, chunks)
                    seen = {}
            scan_complete = True
            # Until a scan completes, every cycle lists every active run, whatever its age: one
            # created before the backfill window is counted when it finishes only if it was seen
            # active (a first cycle that failed, or committed chunks, has stored its cursor).
            if cursor.never_advanced or listing_pays(active, seen, chunks.active_ids, s.page_size):
                for run in provider.list_active():
                    merge_sighting(seen, run)
        except SourceError as exc:
            failure = exc
        reporting.ahead(ahead)
        in_window = runs_in_window(seen, floor)
        fast_newest = newest
        audited = self._audit(now, cursor, seen, started) if failure is None else set()
        if chunks.runs:
            active = store.active(name)  # as the committed chunks left it
        tracked_before = set(active)
        # Filtered after the page walk (paging, watermark and totals saw every run) and before
        # lookups and accounting: a run left out costs no lookup, no label, no series.
        read = seen
        seen, active, left_out = commit.screen(read, active)
        vanished: list[str] = []
        lookups = 0
        counted = store.counted_among(name, seen)
        if failure is None:
            lookups, failure = rechecks.look_up(
                seen, active, counted, vanished, chunks.active_ids, read, now
            )
            # A lookup can show what a list did not (a run's origin): screened again.
            seen, active, more = commit.screen(seen, active)
            left_out |= more
        without_detail = rechecks.without_details(seen, active, counted)
        if scan_complete:
            vanished.extend(context.missing.given_up(floor, read, active, chunks.active_ids))
            rechecks.unlisted_without_lookups(floor, read, active, chunks.active_ids)
        changes = commit.decide(seen, vanished, active, counted, cursor, now, without_detail)
        changes.active_removals |= left_out
        new_cursor = (
            cursor.advanced(newest, now, s.overlap, s.retention) if scan_complete else cursor
        )
        if scan_complete:
            density = list_density(chunks.in_window + in_window, floor, newest)
            if density is not None:
                # Smoothed: one quiet cycle must not make the next one give up deepening.
                self._density = density if self._density is None else (self._density + density) / 2
        commit.apply(seen, changes, active, new_cursor, now)
        reporting.found_late(changes, seen, audited, tracked_before, floor, fast_newest)
        reporting.without_details(changes, without_detail)
        chunks.add(read, changes, floor)
        context.scanned = context.scanned or scan_complete
        context.instruments.facts(context.list_facts())
        report = CycleReport(
            source=name,
            provider=provider.name,
            ok=failure is None,
            error=str(failure) if failure else None,
            seen_by_status=chunks.by_status,
            counted=chunks.counted,
            active=len(store.active(name)),
            lookups=lookups,
            failure=failure,
        )
        if failure is not None:
            context.log.warning(
                "collection failed; what was read is kept, the next cycle reads it again",
                error=str(failure),
                runs_read=chunks.runs,
            )
        else:
            context.log.debug(
                "collection done",
                runs_read=chunks.runs,
                counted=report.counted,
                active=report.active,
                lookups=lookups,
                floor=floor.isoformat(),
            )
        return report

    def _search_floor(
        self, floor: datetime, cursor: Cursor, active: Mapping[str, ActiveRun], now: datetime
    ) -> datetime:
        """How deep this cycle reads to look for runs it cannot look up: active runs a confirmed
        endpoint says are gone (given up only once a scan reaching them did not show them), and,
        where lookups are unsupported, the active runs the list must follow instead (bounded by
        `rescan_window` and the page budget; older ones are left to the audit walk)."""
        context = self._context
        if (
            context.lookups.support is Support.UNSUPPORTED
            and not context.provider.cursor_tracks_changes
        ):
            floor = follow_floor(
                floor,
                [a.cursor_time for a in active.values()],
                density=self._density,
                page_size=context.settings.page_size,
                window_start=now - context.settings.rescan_window,
            )
        return context.missing.search_floor(floor, max(cursor.baseline, cursor.horizon), active)

    def _audit(
        self, now: datetime, cursor: Cursor, seen: dict[str, Run], started: float
    ) -> set[str]:
        """This cycle's share of the audit walk, merged into what the cycle read. Returns the ids
        only the audit read."""
        context = self._context
        audit, instruments = context.audit, context.instruments
        if not audit.due(now):
            return set()
        limited = instruments.rate_limited_at
        if limited is not None and limited >= started - AUDIT_RATE_LIMIT_PAUSE:
            return set()  # the API asked to slow down: the walk waits, where it stopped
        if not audit.walking and context.lookups.support is Support.UNSUPPORTED:
            context.lookups.retry_now()  # each walk gives an unsupported endpoint another chance
        before = instruments.requests_made
        step = audit.step(
            now,
            max(cursor.baseline, cursor.horizon),
            lambda floor: context.provider.scan(floor, first_read_floor=floor),
            lambda: instruments.requests_made - before,
        )
        found = set()
        for run in step.runs:
            if run.id not in seen:
                found.add(run.id)
            merge_sighting(seen, run)
        if step.completed:
            instruments.audit("completed", time.time())
            context.log.debug("audit walk completed", floor=str(audit.floor))
        elif step.failure is not None:
            instruments.audit("aborted", time.time())
            context.log.warning(
                "audit walk failed; it starts again at the next cycle", error=str(step.failure)
            )
        return found

    def _commit_chunk(
        self,
        seen: dict[str, Run],
        cursor: Cursor,
        floor: datetime,
        now: datetime,
        chunks: _ChunkTotals,
    ) -> None:
        """Commits what a long scan has read so far, with the cursor where it was.

        A catch-up cycle (a first start with a long backfill, a day-long outage) can read a
        million runs; holding them all until one commit would take about a kilobyte each. Each
        chunk counts its finished runs and records them as counted in one transaction, so a
        crash later in the scan loses nothing: the next cycle reads from the same floor and
        skips what is already counted. Only the cursor waits for the scan to finish.
        """
        context, commit = self._context, self._commit
        active = context.store.active(context.name)
        kept, active, left_out = commit.screen(seen, active)
        counted = context.store.counted_among(context.name, kept)
        changes = commit.decide(kept, [], active, counted, cursor, now)
        changes.active_removals |= left_out
        commit.apply(kept, changes, active, cursor, now)
        chunks.add(seen, changes, floor)


@dataclass
class _ChunkTotals:
    """A cycle's running totals over its committed chunks (and, at the end, its last one)."""

    runs: int = 0
    counted: int = 0
    in_window: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    active_ids: set[str] = field(default_factory=set)

    def add(self, seen: Mapping[str, Run], changes: CycleChanges, floor: datetime) -> None:
        self.runs += len(seen)
        self.counted += len(changes.counted)
        self.in_window += runs_in_window(seen, floor)
        self.by_status.update(str(run.status) for run in seen.values())
        self.active_ids.update(changes.active_upserts)
