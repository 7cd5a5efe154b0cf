"""What a source's collection says after it commits: the self-metrics it counts and the lines it
logs about what was counted (failures, reopened and vanished runs, name collisions, nested runs
the list never showed), what the audit walk found late, runs dated ahead of the clock, and failures
counted without their detail. Each is said once per run; none of it changes what is counted."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from exporter.collection.audit import found_late
from exporter.collection.context import SourceContext
from exporter.core.accounting import CycleChanges
from exporter.core.model import Run, RunStatus
from exporter.core.skew import AheadOfClock

# Each "said once per run" record is cleared at this size: memory stays bounded, and a run
# said again after that is only said twice.
_REMEMBERED = 10_000


class CycleReporting:
    def __init__(self, context: SourceContext) -> None:
        self._context = context
        self._reopened_logged: set[str] = set()
        self._nested_reported: set[str] = set()
        self._ahead_reported: set[str] = set()
        self._ahead_said = False
        # Failed runs of this cycle counted without their failure detail (lookups unsupported).
        self.detail_given_up: set[str] = set()

    def committed(self, seen: Mapping[str, Run], changes: CycleChanges) -> None:
        """What a commit (a chunk, a cycle's last one, a batch of hints) says of its changes."""
        self._report_changes(changes, len(seen))
        self._check_nested(seen, changes)
        self._log_failures(changes)

    def without_details(self, changes: CycleChanges, parked: list[str]) -> None:
        if not self.detail_given_up and not parked:
            return
        ids = changes.counted_ids
        count = sum(1 for run_id in (*self.detail_given_up, *parked) if run_id in ids)
        self.detail_given_up.clear()
        if count:
            self._context.instruments.details_unavailable(count)

    def found_late(
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
            self._context.instruments.found_late(reason, count)
            self._context.log.warning(
                "the audit walk found runs the incremental scan had missed; counted now",
                reason=reason,
                count=count,
            )

    def ahead(self, ahead: AheadOfClock) -> None:
        if not ahead.runs:
            return
        fresh = [run_id for run_id in ahead.runs if run_id not in self._ahead_reported]
        if len(self._ahead_reported) >= _REMEMBERED:
            self._ahead_reported.clear()
        self._ahead_reported.update(fresh)
        if not fresh:
            return
        if not self._ahead_said:
            # Said once (and kept for `check`); each further run dated ahead is only counted.
            self._ahead_said = True
            self._context.provider.events.inconsistency(
                "clock_ahead",
                f"{len(fresh)} run(s) dated more than clock_skew_tolerance ahead of this "
                f"exporter's clock (the furthest by {ahead.most:.0f} s more): counted, but they "
                "do not move the watermark",
            )
            fresh = fresh[1:]
        for _ in fresh:
            self._context.instruments.scan_inconsistency("clock_ahead")

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
        store, name = self._context.store, self._context.name
        unseen = nested - store.counted_among(name, nested) - store.active(name).keys()
        for nested_id in sorted(unseen):
            if len(self._nested_reported) >= _REMEMBERED:
                self._nested_reported.clear()
            self._nested_reported.add(nested_id)
            self._context.provider.events.inconsistency(
                "nested_run_unlisted",
                f"run {nested_id!r} is nested in a finished run's steps but the runs list never "
                "showed it: it is not counted",
            )

    def _log_failures(self, changes: CycleChanges) -> None:
        """Free-text error messages never become labels; they are logged once, here. From what
        was counted, not what was read: a parked failure that vanished was counted unread."""
        for run in changes.finished_runs:
            if run.status is RunStatus.FAILED:
                self._context.log.info(
                    "run failed",
                    run_id=run.shown,
                    workflow=run.workflow,
                    code=run.code,
                    message=(run.error_message or "")[:500],
                    dashboard_url=run.dashboard_url,
                )

    def _report_changes(self, changes: CycleChanges, seen: int) -> None:
        instruments, provider, log = (
            self._context.instruments,
            self._context.provider,
            self._context.log,
        )
        instruments.ingested(seen)
        if changes.invalid_steps:
            # Once, when the run carrying them is counted (re-reads of it are not counted again).
            instruments.invalid_record("step", changes.invalid_steps)
        for label, count in changes.dropped_labels.items():
            instruments.labels_dropped(label, count)
        shown = provider.sanitizer.text
        for name, workflow_id, owner in changes.name_collisions:
            # Once: the suffixed value is owned from now on (kept with the state).
            provider.events.inconsistency(
                "workflow_name_collision",
                f"workflows {shown(owner, 256)!r} and {shown(workflow_id, 256)!r} both read "
                f"{name!r}; the latter is counted as its own series, its label suffixed",
            )
        for run_id in changes.reopened:
            if run_id not in self._reopened_logged:
                if len(self._reopened_logged) >= _REMEMBERED:
                    self._reopened_logged.clear()
                self._reopened_logged.add(run_id)
                log.info(
                    "run reopened after it was counted; it stays counted with its first final "
                    "status (a retry under the same id is not a new run)",
                    run_id=run_id,
                )
        if changes.vanished:
            instruments.vanished(len(changes.vanished))
            log.info(
                "active runs no longer exist in the API; dropped without counting",
                count=len(changes.vanished),
            )
