"""What every unit of a source's collection shares: its settings, provider, store, instruments and
log, and the few records that outlive a cycle (the lookup guard, the missing-runs record, the
audit walk, whether the state takes writes). Passed explicitly to the poll cycle, the hint path,
the commit and the reporting, so none of them reaches into another's state."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from exporter.collection.audit import AuditWalk
from exporter.collection.lookups import LookupGuard, MissingRuns
from exporter.core.accounting import ActiveRun, CycleChanges, SeriesBudget
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


def utc_now() -> datetime:
    return datetime.now(tz=UTC)


@dataclass(eq=False)
class SourceContext:
    """One source's collection state shared by its units. `settings` is replaced by a reload
    that changes only the source's labels (between cycles, under its lock)."""

    settings: SourceSettings
    provider: Provider[Any]
    store: Store
    instruments: SourceInstruments
    log: Any
    clock: Callable[[], datetime]
    # Whether the source's single-run endpoint may be relied on (`exporter.collection.lookups`).
    lookups: LookupGuard
    # Active runs a confirmed endpoint says are gone, by where they stood in the list: looked
    # for there (the next complete scan reads down to them) before they are given up.
    missing: MissingRuns
    audit: AuditWalk
    # Whether the state takes this source's writes: for /healthz and the log.
    state_writes: StateWrites
    series: SeriesBudget | None
    workflow_cost: int
    step_cost: int
    alerts: Callable[[], AlertHook | None]
    # A scan has completed in this process: what it did not count was not there at the
    # first start, so it is no backfill, even while the watermark has not moved (a source
    # whose window held no run yet). Kept in memory: after a restart, until the first
    # complete scan of a source that never saw a run, its counts show at once as before.
    scanned: bool = False

    @property
    def name(self) -> str:
        return self.settings.name

    def list_facts(self) -> dict[str, str]:
        """What the source's lists and lookups turned out to be (for `check` and `source_info`)."""
        return {**self.provider.list_facts(), "lookups": self.lookups.support.value}
