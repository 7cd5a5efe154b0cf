"""The hint path: runs a signed webhook event named, looked up by id (or taken whole from the
event where the provider documents it so) and committed through the same decide-and-commit as a
poll. It never moves the cursor: a hint says nothing about what a scan has covered."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exporter.collection.commit import Commit
from exporter.collection.context import SourceContext
from exporter.collection.lookups import Outcome
from exporter.core.accounting import Cursor, merge_sighting
from exporter.core.errors import SourceError, StateWriteError
from exporter.core.model import Run


@dataclass(frozen=True, slots=True)
class HintReport:
    lookups: int
    counted: int
    failure: Exception | None = None


class HintPath:
    def __init__(self, context: SourceContext, commit: Commit) -> None:
        self._context = context
        self._commit = commit

    def apply(self, run_ids: Sequence[str], payloads: Mapping[str, Any]) -> HintReport:
        """Looks up the runs webhook events named and commits what they show, through the same
        decide-and-commit as a cycle (the caller holds the source's cycle lock).

        The cursor is kept as it is: a hint says nothing about what a scan has covered, and a
        run it counts is skipped by the next scan because its id is counted. A run the API no
        longer has (deleted right after finishing) is taken from the signed event's payload,
        when that carried it finished."""
        context = self._context
        name, s, store = context.name, context.settings, context.store
        now = context.clock()
        cursor = store.cursor(name) or Cursor.first_start(now, s.backfill)
        active = store.active(name)
        seen: dict[str, Run] = {}
        vanished: list[str] = []
        failure: Exception | None = None
        lookups = 0
        wanted = dict.fromkeys(run_ids)
        # A run already counted needs no lookup: a platform's retried delivery costs nothing.
        for run_id in store.counted_among(name, wanted):
            del wanted[run_id]
        verdicts: dict[tuple[str, str | None], bool] = {}
        whole = context.provider.events_carry_whole_runs
        for run_id in wanted:
            # Where the provider documents the event's run whole, its workflow and state are
            # known before any lookup; elsewhere the copy only stands in for a deleted run.
            carried = self._event_run(run_id, payloads.get(run_id)) if whole else None
            if carried is not None and not self._commit.admits(carried, verdicts):
                continue  # its workflow is left out: no lookup (screened below all the same)
            if carried is not None and self._final(carried):
                merge_sighting(seen, carried)
                continue
            if lookups >= s.lookup_budget or not context.lookups.usable:
                continue  # waits for the poll, which finds it anyway (carried runs cost none)
            tracked = active.get(run_id)
            lookups += 1
            try:
                result = context.lookups.look_up(
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
                    context.missing.note(run_id, tracked.cursor_time)  # the next poll looks
        # The source's workflow filters hold for hints as for polls.
        seen, active, left_out = self._commit.screen(seen, active)
        counted = store.counted_among(name, seen)
        changes = self._commit.decide(seen, vanished, active, counted, cursor, now)
        changes.active_removals |= left_out
        try:
            self._commit.apply(seen, changes, active, cursor, now)
        except StateWriteError as exc:
            # Nothing kept: the poll counts these runs once the state takes writes.
            return HintReport(lookups=lookups, counted=0, failure=exc)
        if failure is not None:
            context.log.warning(
                "webhook hint lookup failed; the next poll finds the run", error=str(failure)
            )
        return HintReport(lookups=lookups, counted=len(changes.counted), failure=failure)

    def _event_run(self, run_id: str, payload: Any) -> Run | None:
        """The run a signed event carried, decoded once, if it is the run the event named."""
        if payload is None:
            return None
        run = self._context.provider.run_from_event(payload)
        return run if run is not None and run.id == run_id else None

    def _final(self, run: Run) -> bool:
        """Whether a run an event carried whole can be counted from it: finished, its failure
        reason in hand, its steps there if they are counted. Anything less is looked up."""
        return (
            run.terminal
            and not run.needs_detail
            and not (self._context.provider.counts_steps_of(run) and not run.steps)
        )
