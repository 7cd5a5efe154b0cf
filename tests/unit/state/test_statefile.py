"""The state file: a new one gets the whole schema; files this exporter cannot use are refused
and left exactly as they were."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from exporter.core.errors import StateError
from exporter.core.model import RunStatus
from exporter.core.units import DURATION, QUEUE_WAIT
from exporter.state.statefile import MIGRATIONS, SCHEMA_VERSION, SOURCE_TABLES, open_state_file
from exporter.state.store import Store
from tests.core_runs import at, cycle_into, make_run


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


def file_state(path: Path) -> tuple[bytes, list[str]]:
    """The file's bytes and what lies beside it (a -wal or -shm file means it was touched)."""
    return path.read_bytes(), sorted(p.name for p in path.parent.iterdir())


def open_and_close(path: Path) -> None:
    open_state_file(str(path)).close()


def test_new_file_gets_the_current_schema_version(db: Path) -> None:
    open_and_close(db)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_every_table_with_a_source_is_cleared_when_the_source_is_forgotten(db: Path) -> None:
    open_and_close(db)
    conn = sqlite3.connect(db)
    try:
        tables = [
            name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        with_source = {
            table
            for table in tables
            if "source" in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        }
    finally:
        conn.close()
    # Queued alert events stay owed to Alertmanager after their source is gone.
    assert with_source - set(SOURCE_TABLES) == {"alert_outbox"}
    assert set(SOURCE_TABLES) <= with_source


def test_a_version_2_file_migrates_and_keeps_its_counts(db: Path) -> None:
    conn = sqlite3.connect(db)
    for script in MIGRATIONS[:2]:
        conn.executescript(script)
    conn.execute("INSERT INTO sources VALUES ('src', 'plextera', 0, 0, 0)")
    conn.execute("INSERT INTO labels VALUES ('src', 'workflow', 'Invoices')")
    conn.execute("INSERT INTO finished VALUES ('src', 'Invoices', 'succeeded', 7)")
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    conn.close()

    store = Store(db, {DURATION: (1, 5, 10), QUEUE_WAIT: (1, 10)})
    try:
        snap = store.snapshot()
        assert snap.finished == {("src", "Invoices", "succeeded"): 7}
        # What version 2 never recorded is not invented: the gauge waits for the next run.
        assert snap.last_finished == {}
        cycle_into(
            store,
            "src",
            [make_run("ok", status=RunStatus.SUCCEEDED, created=0, started=2, finished=4)],
            now=at(40),
        )
        assert store.snapshot().last_finished == {
            ("src", "Invoices", "succeeded"): at(4).timestamp()
        }
        version = store.read(lambda c: c.execute("PRAGMA user_version").fetchone()[0])
        assert version == SCHEMA_VERSION == 6
    finally:
        store.close()


def test_corrupt_file_is_refused_and_left_untouched(db: Path) -> None:
    db.write_bytes(random.Random(7).randbytes(16384))
    before = file_state(db)
    with pytest.raises(StateError) as caught:
        open_and_close(db)
    message = str(caught.value)
    assert str(db) in message
    assert "not a readable SQLite database" in message
    assert "move the file aside" in message
    assert file_state(db) == before


def test_damaged_store_file_is_refused(db: Path) -> None:
    store = Store(db, {DURATION: (1, 5, 10), QUEUE_WAIT: (1, 10)})
    cycle_into(
        store,
        "src",
        [
            make_run("ok", status=RunStatus.SUCCEEDED, created=0, started=2, finished=4),
            make_run("busy", status=RunStatus.RUNNING, created=0.5, started=3.25),
        ],
        now=at(40),
    )
    store.close()
    data = bytearray(db.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    # Wreck every page after the first (the schema stays readable, the tables do not).
    rng = random.Random(3)
    data[page_size:] = rng.randbytes(len(data) - page_size)
    db.write_bytes(bytes(data))
    before = file_state(db)
    with pytest.raises(StateError, match="move the file aside"):
        open_and_close(db)
    assert file_state(db) == before


def test_file_of_another_program_is_refused_and_left_untouched(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE bookmarks (url TEXT)")
    conn.execute("INSERT INTO bookmarks VALUES ('https://example.com')")
    conn.commit()
    conn.close()
    before = file_state(db)
    with pytest.raises(StateError) as caught:
        open_and_close(db)
    assert "another program" in str(caught.value)
    assert "move the file aside" in str(caught.value)
    assert file_state(db) == before


def test_newer_schema_version_is_refused(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE sources (source TEXT)")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    before = file_state(db)
    with pytest.raises(StateError) as caught:
        open_and_close(db)
    assert f"schema version {SCHEMA_VERSION + 1}" in str(caught.value)
    assert "newer" in str(caught.value)
    assert file_state(db) == before


def test_path_that_cannot_be_opened_is_a_state_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="state file"):
        open_and_close(tmp_path)
    with pytest.raises(StateError, match="state file"):
        open_and_close(tmp_path / "missing-dir" / "state.db")
