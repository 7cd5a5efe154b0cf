"""A poll's lookups by id and what stands in for them: failure details first, then the stalest
active runs, within the source's lookup budget; and, where the single-run endpoint turned out to
be unsupported, the list as the only witness (failures counted without their detail, active runs
it no longer shows given up after one more look)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from datetime import datetime

from exporter.collection.context import SourceContext
from exporter.collection.lookups import LookupRound, Outcome, Support
from exporter.collection.reporting import CycleReporting
from exporter.core.accounting import ActiveRun, merge_sighting
from exporter.core.errors import ApiError
from exporter.core.model import UNSPECIFIED_CODE, Run


class Rechecks:
    def __init__(self, context: SourceContext, reporting: CycleReporting) -> None:
        self._context = context
        self._reporting = reporting

    def look_up(
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
        context = self._context
        guard = context.lookups
        if not guard.usable:
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
        if context.provider.cursor_tracks_changes:
            # A change moves a run above the watermark, where the scan sees it; the docs do not
            # promise every change does, so a run unseen for `recheck_after` is looked up too.
            unseen_since = now - context.settings.recheck_after
            stale = [
                a
                for a in stale
                if a.awaiting_detail or (a.last_seen or a.created_at) <= unseen_since
            ]
        queue = dict.fromkeys([*need_detail, *((a.id, a.workflow_id) for a in stale)])
        probe = LookupRound(guard, listed)
        budget = context.settings.lookup_budget
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
                    if guard.support is Support.UNSUPPORTED:
                        break
                    if guard.verified:
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
                    context.missing.note(run_id, tracked.cursor_time)
        for run in probe.found.values():
            merge_sighting(seen, run)
        return probe.spent, None

    def without_details(
        self, seen: dict[str, Run], active: Mapping[str, ActiveRun], counted: set[str]
    ) -> list[str]:
        """Where lookups are unsupported, a failed run whose reason only a lookup gives is counted
        from what the list says, code `unspecified`; parked ones too. Returns the parked ids."""
        if self._context.lookups.support is not Support.UNSUPPORTED:
            return []
        for run_id, run in list(seen.items()):
            if run.needs_detail and run_id not in counted:
                self._without_detail(seen, run_id, run)
        return [a.id for a in active.values() if a.awaiting_detail and a.id not in seen]

    def unlisted_without_lookups(
        self,
        floor: datetime,
        read: Mapping[str, Run],
        active: Mapping[str, ActiveRun],
        seen_in_chunks: Collection[str],
    ) -> None:
        """With no endpoint to ask, the list is the only witness: an active run whose place a
        complete scan read without showing it is looked for once more, then given up."""
        if self._context.lookups.support is not Support.UNSUPPORTED:
            return
        for run in active.values():
            if (
                run.cursor_time >= floor
                and run.id not in read
                and run.id not in seen_in_chunks
                and not run.awaiting_detail
            ):
                self._context.missing.note(run.id, run.cursor_time)

    def _without_detail(self, seen: dict[str, Run], run_id: str, run: Run) -> None:
        """A failed run whose reason no lookup will give: counted from what the list says, code
        `unspecified` (said on `failure_details_unavailable` once it is counted)."""
        seen[run_id] = replace(
            run, needs_detail=False, error_code=run.error_code or UNSPECIFIED_CODE
        )
        self._reporting.detail_given_up.add(run_id)

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
            self._without_detail(seen, run_id, run)
        elif tracked is not None and tracked.awaiting_detail:
            vanished.append(run_id)
        elif tracked is not None:
            self._context.missing.note(run_id, tracked.cursor_time)

    def _note_missed_change(self, tracked: ActiveRun | None, fetched: Run) -> None:
        """A run whose list position promises every change (Extend's `updatedAt`) changed
        status without moving: the scan missed it, and counts lagged until this lookup."""
        provider = self._context.provider
        if tracked is None or tracked.awaiting_detail or not provider.cursor_tracks_changes:
            return
        if fetched.status is not tracked.status and fetched.cursor_time <= tracked.cursor_time:
            provider.events.inconsistency(
                "change_without_update",
                f"run {fetched.shown!r} went from {tracked.status} to {fetched.status} without its "
                "list timestamp moving; found by a lookup after recheck_after",
            )
