"""One collection cycle for one source: read what changed, decide, commit once.

The cycle reads the runs list newest-first down to a floor, re-reads the active runs it tracks
(deepening the scan to cover recent ones, looking older ones up by id within a budget), lets the
pure accounting core decide, and commits the result with the new cursor in one transaction. A
failure part-way still commits what was read (counted ids make that safe) but keeps the cursor,
so the next cycle reads the same ground again.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from exporter.collection.audit import AuditWalk, found_late
from exporter.collection.lookups import LookupGuard, LookupRound, MissingRuns, Outcome, Support
from exporter.core.accounting import (
    OTHER_LABEL,
    ActiveRun,
    Cursor,
    CycleChanges,
    LabelBudget,
    PairBudget,
    SeriesBudget,
    SeriesTab,
    StepBudget,
    decide,
    merge_sighting,
)
from exporter.core.errors import ApiError, SourceError, StateWriteError
from exporter.core.model import UNSPECIFIED_CODE, Run, RunStatus
from exporter.core.scancost import (
    deepen_floor,
    follow_floor,
    list_density,
    listing_pays,
    runs_in_window,
)
from exporter.core.skew import AheadOfClock
from exporter.exposition.selfmetrics import SourceInstruments
from exporter.providers import Provider, SourceSettings
from exporter.state.statewrites import StateWrites
from exporter.state.store import Store


class AlertHook(Protocol):
    """The alerting agent's part in a cycle: what to write with its commit."""

    def for_cycle(
        self,
        source: str,
        provider: str,
        changes: CycleChanges,
        active: Mapping[str, ActiveRun],
        now: datetime,
        static_labels: Mapping[str, str] | None = None,
    ) -> Callable[[sqlite3.Connection], None]: ...


# After a 429, the audit walk waits this long (seconds) before it reads on.
AUDIT_RATE_LIMIT_PAUSE = 60.0


def utc_now() -> datetime:
    return datetime.now(tz=UTC)


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


class SourceCollector:
    # A scan that reads more runs than this commits them in chunks (see _commit_chunk): about a
    # kilobyte each while held, so a catch-up cycle stays within tens of megabytes.
    chunk_runs = 20_000

    def __init__(
        self,
        settings: SourceSettings,
        provider: Provider[Any],
        store: Store,
        instruments: SourceInstruments,
        log: Any,
        clock: Callable[[], datetime] = utc_now,
        series: SeriesBudget | None = None,
        workflow_cost: int = 0,
        alerts: Callable[[], AlertHook | None] = lambda: None,
        step_cost: int = 0,
    ) -> None:
        self.alerts = alerts
        self.series = series
        self.workflow_cost = workflow_cost
        self.step_cost = step_cost
        self.settings = settings
        self.provider = provider
        self.store = store
        self.instruments = instruments
        self.log = log
        self.clock = clock
        self._density: float | None = None
        self._reopened_logged: set[str] = set()
        self._nested_reported: set[str] = set()
        # Whether the source's single-run endpoint may be relied on (`exporter.collection.lookups`).
        self.lookups = LookupGuard(provider.get_run, self._say_lookups)
        # Active runs a confirmed endpoint says are gone, by where they stood in the list: looked
        # for there (the next complete scan reads down to them) before they are given up.
        self._missing = MissingRuns()
        # Failed runs of this cycle counted without their failure detail (lookups unsupported).
        self._detail_given_up: set[str] = set()
        self.audit = AuditWalk(settings.audit_interval, settings.audit_requests_per_cycle)
        self._ahead_reported: set[str] = set()
        self._ahead_said = False
        # A scan has completed in this process: what it did not count was not there at the
        # first start, so it is no backfill, even while the watermark has not moved (a source
        # whose window held no run yet). Kept in memory: after a restart, until the first
        # complete scan of a source that never saw a run, its counts show at once as before.
        self._scanned = False
        # Whether the state takes this source's writes: for /healthz and the log.
        self.state_writes = StateWrites(
            f"source {settings.name}", log, instruments.state_write_refused
        )

    def list_facts(self) -> dict[str, str]:
        """What the source's lists and lookups turned out to be (for `check` and `source_info`)."""
        return {**self.provider.list_facts(), "lookups": self.lookups.support.value}

    def collect(self) -> CycleReport:
        started = time.perf_counter()
        try:
            report = self._collect()
        except StateWriteError as exc:
            # Said by state_writes once per change, not per cycle; the cursor stayed where it
            # was, so the next cycle that can write counts what this one read.
            report = CycleReport(
                self.settings.name, self.provider.name, ok=False, error=str(exc), failure=exc
            )
        report.seconds = time.perf_counter() - started
        report.finished_at = time.time()
        self.instruments.collection(report.ok, report.seconds, report.finished_at)
        return report

    def _collect(self) -> CycleReport:
        s = self.settings
        name = s.name
        now = self.clock()
        started = time.monotonic()
        cursor = self.store.cursor(name) or Cursor.first_start(now, s.backfill)
        active = self.store.active(name)
        floor = cursor.scan_floor(s.overlap)
        if not self.provider.cursor_tracks_changes:
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
            for run in self.provider.scan(floor, first_read_floor=first_read_floor):
                merge_sighting(seen, run)
                # A run dated ahead of our clock (beyond the tolerance) is counted like any, but
                # never moves the watermark: the overlap below it must stay.
                if ahead.holds(run):
                    newest = run.cursor_time if newest is None else max(newest, run.cursor_time)
                if len(seen) >= self.chunk_runs:
                    self._commit_chunk(seen, cursor, floor, now, chunks)
                    seen = {}
            scan_complete = True
            # Until a scan completes, every cycle lists every active run, whatever its age: one
            # created before the backfill window is counted when it finishes only if it was seen
            # active (a first cycle that failed, or committed chunks, has stored its cursor).
            if cursor.never_advanced or listing_pays(active, seen, chunks.active_ids, s.page_size):
                for run in self.provider.list_active():
                    merge_sighting(seen, run)
        except SourceError as exc:
            failure = exc
        self._report_ahead(ahead, now)
        in_window = runs_in_window(seen, floor)
        fast_newest = newest
        audited = self._audit(now, cursor, seen, started) if failure is None else set()
        if chunks.runs:
            active = self.store.active(name)  # as the committed chunks left it
        tracked_before = set(active)
        # Filtered after the page walk (paging, watermark and totals saw every run) and before
        # lookups and accounting: a run left out costs no lookup, no label, no series.
        read = seen
        seen, active, left_out = self._screen(read, active)
        vanished: list[str] = []
        lookups = 0
        counted = self.store.counted_among(name, seen)
        if failure is None:
            lookups, failure = self._lookups(
                seen, active, counted, vanished, chunks.active_ids, read, now
            )
            # A lookup can show what a list did not (a run's origin): screened again.
            seen, active, more = self._screen(seen, active)
            left_out |= more
        without_detail = self._without_details(seen, active, counted)
        if scan_complete:
            vanished.extend(self._missing.given_up(floor, read, active, chunks.active_ids))
            self._unlisted_without_lookups(floor, read, active, chunks.active_ids)
        changes = self._decide(seen, vanished, active, counted, cursor, now, without_detail)
        changes.active_removals |= left_out
        new_cursor = (
            cursor.advanced(newest, now, s.overlap, s.retention) if scan_complete else cursor
        )
        if scan_complete:
            density = list_density(chunks.in_window + in_window, floor, newest)
            if density is not None:
                # Smoothed: one quiet cycle must not make the next one give up deepening.
                self._density = density if self._density is None else (self._density + density) / 2
        self._apply(seen, changes, active, new_cursor, now)
        self._report_found_late(changes, seen, audited, tracked_before, floor, fast_newest)
        self._report_without_details(changes, without_detail)
        chunks.add(read, changes, floor)
        self._scanned = self._scanned or scan_complete
        self.instruments.facts(self.list_facts())
        report = CycleReport(
            source=name,
            provider=self.provider.name,
            ok=failure is None,
            error=str(failure) if failure else None,
            seen_by_status=chunks.by_status,
            counted=chunks.counted,
            active=len(self.store.active(name)),
            lookups=lookups,
            failure=failure,
        )
        if failure is not None:
            self.log.warning(
                "collection failed; what was read is kept, the next cycle reads it again",
                error=str(failure),
                runs_read=chunks.runs,
            )
        else:
            self.log.debug(
                "collection done",
                runs_read=chunks.runs,
                counted=report.counted,
                active=report.active,
                lookups=lookups,
                floor=floor.isoformat(),
            )
        return report

    # What the fast path bets on, checked -------------------------------------------------------

    def _search_floor(
        self, floor: datetime, cursor: Cursor, active: Mapping[str, ActiveRun], now: datetime
    ) -> datetime:
        """How deep this cycle reads to look for runs it cannot look up: active runs a confirmed
        endpoint says are gone (given up only once a scan reaching them did not show them), and,
        where lookups are unsupported, the active runs the list must follow instead (bounded by
        `rescan_window` and the page budget; older ones are left to the audit walk)."""
        if self.lookups.support is Support.UNSUPPORTED and not self.provider.cursor_tracks_changes:
            floor = follow_floor(
                floor,
                [a.cursor_time for a in active.values()],
                density=self._density,
                page_size=self.settings.page_size,
                window_start=now - self.settings.rescan_window,
            )
        return self._missing.search_floor(floor, max(cursor.baseline, cursor.horizon), active)

    def _unlisted_without_lookups(
        self,
        floor: datetime,
        read: Mapping[str, Run],
        active: Mapping[str, ActiveRun],
        seen_in_chunks: Collection[str],
    ) -> None:
        """With no endpoint to ask, the list is the only witness: an active run whose place a
        complete scan read without showing it is looked for once more, then given up."""
        if self.lookups.support is not Support.UNSUPPORTED:
            return
        for run in active.values():
            if (
                run.cursor_time >= floor
                and run.id not in read
                and run.id not in seen_in_chunks
                and not run.awaiting_detail
            ):
                self._missing.note(run.id, run.cursor_time)

    def _without_details(
        self, seen: dict[str, Run], active: Mapping[str, ActiveRun], counted: set[str]
    ) -> list[str]:
        """Where lookups are unsupported, a failed run whose reason only a lookup gives is counted
        from what the list says, code `unspecified`; parked ones too. Returns the parked ids."""
        if self.lookups.support is not Support.UNSUPPORTED:
            return []
        for run_id, run in list(seen.items()):
            if run.needs_detail and run_id not in counted:
                seen[run_id] = replace(
                    run, needs_detail=False, error_code=run.error_code or UNSPECIFIED_CODE
                )
                self._detail_given_up.add(run_id)
        return [a.id for a in active.values() if a.awaiting_detail and a.id not in seen]

    def _report_without_details(self, changes: CycleChanges, parked: list[str]) -> None:
        if not self._detail_given_up and not parked:
            return
        ids = changes.counted_ids
        count = sum(1 for run_id in (*self._detail_given_up, *parked) if run_id in ids)
        self._detail_given_up.clear()
        if count:
            self.instruments.details_unavailable(count)

    def _audit(
        self, now: datetime, cursor: Cursor, seen: dict[str, Run], started: float
    ) -> set[str]:
        """This cycle's share of the audit walk, merged into what the cycle read. Returns the ids
        only the audit read."""
        audit = self.audit
        if not audit.due(now):
            return set()
        limited = self.instruments.rate_limited_at
        if limited is not None and limited >= started - AUDIT_RATE_LIMIT_PAUSE:
            return set()  # the API asked to slow down: the walk waits, where it stopped
        if not audit.walking and self.lookups.support is Support.UNSUPPORTED:
            self.lookups.retry_now()  # each walk gives an unsupported endpoint another chance
        before = self.instruments.requests_made
        step = audit.step(
            now,
            max(cursor.baseline, cursor.horizon),
            lambda floor: self.provider.scan(floor, first_read_floor=floor),
            lambda: self.instruments.requests_made - before,
        )
        found = set()
        for run in step.runs:
            if run.id not in seen:
                found.add(run.id)
            merge_sighting(seen, run)
        if step.completed:
            self.instruments.audit("completed", time.time())
            self.log.debug("audit walk completed", floor=str(audit.floor))
        elif step.failure is not None:
            self.instruments.audit("aborted", time.time())
            self.log.warning(
                "audit walk failed; it starts again at the next cycle", error=str(step.failure)
            )
        return found

    def _report_found_late(
        self,
        changes: CycleChanges,
        seen: Mapping[str, Run],
        audited: set[str],
        tracked_before: set[str],
        floor: datetime,
        fast_newest: datetime | None,
    ) -> None:
        """Runs only the audit read that are counted (or tracked) now, though the fast scan covered
        their place in the list: what the fast path missed, found late."""
        if not audited:
            return
        reasons = found_late(
            audited,
            seen,
            tracked_before=tracked_before,
            newly_tracked=set(changes.active_upserts) - tracked_before,
            counted=changes.counted_ids,
            floor=floor,
            fast_newest=fast_newest,
        )
        for reason, count in sorted(reasons.items()):
            self.instruments.found_late(reason, count)
            self.log.warning(
                "the audit walk found runs the incremental scan had missed; counted now",
                reason=reason,
                count=count,
            )

    def _report_ahead(self, ahead: AheadOfClock, now: datetime) -> None:
        if not ahead.runs:
            return
        fresh = [run_id for run_id in ahead.runs if run_id not in self._ahead_reported]
        if len(self._ahead_reported) >= 10_000:
            self._ahead_reported.clear()
        self._ahead_reported.update(fresh)
        if not fresh:
            return
        if not self._ahead_said:
            # Said once (and kept for `check`); each further run dated ahead is only counted.
            self._ahead_said = True
            self.provider.events.inconsistency(
                "clock_ahead",
                f"{len(fresh)} run(s) dated more than clock_skew_tolerance ahead of this "
                f"exporter's clock (the furthest by {ahead.most:.0f} s more): counted, but they "
                "do not move the watermark",
            )
            fresh = fresh[1:]
        for _ in fresh:
            self.instruments.scan_inconsistency("clock_ahead")

    def _say_lookups(self, fact: str, value: str, detail: str) -> None:
        changed = self.provider.list_facts().get(fact) != value
        self.provider.say_once(fact, value, detail)
        if changed and value == "unsupported":
            # Once per change: a retry that finds the endpoint still absent says nothing new.
            self.log.warning("single-run lookups do not work for this source", why=detail)

    def apply_hints(self, run_ids: Sequence[str], payloads: Mapping[str, Any]) -> HintReport:
        """Looks up the runs webhook events named and commits what they show, through the same
        decide-and-commit as a cycle (the caller holds the source's cycle lock).

        The cursor is kept as it is: a hint says nothing about what a scan has covered, and a
        run it counts is skipped by the next scan because its id is counted. A run the API no
        longer has (deleted right after finishing) is taken from the signed event's payload,
        when that carried it finished."""
        name, s = self.settings.name, self.settings
        now = self.clock()
        cursor = self.store.cursor(name) or Cursor.first_start(now, s.backfill)
        active = self.store.active(name)
        seen: dict[str, Run] = {}
        vanished: list[str] = []
        failure: Exception | None = None
        lookups = 0
        wanted = dict.fromkeys(run_ids)
        # A run already counted needs no lookup: a platform's retried delivery costs nothing.
        for run_id in self.store.counted_among(name, wanted):
            del wanted[run_id]
        verdicts: dict[tuple[str, str | None], bool] = {}
        whole = self.provider.events_carry_whole_runs
        for run_id in wanted:
            # Where the provider documents the event's run whole, its workflow and state are
            # known before any lookup; elsewhere the copy only stands in for a deleted run.
            carried = self._event_run(run_id, payloads.get(run_id)) if whole else None
            if carried is not None and not self._admits(carried, verdicts):
                continue  # its workflow is left out: no lookup (screened below all the same)
            if carried is not None and self._final(carried):
                merge_sighting(seen, carried)
                continue
            if lookups >= s.lookup_budget or not self.lookups.usable:
                continue  # waits for the poll, which finds it anyway (carried runs cost none)
            tracked = active.get(run_id)
            lookups += 1
            try:
                result = self.lookups.look_up(
                    run_id, tracked.workflow_id if tracked else None, listed=False
                )
            except SourceError as exc:
                failure = exc
                break
            fetched = result.run
            if fetched is None:
                # Deleted right after finishing (or an endpoint not verified yet): the event's
                # copy, decoded once, counts only if it shows the run finished (an unfinished one
                # that is gone will never finish).
                copy = carried if whole else self._event_run(run_id, payloads.get(run_id))
                fetched = copy if copy is not None and copy.terminal else None
            if fetched is not None:
                merge_sighting(seen, fetched)
            elif tracked is not None and result.outcome is Outcome.GONE:
                if tracked.awaiting_detail:
                    vanished.append(run_id)  # known failed: counted now, code unspecified
                else:
                    self._missing.note(run_id, tracked.cursor_time)  # the next poll looks for it
        # The source's workflow filters hold for hints as for polls.
        seen, active, left_out = self._screen(seen, active)
        counted = self.store.counted_among(name, seen)
        changes = self._decide(seen, vanished, active, counted, cursor, now)
        changes.active_removals |= left_out
        try:
            self._apply(seen, changes, active, cursor, now)
        except StateWriteError as exc:
            # Nothing kept: the poll counts these runs once the state takes writes.
            return HintReport(lookups=lookups, counted=0, failure=exc)
        if failure is not None:
            self.log.warning(
                "webhook hint lookup failed; the next poll finds the run", error=str(failure)
            )
        return HintReport(lookups=lookups, counted=len(changes.counted), failure=failure)

    def _event_run(self, run_id: str, payload: Any) -> Run | None:
        """The run a signed event carried, decoded once, if it is the run the event named."""
        if payload is None:
            return None
        run = self.provider.run_from_event(payload)
        return run if run is not None and run.id == run_id else None

    def _final(self, run: Run) -> bool:
        """Whether a run an event carried whole can be counted from it: finished, its failure
        reason in hand, its steps there if they are counted. Anything less is looked up."""
        return (
            run.terminal
            and not run.needs_detail
            and not (self.provider.counts_steps_of(run) and not run.steps)
        )

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
        active = self.store.active(self.settings.name)
        kept, active, left_out = self._screen(seen, active)
        counted = self.store.counted_among(self.settings.name, kept)
        changes = self._decide(kept, [], active, counted, cursor, now)
        changes.active_removals |= left_out
        self._apply(kept, changes, active, cursor, now)
        chunks.add(seen, changes, floor)

    def _admits(self, run: Run, verdicts: dict[tuple[str, str | None], bool]) -> bool:
        # Many runs share few workflows: each workflow is matched against the patterns once.
        key = (run.workflow_id, run.workflow_name)
        wanted = verdicts.get(key)
        if wanted is None:
            wanted = verdicts[key] = self.settings.workflows.admits(*key)
        return wanted and self.provider.admits(run)

    def _screen(
        self, seen: dict[str, Run], active: dict[str, ActiveRun]
    ) -> tuple[dict[str, Run], dict[str, ActiveRun], set[str]]:
        """The runs this source counts, the active runs it still tracks, and the ids of active
        runs to let go: a filter changed by a reload takes them off the active gauges, and what
        was counted stays counted."""
        verdicts: dict[tuple[str, str | None], bool] = {}
        kept = {run_id: run for run_id, run in seen.items() if self._admits(run, verdicts)}
        workflows = self.settings.workflows
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

    def _decide(
        self,
        seen: dict[str, Run],
        vanished: list[str],
        active: dict[str, ActiveRun],
        counted: set[str],
        cursor: Cursor,
        now: datetime,
        without_detail: Collection[str] = (),
    ) -> CycleChanges:
        name, s = self.settings.name, self.settings
        tab = SeriesTab(self.series) if self.series is not None else None
        changes = decide(
            runs=seen.values(),
            vanished=vanished,
            without_detail=without_detail,
            active=active,
            counted=counted,
            cursor=cursor,
            workflows=LabelBudget(
                self.store.labels(name, "workflow"),
                s.max_workflows,
                series=tab,
                cost=self.workflow_cost,
                owners=self.store.workflow_owners(name),
            ),
            codes=LabelBudget(self.store.labels(name, "code"), s.max_error_codes),
            error_pairs=PairBudget(self.store.error_pairs(name), tab),
            steps=StepBudget(
                self.store.step_pairs(name), s.max_steps, series=tab, cost=self.step_cost
            ),
            now=now,
            history=cursor.never_advanced and not self._scanned,
        )
        changes.series_reserved = tab.taken if tab is not None else 0
        return changes

    def _apply(
        self,
        seen: dict[str, Run],
        changes: CycleChanges,
        active: dict[str, ActiveRun],
        cursor: Cursor,
        now: datetime,
    ) -> None:
        name = self.settings.name
        agent = self.alerts()
        also = (
            agent.for_cycle(name, self.provider.name, changes, active, now, self.settings.labels)
            if agent is not None
            else None
        )
        try:
            self.store.apply(name, self.provider.name, changes, cursor, also)
        except StateWriteError as exc:
            if self.series is not None:
                self.series.release(changes.series_reserved)
            self.state_writes.failed(exc)
            raise
        self.state_writes.succeeded()
        self._report_changes(changes, len(seen))
        self._check_nested(seen, changes)
        self._log_failures(changes)

    def _lookups(
        self,
        seen: dict[str, Run],
        active: dict[str, ActiveRun],
        counted: set[str],
        vanished: list[str],
        seen_in_chunks: Collection[str],
        listed: Mapping[str, Run],
        now: datetime,
    ) -> tuple[int, Exception | None]:
        """Looks up runs one by one: failure details first, then the stalest active runs.

        Runs already counted are skipped: their summaries come back in every overlapping read,
        and must not spend the budget that the ones still waiting need. The endpoint is a guess
        until it has answered (`exporter.collection.lookups`): before a run the list does not
        show is looked up, one the list shows is, so that a 404 can be told from an absent
        endpoint."""
        if not self.lookups.usable:
            return 0, None
        need_detail = [
            (run.id, run.workflow_id)
            for run in seen.values()
            if run.needs_detail and run.id not in counted
        ]
        stale = sorted(
            (
                a
                for a in active.values()
                if (a.id not in seen and a.id not in seen_in_chunks) or a.awaiting_detail
            ),
            key=lambda a: a.last_seen or a.created_at,
        )
        if self.provider.cursor_tracks_changes:
            # A change moves a run above the watermark, where the scan sees it; the docs do not
            # promise every change does, so a run unseen for `recheck_after` is looked up too.
            unseen_since = now - self.settings.recheck_after
            stale = [
                a
                for a in stale
                if a.awaiting_detail or (a.last_seen or a.created_at) <= unseen_since
            ]
        queue = dict.fromkeys([*need_detail, *((a.id, a.workflow_id) for a in stale)])
        probe = LookupRound(self.lookups, listed)
        budget = self.settings.lookup_budget
        for run_id, workflow_id in queue:
            if probe.spent >= budget:
                break
            if run_id in seen and not seen[run_id].needs_detail:
                continue
            is_listed = run_id in listed
            try:
                if not is_listed and not probe.verify(budget, exclude=run_id):
                    break  # unsupported, or no listed run to tell by within the budget
                result = probe.look_up(run_id, workflow_id, listed=is_listed)
                if result.outcome is Outcome.SUSPECT:
                    # A listed run refused: deleted just now, or the endpoint is wrong. Another
                    # listed run tells which.
                    probe.second_opinion(budget, exclude=run_id)
                    if self.lookups.support is Support.UNSUPPORTED:
                        break
                    if self.lookups.verified:
                        self._gone_while_listed(run_id, seen, active, vanished)
                    continue
            except ApiError as exc:
                return probe.spent, exc
            if result.outcome is Outcome.UNSUPPORTED:
                break
            if result.outcome is Outcome.FOUND and result.run is not None:
                self._note_missed_change(active.get(run_id), result.run)
                merge_sighting(seen, result.run)
            elif result.outcome is Outcome.GONE:
                tracked = active.get(run_id)
                if tracked is not None and tracked.awaiting_detail:
                    vanished.append(run_id)  # known failed: counted now, code unspecified
                elif tracked is not None:
                    # Looked for in the list before it is given up: the next scan reads down
                    # to where it stood.
                    self._missing.note(run_id, tracked.cursor_time)
        for run in probe.found.values():
            merge_sighting(seen, run)
        return probe.spent, None

    def _gone_while_listed(
        self,
        run_id: str,
        seen: dict[str, Run],
        active: Mapping[str, ActiveRun],
        vanished: list[str],
    ) -> None:
        """A run the list shows that a working endpoint does not know (deleted between the two,
        or a detail the API will not give): a failure waiting for its reason is counted now as
        `unspecified`, an active run is looked for in the list before it is given up."""
        run, tracked = seen.get(run_id), active.get(run_id)
        if run is not None and run.needs_detail:
            seen[run_id] = replace(
                run, needs_detail=False, error_code=run.error_code or UNSPECIFIED_CODE
            )
            self._detail_given_up.add(run_id)
        elif tracked is not None and tracked.awaiting_detail:
            vanished.append(run_id)
        elif tracked is not None:
            self._missing.note(run_id, tracked.cursor_time)

    def _check_nested(self, seen: Mapping[str, Run], changes: CycleChanges) -> None:
        """Nested runs count from the top-level list only (docs/providers.md: Steps). A run
        counted now whose steps name a nested run the source has never seen (not read this
        cycle, not counted, not active) means the list does not show nested runs: said once per
        run."""
        # A parked run counted because it vanished is not among this cycle's sightings.
        counted = (seen[run_id] for run_id in changes.counted_ids if run_id in seen)
        nested = {
            nested_id
            for run in counted
            for nested_id in run.nested_ids
            if nested_id not in seen and nested_id not in self._nested_reported
        }
        if not nested:
            return
        name = self.settings.name
        unseen = nested - self.store.counted_among(name, nested) - self.store.active(name).keys()
        for nested_id in sorted(unseen):
            if len(self._nested_reported) >= 10_000:
                self._nested_reported.clear()
            self._nested_reported.add(nested_id)
            self.provider.events.inconsistency(
                "nested_run_unlisted",
                f"run {nested_id!r} is nested in a finished run's steps but the runs list never "
                "showed it: it is not counted",
            )

    def _note_missed_change(self, tracked: ActiveRun | None, fetched: Run) -> None:
        """A run whose list position promises every change (Extend's `updatedAt`) changed
        status without moving: the scan missed it, and counts lagged until this lookup."""
        if tracked is None or tracked.awaiting_detail or not self.provider.cursor_tracks_changes:
            return
        if fetched.status is not tracked.status and fetched.cursor_time <= tracked.cursor_time:
            self.provider.events.inconsistency(
                "change_without_update",
                f"run {fetched.shown!r} went from {tracked.status} to {fetched.status} without its "
                "list timestamp moving; found by a lookup after recheck_after",
            )

    def _log_failures(self, changes: CycleChanges) -> None:
        """Free-text error messages never become labels; they are logged once, here. From what
        was counted, not what was read: a parked failure that vanished was counted unread."""
        for run in changes.finished_runs:
            if run.status is RunStatus.FAILED:
                self.log.info(
                    "run failed",
                    run_id=run.shown,
                    workflow=run.workflow,
                    code=run.code,
                    message=(run.error_message or "")[:500],
                    dashboard_url=run.dashboard_url,
                )

    def _report_changes(self, changes: CycleChanges, seen: int) -> None:
        self.instruments.ingested(seen)
        if changes.invalid_steps:
            # Once, when the run carrying them is counted (re-reads of it are not counted again).
            self.instruments.invalid_record("step", changes.invalid_steps)
        for label, count in changes.dropped_labels.items():
            self.instruments.labels_dropped(label, count)
        shown = self.provider.sanitizer.text
        for name, workflow_id, owner in changes.name_collisions:
            # Once: the suffixed value is owned from now on (kept with the state).
            self.provider.events.inconsistency(
                "workflow_name_collision",
                f"workflows {shown(owner, 256)!r} and {shown(workflow_id, 256)!r} both read "
                f"{name!r}; the latter is counted as its own series, its label suffixed",
            )
        for run_id in changes.reopened:
            if run_id not in self._reopened_logged:
                if len(self._reopened_logged) >= 10_000:
                    self._reopened_logged.clear()
                self._reopened_logged.add(run_id)
                self.log.info(
                    "run reopened after it was counted; it stays counted with its first final "
                    "status (a retry under the same id is not a new run)",
                    run_id=run_id,
                )
        if changes.vanished:
            self.instruments.vanished(len(changes.vanished))
            self.log.info(
                "active runs no longer exist in the API; dropped without counting",
                count=len(changes.vanished),
            )


@dataclass(frozen=True, slots=True)
class HintReport:
    lookups: int
    counted: int
    failure: Exception | None = None


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
        self.by_status.update(run.status.value for run in seen.values())
        self.active_ids.update(changes.active_upserts)
