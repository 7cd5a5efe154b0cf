"""SQLite state: which runs were counted, the aggregates behind every metric, active runs, cursors.

The file is the single source of truth. Each cycle's changes commit in one transaction, together
with the cursor that produced them, so a crash either keeps a whole cycle or none of it: a cycle
that did not commit is simply read again. Aggregates and active runs are mirrored in memory after
each commit, so a scrape renders from a consistent snapshot without touching the disk.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from exporter.accounting import ActiveRun, Cursor, CycleChanges
from exporter.errors import StateError
from exporter.logs import get_logger
from exporter.model import RunStatus

T = TypeVar("T")

SCHEMA_VERSION = 2

# Each entry upgrades the schema from version i to i+1; a new file runs them all in order.
MIGRATIONS: Sequence[str] = (
    """
    CREATE TABLE sources (
        source TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        baseline REAL NOT NULL,
        watermark REAL NOT NULL,
        horizon REAL NOT NULL
    );
    CREATE TABLE counted (
        source TEXT NOT NULL,
        run_id TEXT NOT NULL,
        prune_key REAL NOT NULL,
        PRIMARY KEY (source, run_id)
    ) WITHOUT ROWID;
    CREATE INDEX counted_prune ON counted (source, prune_key);
    CREATE TABLE active (
        source TEXT NOT NULL,
        run_id TEXT NOT NULL,
        workflow TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        cursor_time REAL NOT NULL,
        progress REAL,
        queue_wait_observed INTEGER NOT NULL,
        awaiting_detail INTEGER NOT NULL,
        last_seen REAL,
        workflow_id TEXT,
        PRIMARY KEY (source, run_id)
    ) WITHOUT ROWID;
    CREATE TABLE labels (
        source TEXT NOT NULL,
        label TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (source, label, value)
    ) WITHOUT ROWID;
    CREATE TABLE finished (
        source TEXT NOT NULL, workflow TEXT NOT NULL, status TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (source, workflow, status)
    ) WITHOUT ROWID;
    CREATE TABLE errors (
        source TEXT NOT NULL, workflow TEXT NOT NULL, code TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (source, workflow, code)
    ) WITHOUT ROWID;
    CREATE TABLE histograms (
        metric TEXT NOT NULL, source TEXT NOT NULL, workflow TEXT NOT NULL, status TEXT NOT NULL,
        bounds TEXT NOT NULL,
        counts TEXT NOT NULL,
        sum REAL NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (metric, source, workflow, status)
    ) WITHOUT ROWID;
    """,
    # 2: the alerting agent's outbox (exporter/alerting/outbox.py).
    """
    CREATE TABLE alert_outbox (
        key TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        payload TEXT NOT NULL,
        enqueued REAL NOT NULL
    );
    CREATE INDEX alert_outbox_order ON alert_outbox (enqueued, key);
    CREATE TABLE alert_sent (
        key TEXT NOT NULL,
        target TEXT NOT NULL,
        PRIMARY KEY (key, target)
    ) WITHOUT ROWID;
    CREATE TABLE alert_open (
        source TEXT NOT NULL,
        run_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        started REAL NOT NULL,
        last_sent REAL NOT NULL,
        sends INTEGER NOT NULL,
        labels TEXT NOT NULL,
        annotations TEXT NOT NULL,
        PRIMARY KEY (source, run_id, kind)
    ) WITHOUT ROWID;
    """,
)


log = get_logger("exporter.store")


def _ts(value: datetime) -> float:
    return value.timestamp()


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


@dataclass(slots=True)
class Histogram:
    bounds: tuple[float, ...]  # upper bounds, +Inf implied
    counts: list[int]  # per bucket, not cumulative; len(bounds) + 1
    sum: float = 0.0
    count: int = 0

    @classmethod
    def empty(cls, bounds: Sequence[float]) -> Histogram:
        return cls(tuple(bounds), [0] * (len(bounds) + 1))

    def observe(self, value: float) -> None:
        if not math.isfinite(value):
            return  # never reaches here from a provider (sanitised); a sum must stay finite
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def estimated_sum(self) -> float:
        """Each bucket's count at its midpoint (the last, open one at its lower bound)."""
        lowers = [0.0, *self.bounds]
        uppers = [*self.bounds, self.bounds[-1] if self.bounds else 0.0]
        return sum(
            n * (low + high) / 2 for low, high, n in zip(lowers, uppers, self.counts, strict=True)
        )

    def rebinned(self, bounds: Sequence[float]) -> Histogram:
        """Moves each old bucket into the smallest new bucket that still contains it."""
        if tuple(bounds) == self.bounds:
            return self
        new = Histogram.empty(bounds)
        old_uppers = [*self.bounds, float("inf")]
        for upper, count in zip(old_uppers, self.counts, strict=True):
            new.counts[bisect.bisect_left(new.bounds, upper)] += count
        new.sum, new.count = self.sum, self.count
        return new

    def copy(self) -> Histogram:
        return Histogram(self.bounds, list(self.counts), self.sum, self.count)


@dataclass(slots=True)
class Snapshot:
    """What a scrape renders; a copy, so collection can go on while it is rendered."""

    providers: dict[str, str] = field(default_factory=dict)
    workflows: dict[str, set[str]] = field(default_factory=dict)
    finished: dict[tuple[str, str, str], int] = field(default_factory=dict)
    errors: dict[tuple[str, str, str], int] = field(default_factory=dict)
    histograms: dict[tuple[str, str, str, str], Histogram] = field(default_factory=dict)
    active: dict[str, list[ActiveRun]] = field(default_factory=dict)

    def only(self, sources: set[str]) -> Snapshot:
        return Snapshot(
            providers={s: p for s, p in self.providers.items() if s in sources},
            workflows={s: w for s, w in self.workflows.items() if s in sources},
            finished={k: v for k, v in self.finished.items() if k[0] in sources},
            errors={k: v for k, v in self.errors.items() if k[0] in sources},
            histograms={k: v for k, v in self.histograms.items() if k[1] in sources},
            active={s: runs for s, runs in self.active.items() if s in sources},
        )


class Store:
    def __init__(self, path: str | Path, buckets: Mapping[str, Sequence[float]]) -> None:
        self.path = str(path)
        self._buckets = {metric: tuple(sorted(b)) for metric, b in buckets.items()}
        self._lock = threading.RLock()
        self._conn = self._connect()
        self._mirror = Snapshot()
        self._cursors: dict[str, Cursor] = {}
        self._load()

    # Opening -------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        recovery = (
            "Recovery: stop the exporter, move the file aside (keep it for inspection) and start "
            "again; the exporter then begins afresh, counting each source's backfill window."
        )
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA busy_timeout=5000")
            check = conn.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise StateError(
                    f"state file {self.path!r} is corrupt (quick_check: {check}). {recovery}"
                )
            version = self._usable_version(conn, recovery)
            # Only a file known to be ours (or a new one) may be changed: switching to WAL
            # rewrites the file header and leaves -wal/-shm files beside it.
            # WAL: scrapes never wait for a collection's write. synchronous=FULL: a commit is on
            # disk before the cycle reports success, so even a power cut cannot roll a counter
            # back below what Prometheus already scraped (a SIGKILL alone is safe at NORMAL).
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            # After a checkpoint the WAL file is cut back to this, so it cannot only grow.
            conn.execute("PRAGMA journal_size_limit=4194304")
            conn.execute("PRAGMA foreign_keys=ON")
            self._migrate(conn, version)
        except StateError:
            _close_quietly(conn)
            raise
        except sqlite3.DatabaseError as exc:
            _close_quietly(conn)
            raise StateError(
                f"state file {self.path!r} is not a readable SQLite database ({exc}). {recovery}"
            ) from None
        except OSError as exc:
            _close_quietly(conn)
            raise StateError(f"state file {self.path!r} cannot be opened ({exc})") from None
        return conn

    def _usable_version(self, conn: sqlite3.Connection, recovery: str) -> int:
        """The file's schema version; refuses, without writing, a file this exporter cannot use."""
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise StateError(
                f"state file {self.path!r} holds tables of another program (no schema version). "
                f"{recovery}"
            )
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state file {self.path!r} has schema version {version}, newer than this "
                f"exporter's {SCHEMA_VERSION}: run the newer version, or move the file aside."
            )
        return version

    def _migrate(self, conn: sqlite3.Connection, version: int) -> None:
        for target in range(version + 1, SCHEMA_VERSION + 1):
            conn.execute("BEGIN IMMEDIATE")
            for statement in _statements(MIGRATIONS[target - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={target}")
            conn.execute("COMMIT")

    def _load(self) -> None:
        c = self._conn
        m = self._mirror
        for source, provider, baseline, watermark, horizon in c.execute(
            "SELECT source, provider, baseline, watermark, horizon FROM sources"
        ):
            m.providers[source] = provider
            self._cursors[source] = Cursor(_dt(baseline), _dt(watermark), _dt(horizon))
        for source, label, value in c.execute("SELECT source, label, value FROM labels"):
            if label == "workflow":
                m.workflows.setdefault(source, set()).add(value)
        for source, workflow, status, count in c.execute("SELECT * FROM finished"):
            m.finished[(source, workflow, status)] = count
        for source, workflow, code, count in c.execute("SELECT * FROM errors"):
            m.errors[(source, workflow, code)] = count
        repaired: list[tuple[float, str, str, str, str]] = []
        for metric, source, workflow, status, bounds, counts, total, count in c.execute(
            "SELECT * FROM histograms"
        ):
            stored = Histogram(
                _floats(bounds), [int(x) for x in counts.split(",")], float(total), int(count)
            )
            if not math.isfinite(stored.sum):
                stored.sum = stored.estimated_sum()
                repaired.append((stored.sum, metric, source, workflow, status))
            m.histograms[(metric, source, workflow, status)] = stored.rebinned(
                self._buckets[metric]
            )
        if repaired:
            # Written by a version that let an infinite duration through: the sum would stay
            # infinite for ever. Its buckets are intact; their midpoints stand in for it.
            with c:
                c.executemany(
                    "UPDATE histograms SET sum = ? "
                    "WHERE metric = ? AND source = ? AND workflow = ? AND status = ?",
                    repaired,
                )
            log.warning(
                "state held non-finite histogram sums; each replaced by an estimate from its "
                "buckets",
                series=len(repaired),
                first=f"{repaired[0][1]} {repaired[0][2]}/{repaired[0][3]}",
            )
        for row in c.execute("SELECT * FROM active"):
            m.active.setdefault(row[0], []).append(_active_from_row(row))

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

    def error_pairs(self, source: str) -> set[tuple[str, str]]:
        with self._lock:
            return {(wf, code) for (s, wf, code) in self._mirror.errors if s == source}

    def series_in_use(self, workflow_cost: int) -> int:
        """What the stored label values already take of the series budget."""
        with self._lock:
            workflows = sum(len(w) for w in self._mirror.workflows.values())
            return workflows * workflow_cost + len(self._mirror.errors)

    def counted_among(self, source: str, run_ids: Iterable[str]) -> set[str]:
        ids = list(run_ids)
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT run_id FROM counted WHERE source = ? AND run_id IN ({marks})",
                    (source, *chunk),
                )
                found.update(run_id for (run_id,) in rows)
        return found

    def counted_total(self, source: str) -> int:
        with self._lock:
            return int(
                self._conn.execute(
                    "SELECT count(*) FROM counted WHERE source = ?", (source,)
                ).fetchone()[0]
            )

    def snapshot(self) -> Snapshot:
        with self._lock:
            m = self._mirror
            return Snapshot(
                providers=dict(m.providers),
                workflows={s: set(w) for s, w in m.workflows.items()},
                finished=dict(m.finished),
                errors=dict(m.errors),
                histograms={k: h.copy() for k, h in m.histograms.items()},
                active={s: list(runs) for s, runs in m.active.items()},
            )

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
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                self._write(c, source, provider, changes, cursor, histograms)
                if also is not None:
                    also(c)
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
            self._mirror_apply(source, provider, changes, cursor, histograms)

    def _observe(
        self, source: str, changes: CycleChanges
    ) -> dict[tuple[str, str, str, str], Histogram]:
        touched: dict[tuple[str, str, str, str], Histogram] = {}
        for obs in changes.observations:
            key = (obs.metric, source, obs.workflow, obs.status)
            hist = touched.get(key)
            if hist is None:
                current = self._mirror.histograms.get(key)
                hist = current.copy() if current else Histogram.empty(self._buckets[obs.metric])
                touched[key] = hist
            hist.observe(obs.value)
        return touched

    def _write(
        self,
        c: sqlite3.Connection,
        source: str,
        provider: str,
        changes: CycleChanges,
        cursor: Cursor,
        histograms: Mapping[tuple[str, str, str, str], Histogram],
    ) -> None:
        c.execute(
            "INSERT INTO sources VALUES (?, ?, ?, ?, ?) ON CONFLICT(source) DO UPDATE SET "
            "provider = excluded.provider, watermark = excluded.watermark, "
            "horizon = excluded.horizon",
            (source, provider, _ts(cursor.baseline), _ts(cursor.watermark), _ts(cursor.horizon)),
        )
        c.executemany(
            "INSERT INTO labels VALUES (?, 'workflow', ?) ON CONFLICT DO NOTHING",
            [(source, w) for w in changes.new_workflows],
        )
        c.executemany(
            "INSERT INTO labels VALUES (?, 'code', ?) ON CONFLICT DO NOTHING",
            [(source, code) for code in changes.new_codes],
        )
        c.executemany(
            "INSERT INTO counted VALUES (?, ?, ?)",
            [(source, run_id, _ts(key)) for run_id, key in changes.counted],
        )
        c.executemany(
            "INSERT INTO finished VALUES (?, ?, ?, ?) "
            "ON CONFLICT (source, workflow, status) DO UPDATE SET "
            "count = count + excluded.count",
            [(source, wf, status, n) for (wf, status), n in changes.finished.items()],
        )
        c.executemany(
            "INSERT INTO errors VALUES (?, ?, ?, ?) "
            "ON CONFLICT (source, workflow, code) DO UPDATE SET "
            "count = count + excluded.count",
            [(source, wf, code, n) for (wf, code), n in changes.errors.items()],
        )
        c.executemany(
            "INSERT OR REPLACE INTO histograms VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (*key, _join(h.bounds), _join(h.counts), h.sum, h.count)
                for key, h in histograms.items()
            ],
        )
        c.executemany(
            "DELETE FROM active WHERE source = ? AND run_id = ?",
            [(source, run_id) for run_id in changes.active_removals],
        )
        c.executemany(
            "INSERT OR REPLACE INTO active VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [_active_to_row(source, run) for run in changes.active_upserts.values()],
        )
        # Pruning is safe exactly because accounting ignores runs finished before the horizon.
        c.execute(
            "DELETE FROM counted WHERE source = ? AND prune_key < ?",
            (source, _ts(cursor.horizon)),
        )

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
        for (wf, status), n in changes.finished.items():
            key = (source, wf, status)
            m.finished[key] = m.finished.get(key, 0) + n
        for (wf, code), n in changes.errors.items():
            ekey = (source, wf, code)
            m.errors[ekey] = m.errors.get(ekey, 0) + n
        m.histograms.update(histograms)
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
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                result = change(c)
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
            return result

    def forget_source(self, source: str) -> None:
        """Drops every trace of a source (used when a source is removed for good)."""
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            for table in (
                "sources",
                "counted",
                "active",
                "labels",
                "finished",
                "errors",
                "alert_open",
            ):
                c.execute(f"DELETE FROM {table} WHERE source = ?", (source,))
            c.execute("DELETE FROM histograms WHERE source = ?", (source,))
            c.execute("COMMIT")
            m = self._mirror
            m.providers.pop(source, None)
            m.workflows.pop(source, None)
            m.active.pop(source, None)
            self._cursors.pop(source, None)
            m.finished = {k: v for k, v in m.finished.items() if k[0] != source}
            m.errors = {k: v for k, v in m.errors.items() if k[0] != source}
            m.histograms = {k: v for k, v in m.histograms.items() if k[1] != source}

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _close_quietly(conn: sqlite3.Connection | None) -> None:
    if conn is not None:
        with contextlib.suppress(sqlite3.Error):
            conn.close()


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _join(values: Iterable[float | int]) -> str:
    return ",".join(repr(v) for v in values)


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",")) if text else ()


def _active_to_row(
    source: str, run: ActiveRun
) -> tuple[str, str, str, str, float, float, float | None, int, int, float | None, str | None]:
    return (
        source,
        run.id,
        run.workflow,
        run.status.value,
        _ts(run.created_at),
        _ts(run.cursor_time),
        run.progress,
        int(run.queue_wait_observed),
        int(run.awaiting_detail),
        _ts(run.last_seen) if run.last_seen else None,
        run.workflow_id,
    )


def _active_from_row(row: tuple[object, ...]) -> ActiveRun:
    (
        _source,
        run_id,
        workflow,
        status,
        created,
        cursor_time,
        progress,
        qwo,
        awaiting,
        seen,
        workflow_id,
    ) = row
    assert isinstance(created, float)
    assert isinstance(cursor_time, float)
    return ActiveRun(
        id=str(run_id),
        workflow=str(workflow),
        status=RunStatus(str(status)),
        created_at=_dt(created),
        cursor_time=_dt(cursor_time),
        progress=float(progress) if isinstance(progress, int | float) else None,
        queue_wait_observed=bool(qwo),
        awaiting_detail=bool(awaiting),
        last_seen=_dt(seen) if isinstance(seen, float) else None,
        workflow_id=str(workflow_id) if workflow_id is not None else None,
    )
