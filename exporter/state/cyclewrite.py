"""The write path of a cycle: the rows one cycle's changes and its cursor add to the state file,
and the pruning its horizon allows (the store runs it in one transaction)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from exporter.core.accounting import CycleChanges
from exporter.core.tracking import Cursor
from exporter.state import statefile
from exporter.state.rows import STEP_STATUSES, active_to_row, born_series, epoch
from exporter.state.snapshot import Histogram


def write_cycle(
    c: sqlite3.Connection,
    source: str,
    provider: str,
    changes: CycleChanges,
    cursor: Cursor,
    histograms: Mapping[tuple[str, str, str, str], Histogram],
) -> None:
    """One cycle's changes and the cursor that produced them, in the caller's transaction."""
    c.execute(
        "INSERT INTO sources VALUES (?, ?, ?, ?, ?) ON CONFLICT(source) DO UPDATE SET "
        "provider = excluded.provider, watermark = excluded.watermark, "
        "horizon = excluded.horizon",
        (source, provider, epoch(cursor.baseline), epoch(cursor.watermark), epoch(cursor.horizon)),
    )
    c.executemany(
        "INSERT INTO labels VALUES (?, 'workflow', ?) ON CONFLICT DO NOTHING",
        [(source, w) for w in changes.new_workflows],
    )
    c.executemany(
        "INSERT INTO workflow_owners VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        [(source, label, owner) for label, owner in changes.new_owners.items()],
    )
    c.executemany(
        "INSERT INTO labels VALUES (?, 'code', ?) ON CONFLICT DO NOTHING",
        [(source, code) for code in changes.new_codes],
    )
    c.executemany(
        "INSERT INTO series_born VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        [(source, series, changes.born_at) for series in born_series(changes)],
    )
    c.executemany(
        "INSERT INTO counted VALUES (?, ?, ?)",
        [(source, run_id, epoch(key)) for run_id, key in changes.counted],
    )
    c.executemany(
        "INSERT INTO finished VALUES (?, ?, ?, ?) "
        "ON CONFLICT (source, workflow, status) DO UPDATE SET "
        "count = count + excluded.count",
        [(source, wf, status, n) for (wf, status), n in changes.finished.items()],
    )
    c.executemany(
        "INSERT INTO last_finished VALUES (?, ?, ?, ?) "
        "ON CONFLICT (source, workflow, status) DO UPDATE SET "
        "finished_at = max(finished_at, excluded.finished_at)",
        [(source, wf, status, epoch(when)) for (wf, status), when in changes.last_finished.items()],
    )
    c.executemany(
        "INSERT INTO errors VALUES (?, ?, ?, ?) "
        "ON CONFLICT (source, workflow, code) DO UPDATE SET "
        "count = count + excluded.count",
        [(source, wf, code, n) for (wf, code), n in changes.errors.items()],
    )
    c.executemany(
        "INSERT INTO steps VALUES (?, ?, ?, ?, 0) ON CONFLICT DO NOTHING",
        [(source, wf, step, status) for wf, step in changes.new_steps for status in STEP_STATUSES],
    )
    c.executemany(
        "INSERT INTO steps VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (source, workflow, step, status) DO UPDATE SET "
        "count = count + excluded.count",
        [(source, wf, step, status, n) for (wf, step, status), n in changes.steps.items()],
    )
    c.executemany(
        "INSERT OR REPLACE INTO histograms VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(*key, *statefile.histogram_columns(h)) for key, h in histograms.items()],
    )
    c.executemany(
        "DELETE FROM active WHERE source = ? AND run_id = ?",
        [(source, run_id) for run_id in changes.active_removals],
    )
    c.executemany(
        "INSERT OR REPLACE INTO active VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [active_to_row(source, run) for run in changes.active_upserts.values()],
    )
    # Pruning is safe exactly because accounting ignores runs finished before the horizon.
    for table in ("counted", "counted_v5"):
        c.execute(
            f"DELETE FROM {table} WHERE source = ? AND prune_key < ?",
            (source, epoch(cursor.horizon)),
        )
