"""The alert outbox in the state file: events wait here until every Alertmanager took them.

An event is written in the transaction that counts its run (`writer`), so it exists exactly when
the count does. It leaves the outbox once each configured Alertmanager has accepted it; which
ones have is recorded per target, so a restart resends only what was not yet accepted. The tables
are declared with the state file (`exporter.state.alerttables`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from exporter.alerting.events import AlertEvent, AlertPlan, OpenAlert

T = TypeVar("T")


class StateAccess(Protocol):
    """The state file as the outbox needs it (`exporter.state.store.Store` is one). Named here
    rather than imported, so this package imports nothing of `state` (which holds this package's
    tables: `exporter.state.alerttables`)."""

    def read(self, query: Callable[[sqlite3.Connection], T]) -> T: ...

    def write(self, change: Callable[[sqlite3.Connection], T]) -> T: ...


def writer(source: str, plan: AlertPlan, now: datetime) -> Callable[[sqlite3.Connection], None]:
    def write(c: sqlite3.Connection) -> None:
        c.executemany(
            "INSERT OR IGNORE INTO alert_outbox VALUES (?, ?, ?, ?)",
            [
                (e.key, e.source, json.dumps(e.payload, sort_keys=True), now.timestamp())
                for e in plan.events
            ],
        )
        c.executemany(
            "INSERT OR REPLACE INTO alert_open VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    source,
                    a.run_id,
                    a.kind,
                    a.started_at.timestamp(),
                    a.last_sent.timestamp(),
                    a.sends,
                    json.dumps(dict(a.labels), sort_keys=True),
                    json.dumps(dict(a.annotations), sort_keys=True),
                )
                for a in plan.opened
            ],
        )
        c.executemany(
            "DELETE FROM alert_open WHERE source = ? AND run_id = ? AND kind = ?",
            [(source, run_id, kind) for run_id, kind in plan.closed],
        )

    return write


class Outbox:
    def __init__(self, store: StateAccess) -> None:
        self._store = store

    def open_alerts(self, source: str) -> dict[tuple[str, str], OpenAlert]:
        rows = self._store.read(
            lambda c: c.execute(
                "SELECT run_id, kind, started, last_sent, sends, labels, annotations "
                "FROM alert_open WHERE source = ?",
                (source,),
            ).fetchall()
        )
        return {
            (run_id, kind): OpenAlert(
                run_id,
                kind,
                datetime.fromtimestamp(started, tz=UTC),
                datetime.fromtimestamp(last_sent, tz=UTC),
                sends,
                json.loads(labels),
                json.loads(annotations),
            )
            for run_id, kind, started, last_sent, sends, labels, annotations in rows
        }

    def pending(self, target: str, limit: int) -> list[AlertEvent]:
        """The oldest events `target` has not accepted yet."""
        rows = self._store.read(
            lambda c: c.execute(
                "SELECT key, source, payload FROM alert_outbox o WHERE NOT EXISTS "
                "(SELECT 1 FROM alert_sent s WHERE s.key = o.key AND s.target = ?) "
                "ORDER BY enqueued, key LIMIT ?",
                (target, limit),
            ).fetchall()
        )
        return [AlertEvent(key, source, json.loads(payload)) for key, source, payload in rows]

    def accepted(self, target: str, keys: Sequence[str], targets: Sequence[str]) -> None:
        """Records that `target` took `keys`; events every target took leave the outbox."""

        def change(c: sqlite3.Connection) -> None:
            c.executemany(
                "INSERT OR IGNORE INTO alert_sent VALUES (?, ?)", [(k, target) for k in keys]
            )
            marks = ",".join("?" * len(targets))
            done = [
                key
                for key in keys
                if c.execute(
                    f"SELECT count(*) FROM alert_sent WHERE key = ? AND target IN ({marks})",
                    (key, *targets),
                ).fetchone()[0]
                == len(targets)
            ]
            c.executemany("DELETE FROM alert_outbox WHERE key = ?", [(k,) for k in done])
            c.executemany("DELETE FROM alert_sent WHERE key = ?", [(k,) for k in done])

        self._store.write(change)

    def depth(self) -> int:
        row = self._store.read(lambda c: c.execute("SELECT count(*) FROM alert_outbox").fetchone())
        return int(row[0])
