"""The alerting package's tables in the state file: the outbox, what each target took, and the
alerts still open.

They live with the state file, which takes them into its one schema history
(`exporter.state.statefile.MIGRATIONS`), so the state package depends on no feature package; this
module imports nothing.
"""

from __future__ import annotations

# Version 2 of the state file. Released: a change is a new step, never an edit of this one.
TABLES = """
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
"""

# What forgetting a source clears. Its events still in the outbox stay: they were counted, and
# Alertmanager is owed them.
SOURCE_TABLES = ("alert_open",)
