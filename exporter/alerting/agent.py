"""The alerting agent as the rest of the exporter sees it: a hook for each collection cycle and a
flush for the scheduler."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from datetime import datetime

from exporter.alerting.delivery import DeliveryObserver, Sender
from exporter.alerting.events import Planner
from exporter.alerting.outbox import Outbox, StateAccess, writer
from exporter.config.alerting import AlertingSettings
from exporter.core.accounting import CycleChanges
from exporter.core.logs import registered_secrets
from exporter.core.tracking import ActiveRun


def active_after(active: Mapping[str, ActiveRun], changes: CycleChanges) -> dict[str, ActiveRun]:
    """The active runs as they will be once the cycle commits."""
    runs = {run_id: run for run_id, run in active.items() if run_id not in changes.active_removals}
    runs.update(changes.active_upserts)
    return runs


class AlertAgent:
    def __init__(
        self, settings: AlertingSettings, store: StateAccess, observer: DeliveryObserver
    ) -> None:
        self.settings = settings
        self.outbox = Outbox(store)
        self.planner = Planner(settings, secrets=registered_secrets)
        self.sender = Sender(settings, self.outbox, observer)

    def for_cycle(
        self,
        source: str,
        provider: str,
        changes: CycleChanges,
        active: Mapping[str, ActiveRun],
        now: datetime,
        static_labels: Mapping[str, str] | None = None,
    ) -> Callable[[sqlite3.Connection], None]:
        """What to write with this cycle's commit: its events and the open-alert changes."""
        plan = self.planner.plan(
            source,
            provider,
            changes.finished_runs,
            active_after(active, changes),
            self.outbox.open_alerts(source),
            now,
            static_labels,
        )
        return writer(source, plan, now)

    def flush(self) -> int:
        return self.sender.flush()

    def close(self) -> None:
        self.sender.close()
