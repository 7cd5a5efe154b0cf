"""The state file itself: opening it, its schema history, and what it refuses.

A file is changed only once it is known to be ours (or new): a corrupt file, one of another
program, or one written by a newer version is refused with what to do, and left as it was.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
from collections.abc import Iterable, Sequence

from exporter.core.errors import StateError
from exporter.core.logs import get_logger
from exporter.core.model import scoped_id
from exporter.state import alerttables
from exporter.state.snapshot import Histogram

# Version 1: what the exporter counts. Released: a change is a new step, never an edit of this one.
COUNTING_TABLES = """
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
"""

# Version 4: when the newest run of each workflow reached each terminal status. A file migrated
# from an older version starts empty here: the gauge appears with the next run that finishes.
LAST_FINISHED_TABLE = """
    CREATE TABLE last_finished (
        source TEXT NOT NULL, workflow TEXT NOT NULL, status TEXT NOT NULL,
        finished_at REAL NOT NULL,
        PRIMARY KEY (source, workflow, status)
    ) WITHOUT ROWID;
"""

# The file's one schema history, whoever owns each table: entry i upgrades version i to i+1, and
# a new file runs them all in order. It is a fixed list rather than a registry filled at import,
# so the version a file gets never depends on which modules happened to be loaded.
# 3: when each counter series was born, so its first increments wait until it has been served at
# zero (Prometheus never counts a series' first sample).
SERIES_BORN = """
    CREATE TABLE series_born (
        source TEXT NOT NULL, series TEXT NOT NULL, born REAL NOT NULL,
        PRIMARY KEY (source, series)
    ) WITHOUT ROWID;
"""

# 5: the steps of counted runs. A file migrated from an older version starts empty here: runs
# counted before the upgrade had their steps uncounted, and stay so (steps count from the
# upgrade on, as a new counter would). Step durations live in `histograms` (metric
# `step_duration`, the step in the `status` column), which needs no change.
STEPS_TABLE = """
    CREATE TABLE steps (
        source TEXT NOT NULL, workflow TEXT NOT NULL, step TEXT NOT NULL, status TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (source, workflow, step, status)
    ) WITHOUT ROWID;
"""


# 6: a run's key is the API's id exactly, scoped as the API scopes it (`Run.id`); version 5 kept
# ids cleaned (`Run.shown`) and Cortex's unscoped. Active runs keep their key and, beside it, the
# id as shown: Cortex's are scoped by the workflow id each row holds (`scoped_id`, a function
# `open_state_file` gives the connection), and so are their open alerts. Counted ids cannot be
# rewritten (a counted row names no workflow, and cleaning cannot be undone): they move to
# `counted_v5`, where a run is looked up by its id as shown until the rows are pruned like any
# (`Store.counted_among`), so nothing counted before the upgrade is counted again.
# `workflow_owners`: which workflow id each `workflow` label value stands for (`LabelBudget`);
# labels of a migrated file are claimed by the first workflow counted under them.
RUN_KEYS = """
    ALTER TABLE active ADD COLUMN shown_id TEXT;
    UPDATE active SET shown_id = run_id, run_id = scoped_id(workflow_id, run_id)
        WHERE workflow_id IS NOT NULL
        AND source IN (SELECT source FROM sources WHERE provider = 'cortex');
    UPDATE alert_open SET run_id = (
            SELECT a.run_id FROM active a
            WHERE a.source = alert_open.source AND a.shown_id = alert_open.run_id
        )
        WHERE EXISTS (
            SELECT 1 FROM active a
            WHERE a.source = alert_open.source AND a.shown_id = alert_open.run_id
        );
    CREATE TABLE counted_v5 (
        source TEXT NOT NULL,
        run_id TEXT NOT NULL,
        prune_key REAL NOT NULL,
        PRIMARY KEY (source, run_id)
    ) WITHOUT ROWID;
    CREATE INDEX counted_v5_prune ON counted_v5 (source, prune_key);
    INSERT INTO counted_v5 SELECT source, run_id, prune_key FROM counted;
    DELETE FROM counted;
    CREATE TABLE workflow_owners (
        source TEXT NOT NULL, workflow TEXT NOT NULL, workflow_id TEXT NOT NULL,
        PRIMARY KEY (source, workflow)
    ) WITHOUT ROWID;
"""


MIGRATIONS: Sequence[str] = (
    COUNTING_TABLES,
    alerttables.TABLES,
    SERIES_BORN,
    LAST_FINISHED_TABLE,
    STEPS_TABLE,
    RUN_KEYS,
)
SCHEMA_VERSION = len(MIGRATIONS)

# Tables whose rows each belong to one source, so forgetting the source deletes them.
SOURCE_TABLES: Sequence[str] = (
    "sources",
    "counted",
    "active",
    "labels",
    "finished",
    "errors",
    "histograms",
    "series_born",
    "last_finished",
    "steps",
    "counted_v5",
    "workflow_owners",
    *alerttables.SOURCE_TABLES,
)

RECOVERY = (
    "Recovery: stop the exporter, move the file aside (keep it for inspection) and start "
    "again; the exporter then begins afresh, counting each source's backfill window."
)

log = get_logger("exporter.statefile")


def open_state_file(path: str) -> sqlite3.Connection:
    """A connection in autocommit mode (callers open their own transactions), at the current
    schema version; raises StateError, with what to do, for a file this exporter cannot use."""
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=5000")
        check = conn.execute("PRAGMA quick_check").fetchone()
        if check is None or check[0] != "ok":
            raise StateError(f"state file {path!r} is corrupt (quick_check: {check}). {RECOVERY}")
        version = _usable_version(conn, path)
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
        # What the version 6 migration scopes Cortex's active runs with.
        conn.create_function("scoped_id", 2, scoped_id, deterministic=True)
        _migrate(conn, version)
        _repair_non_finite_sums(conn)
    except StateError:
        _close_quietly(conn)
        raise
    except sqlite3.DatabaseError as exc:
        _close_quietly(conn)
        raise StateError(
            f"state file {path!r} is not a readable SQLite database ({exc}). {RECOVERY}"
        ) from None
    except OSError as exc:
        _close_quietly(conn)
        raise StateError(f"state file {path!r} cannot be opened ({exc})") from None
    return conn


def forget_source(conn: sqlite3.Connection, source: str) -> None:
    """Deletes the source's rows from every table that holds some (inside the caller's
    transaction)."""
    for table in SOURCE_TABLES:
        conn.execute(f"DELETE FROM {table} WHERE source = ?", (source,))


def _usable_version(conn: sqlite3.Connection, path: str) -> int:
    """The file's schema version; refuses, without writing, a file this exporter cannot use."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        raise StateError(
            f"state file {path!r} holds tables of another program (no schema version). {RECOVERY}"
        )
    if version > SCHEMA_VERSION:
        raise StateError(
            f"state file {path!r} has schema version {version}, newer than this "
            f"exporter's {SCHEMA_VERSION}: run the newer version, or move the file aside."
        )
    return version


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        for statement in _statements(MIGRATIONS[target - 1]):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={target}")
        conn.execute("COMMIT")


def _repair_non_finite_sums(conn: sqlite3.Connection) -> None:
    # Written by a version that let an infinite duration through: the sum would stay infinite
    # for ever. Its buckets are intact; their midpoints stand in for it.
    repaired: list[tuple[float, str, str, str, str]] = []
    for metric, source, workflow, status, bounds, counts, total, count in conn.execute(
        "SELECT * FROM histograms"
    ):
        if not math.isfinite(float(total)):
            stored = histogram_from_columns(bounds, counts, total, count)
            repaired.append((stored.estimated_sum(), metric, source, workflow, status))
    if not repaired:
        return
    with conn:
        conn.executemany(
            "UPDATE histograms SET sum = ? "
            "WHERE metric = ? AND source = ? AND workflow = ? AND status = ?",
            repaired,
        )
    log.warning(
        "state held non-finite histogram sums; each replaced by an estimate from its buckets",
        series=len(repaired),
        first=f"{repaired[0][1]} {repaired[0][2]}/{repaired[0][3]}",
    )


def histogram_columns(hist: Histogram) -> tuple[str, str, float, int]:
    """The `bounds, counts, sum, count` columns of a histogram row."""
    return _join(hist.bounds), _join(hist.counts), hist.sum, hist.count


def histogram_from_columns(bounds: str, counts: str, total: float, count: int) -> Histogram:
    floats = tuple(float(x) for x in bounds.split(",")) if bounds else ()
    return Histogram(floats, [int(x) for x in counts.split(",")], float(total), int(count))


def _join(values: Iterable[float | int]) -> str:
    return ",".join(repr(v) for v in values)


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _close_quietly(conn: sqlite3.Connection | None) -> None:
    if conn is not None:
        with contextlib.suppress(sqlite3.Error):
            conn.close()
