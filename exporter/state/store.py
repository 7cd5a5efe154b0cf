"""SQLite state: which runs were counted, the aggregates behind every metric, active runs, cursors.

The file is the single source of truth. Each cycle's changes commit in one transaction, together
with the cursor that produced them, so a crash either keeps a whole cycle or none of it: a cycle
that did not commit is simply read again. Aggregates and active runs are mirrored in memory after
each commit, so a scrape renders from a consistent snapshot without touching the disk.
Opening the file and its schema are `exporter.state.statefile`'s; the rows a cycle writes,
`exporter.state.cyclewrite`'s; what a scrape renders, `exporter.state.snapshot`'s.

Over 300 lines with no named split: reading, committing and mirroring share one connection and
one lock; the file, the rows and the snapshot already live apart.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from exporter.core.accounting import CycleChanges
from exporter.core.budgets import OTHER_LABEL
from exporter.core.errors import StateWriteError
from exporter.core.model import Run
from exporter.core.tracking import ActiveRun, Cursor
from exporter.core.units import DEFAULT_BUCKETS, DURATION
from exporter.state import statefile
from exporter.state.cyclewrite import write_cycle
from exporter.state.rows import STEP_STATUSES, active_from_row, born_series, epoch, instant
from exporter.state.snapshot import Histogram, Snapshot

T = TypeVar("T")

# SQLite's primary result codes for a file that does not take a write (the errors' extended
# codes carry one of these in their low byte): busy or locked past busy_timeout, no permission,
# read-only, an I/O error, the disk full, the file gone or damaged underneath.
_REFUSED_WRITES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_NOTADB,
    }
)


class Store:
    def __init__(self, path: str | Path, buckets: Mapping[str, Sequence[float]]) -> None:
        self.path = str(path)
        self._buckets = {metric: tuple(sorted(b)) for metric, b in buckets.items()}
        self._lock = threading.RLock()
        self._conn = statefile.open_state_file(self.path)
        self._mirror = Snapshot()
        self._cursors: dict[str, Cursor] = {}
        self._committed: list[Callable[[str, CycleChanges], None]] = []
        # Sources with ids counted before the upgrade to schema 6 still unpruned (`counted_v5`).
        self._legacy: set[str] = set()
        self._load()

    def _load(self) -> None:
        c = self._conn
        m = self._mirror
        for source, provider, baseline, watermark, horizon in c.execute(
            "SELECT source, provider, baseline, watermark, horizon FROM sources"
        ):
            m.providers[source] = provider
            self._cursors[source] = Cursor(instant(baseline), instant(watermark), instant(horizon))
        for source, series, born in c.execute("SELECT source, series, born FROM series_born"):
            m.born[(source, series)] = born
        for source, label, value in c.execute("SELECT source, label, value FROM labels"):
            if label == "workflow":
                m.workflows.setdefault(source, set()).add(value)
        for source, workflow, status, count in c.execute("SELECT * FROM finished"):
            m.finished[(source, workflow, status)] = count
        for source, workflow, code, count in c.execute("SELECT * FROM errors"):
            m.errors[(source, workflow, code)] = count
        for metric, source, workflow, status, bounds, counts, total, count in c.execute(
            "SELECT * FROM histograms"
        ):
            stored = statefile.histogram_from_columns(bounds, counts, total, count)
            m.histograms[(metric, source, workflow, status)] = stored.rebinned(self._bounds(metric))
        for source, workflow, status, finished_at in c.execute(
            "SELECT source, workflow, status, finished_at FROM last_finished"
        ):
            m.last_finished[(source, workflow, status)] = finished_at
        for source, workflow, step, status, count in c.execute(
            "SELECT source, workflow, step, status, count FROM steps"
        ):
            m.steps[(source, workflow, step, status)] = count
        for row in c.execute("SELECT * FROM active"):
            m.active.setdefault(row[0], []).append(active_from_row(row))
        self._legacy = {source for (source,) in c.execute("SELECT DISTINCT source FROM counted_v5")}

    def _bounds(self, metric: str) -> tuple[float, ...]:
        # A store opened with only the run histograms' buckets still takes step durations.
        return self._buckets.get(metric) or DEFAULT_BUCKETS[metric]

    # Reads ---------------------------------------------------------------------------------

    def cursor(self, source: str) -> Cursor | None:
        with self._lock:
            return self._cursors.get(source)

    def active(self, source: str) -> dict[str, ActiveRun]:
        with self._lock:
            return {run.id: run for run in self._mirror.active.get(source, [])}

    def labels(self, source: str, label: str) -> set[str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT value FROM labels WHERE source = ? AND label = ?", (source, label)
            )
            return {value for (value,) in rows}

    def workflow_owners(self, source: str) -> dict[str, str]:
        """Which workflow id each `workflow` label value of the source stands for."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT workflow, workflow_id FROM workflow_owners WHERE source = ?", (source,)
            )
            return dict(rows.fetchall())

    def error_pairs(self, source: str) -> set[tuple[str, str]]:
        with self._lock:
            return {(wf, code) for (s, wf, code) in self._mirror.errors if s == source}

    def series_in_use(self, workflow_cost: int, step_cost: int = 0) -> int:
        """What the stored label values already take of the series budget: what admitting them
        took. `other` is admitted past the budget without reserving (a folded workflow, a folded
        code), so it is not charged here either; a workflow's `other` step was reserved with its
        first step."""
        with self._lock:
            workflows = sum(len(w - {OTHER_LABEL}) for w in self._mirror.workflows.values())
            errors = sum(1 for _s, _wf, code in self._mirror.errors if code != OTHER_LABEL)
            pairs = {key[:3] for key in self._mirror.steps}
            # A workflow with steps has its `other` step reserved too, admitted or not.
            folded = {(s, wf) for s, wf, step in pairs if step == OTHER_LABEL}
            steps = len(pairs) + len({(s, wf) for s, wf, _step in pairs} - folded)
            return workflows * workflow_cost + errors + steps * step_cost

    def step_pairs(self, source: str) -> set[tuple[str, str]]:
        """The (workflow, step) pairs a source has admitted."""
        with self._lock:
            return {(wf, step) for (s, wf, step, _status) in self._mirror.steps if s == source}

    def counted_among(
        self, source: str, runs: Iterable[str] | Mapping[str, Run | None]
    ) -> set[str]:
        """The keys among `runs` (keys, or runs by key) already counted.

        A run counted before the upgrade to schema 6 was recorded by its id as shown (cleaned,
        and unscoped: `counted_v5`); until those rows are pruned, a run is found there by
        `Run.shown` (a bare key stands for itself). Two runs that show alike were one run to
        that version, and stay counted as it counted them."""
        keys = list(runs)
        with self._lock:
            found = self._found(source, "counted", keys)
            if source not in self._legacy or len(found) == len(keys):
                return found
            by_shown: dict[str, list[str]] = {}
            for key in keys:
                if key not in found:
                    run = runs.get(key) if isinstance(runs, Mapping) else None
                    by_shown.setdefault(key if run is None else run.shown, []).append(key)
            for shown in self._found(source, "counted_v5", list(by_shown)):
                found.update(by_shown[shown])
        return found

    def _found(self, source: str, table: str, keys: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT run_id FROM {table} WHERE source = ? AND run_id IN ({marks})",
                (source, *chunk),
            )
            found.update(run_id for (run_id,) in rows)
        return found

    def counted_total(self, source: str) -> int:
        with self._lock:
            return sum(
                int(
                    self._conn.execute(
                        f"SELECT count(*) FROM {table} WHERE source = ?", (source,)
                    ).fetchone()[0]
                )
                for table in ("counted", "counted_v5")
            )

    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._mirror.copy()

    # The one write path --------------------------------------------------------------------

    def apply(
        self,
        source: str,
        provider: str,
        changes: CycleChanges,
        cursor: Cursor,
        also: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        """Commits one cycle's changes and the cursor in one transaction, then mirrors them.
        `also` writes more in the same transaction (the alert outbox), so both land or neither."""
        with self._lock:
            histograms = self._observe(source, changes)

            def write(c: sqlite3.Connection) -> None:
                write_cycle(c, source, provider, changes, cursor, histograms)
                if also is not None:
                    also(c)

            self._transaction(write)
            if source in self._legacy and not self._holds_legacy(source):
                self._legacy.discard(source)
            self._mirror_apply(source, provider, changes, cursor, histograms)
            for listener in self._committed:
                listener(source, changes)

    def _holds_legacy(self, source: str) -> bool:
        row = self._conn.execute("SELECT 1 FROM counted_v5 WHERE source = ? LIMIT 1", (source,))
        return row.fetchone() is not None

    def on_commit(self, listener: Callable[[str, CycleChanges], None]) -> None:
        """`listener(source, changes)` after each cycle's changes are committed (what people
        read about recent runs is fed here, so it never shows a run the store has not counted)."""
        self._committed.append(listener)

    def _observe(
        self, source: str, changes: CycleChanges
    ) -> dict[tuple[str, str, str, str], Histogram]:
        touched: dict[tuple[str, str, str, str], Histogram] = {}
        for obs in changes.observations:
            key = (obs.metric, source, obs.workflow, obs.status)
            hist = touched.get(key)
            if hist is None:
                current = self._mirror.histograms.get(key)
                hist = current.copy() if current else Histogram.empty(self._bounds(obs.metric))
                touched[key] = hist
            hist.observe(obs.value)
        return touched

    def _mirror_apply(
        self,
        source: str,
        provider: str,
        changes: CycleChanges,
        cursor: Cursor,
        histograms: Mapping[tuple[str, str, str, str], Histogram],
    ) -> None:
        m = self._mirror
        m.providers[source] = provider
        self._cursors[source] = cursor
        m.workflows.setdefault(source, set()).update(changes.new_workflows)
        for series in born_series(changes):
            m.born.setdefault((source, series), changes.born_at)
        for (wf, status), n in changes.finished.items():
            key = (source, wf, status)
            m.finished[key] = m.finished.get(key, 0) + n
        for (wf, code), n in changes.errors.items():
            ekey = (source, wf, code)
            m.errors[ekey] = m.errors.get(ekey, 0) + n
        for (wf, status), when in changes.last_finished.items():
            lkey = (source, wf, status)
            m.last_finished[lkey] = max(m.last_finished.get(lkey, 0.0), epoch(when))
        for wf, step in changes.new_steps:
            for status in STEP_STATUSES:
                m.steps.setdefault((source, wf, step, status), 0)
        for (wf, step, status), n in changes.steps.items():
            skey = (source, wf, step, status)
            m.steps[skey] = m.steps.get(skey, 0) + n
        m.histograms.update(histograms)
        # The latest run behind each duration bucket, once its cycle is committed.
        for obs in changes.observations:
            if obs.run_id and obs.metric == DURATION and math.isfinite(obs.value):
                hist = m.histograms[(obs.metric, source, obs.workflow, obs.status)]
                bucket = bisect.bisect_left(hist.bounds, obs.value)
                m.exemplars.setdefault((source, obs.workflow, obs.status), {})[bucket] = (
                    obs.run_id,
                    obs.value,
                    obs.at,
                )
        if changes.active_removals or changes.active_upserts:
            runs = {r.id: r for r in m.active.get(source, [])}
            for run_id in changes.active_removals:
                runs.pop(run_id, None)
            runs.update(changes.active_upserts)
            m.active[source] = list(runs.values())

    def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Runs `query` on the connection, between commits."""
        with self._lock:
            return query(self._conn)

    def write(self, change: Callable[[sqlite3.Connection], T]) -> T:
        """Runs `change` in its own transaction."""
        with self._lock:
            return self._transaction(change)

    def _transaction(self, change: Callable[[sqlite3.Connection], T]) -> T:
        """`change` committed whole, or nothing of it: a write the file refuses (disk full,
        read-only, an I/O error) raises `StateWriteError` after the rollback."""
        c = self._conn
        try:
            c.execute("BEGIN IMMEDIATE")
            try:
                result = change(c)
                c.execute("COMMIT")
            except BaseException:
                # SQLite may have rolled back already (a full disk can end the transaction).
                if c.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        c.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            if exc.sqlite_errorcode & 0xFF not in _REFUSED_WRITES:
                raise  # a mistake in a statement is a bug, not a state that refuses writes
            raise StateWriteError(exc) from exc
        except OSError as exc:
            raise StateWriteError(exc) from exc
        return result

    def forget_source(self, source: str) -> None:
        """Drops every trace of a source (used when a source is removed for good)."""
        with self._lock:
            self._transaction(lambda c: statefile.forget_source(c, source))
            # Every series of the source, whatever the snapshot holds (birth times, exemplars).
            self._mirror = self._mirror.without(source)
            self._cursors.pop(source, None)
            self._legacy.discard(source)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
