"""A source's collection as the app and the tests see it: one facade over its units.

`SourceCollector` builds the shared context (`context`) and hands it to the units that own the
work: the poll cycle (`poll`, with its lookups by id in `rechecks`), the webhook hint path
(`hints`), the decide-and-commit both share (`commit`) and what is said after a commit
(`reporting`). It keeps no state of its own beyond them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from exporter.collection.audit import AuditWalk
from exporter.collection.commit import Commit
from exporter.collection.context import AlertHook, SourceContext, utc_now
from exporter.collection.hints import HintPath, HintReport
from exporter.collection.lookups import LookupGuard, MissingRuns
from exporter.collection.poll import CycleReport, PollCycle
from exporter.collection.rechecks import Rechecks
from exporter.collection.reporting import CycleReporting
from exporter.core.accounting import SeriesBudget
from exporter.core.errors import StateWriteError
from exporter.exposition.selfmetrics import SourceInstruments
from exporter.providers import Provider, SourceSettings
from exporter.state.statewrites import StateWrites
from exporter.state.store import Store

__all__ = ["AlertHook", "CycleReport", "HintReport", "SourceCollector", "utc_now"]


class SourceCollector:
    # A scan that reads more runs than this commits them in chunks (`PollCycle._commit_chunk`):
    # about a kilobyte each while held, so a catch-up cycle stays within tens of megabytes.
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
        self._context = SourceContext(
            settings=settings,
            provider=provider,
            store=store,
            instruments=instruments,
            log=log,
            clock=clock,
            lookups=LookupGuard(provider.get_run, self._say_lookups),
            missing=MissingRuns(),
            audit=AuditWalk(settings.audit_interval, settings.audit_requests_per_cycle),
            state_writes=StateWrites(
                f"source {settings.name}", log, instruments.state_write_refused
            ),
            series=series,
            workflow_cost=workflow_cost,
            step_cost=step_cost,
            alerts=alerts,
        )
        reporting = CycleReporting(self._context)
        commit = Commit(self._context, reporting)
        self._poll = PollCycle(self._context, commit, Rechecks(self._context, reporting), reporting)
        self._hints = HintPath(self._context, commit)

    # What the app, `check` and the tests read of a source ---------------------------------------

    @property
    def settings(self) -> SourceSettings:
        return self._context.settings

    @settings.setter
    def settings(self, settings: SourceSettings) -> None:
        # A reload that changes only the source's labels swaps them here, between cycles.
        self._context.settings = settings

    @property
    def provider(self) -> Provider[Any]:
        return self._context.provider

    @property
    def instruments(self) -> SourceInstruments:
        return self._context.instruments

    @property
    def lookups(self) -> LookupGuard:
        return self._context.lookups

    @property
    def audit(self) -> AuditWalk:
        return self._context.audit

    @property
    def state_writes(self) -> StateWrites:
        return self._context.state_writes

    def list_facts(self) -> dict[str, str]:
        """What the source's lists and lookups turned out to be (for `check` and `source_info`)."""
        return self._context.list_facts()

    # The work -------------------------------------------------------------------------------------

    def collect(self) -> CycleReport:
        started = time.perf_counter()
        try:
            report = self._poll.run(self.chunk_runs)
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

    def apply_hints(self, run_ids: Sequence[str], payloads: Mapping[str, Any]) -> HintReport:
        """Looks up the runs webhook events named and commits what they show (the caller holds
        the source's cycle lock; see `exporter.collection.hints`)."""
        return self._hints.apply(run_ids, payloads)

    def _say_lookups(self, fact: str, value: str, detail: str) -> None:
        provider = self._context.provider
        changed = provider.list_facts().get(fact) != value
        provider.say_once(fact, value, detail)
        if changed and value == "unsupported":
            # Once per change: a retry that finds the endpoint still absent says nothing new.
            self._context.log.warning("single-run lookups do not work for this source", why=detail)
