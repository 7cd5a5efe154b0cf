"""The store: survives restarts, commits whole cycles or nothing, forgets a source whole."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from exporter.core.accounting import CycleChanges, Observation
from exporter.core.model import RunStatus
from exporter.core.tracking import ActiveRun, Cursor
from exporter.core.units import DURATION, QUEUE_WAIT
from exporter.state.snapshot import Snapshot
from exporter.state.store import Store
from tests.core_runs import T0, at, cycle_into, make_run

BUCKETS: Mapping[str, Sequence[float]] = {DURATION: (1, 5, 10), QUEUE_WAIT: (1, 10)}
CURSOR = Cursor(baseline=at(-86400), watermark=at(0.123456), horizon=at(-86400))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    opened = Store(db, BUCKETS)
    yield opened
    opened.close()


def comparable(snap: Snapshot) -> dict[str, Any]:
    """A snapshot with its active runs in a fixed order (the store does not promise one)."""
    return {
        "providers": snap.providers,
        "workflows": snap.workflows,
        "finished": snap.finished,
        "errors": snap.errors,
        "histograms": snap.histograms,
        "active": {s: sorted(runs, key=lambda r: r.id) for s, runs in snap.active.items()},
        "last_finished": snap.last_finished,
    }


def first_cycle(store: Store) -> CycleChanges:
    return cycle_into(
        store,
        "src",
        [
            make_run("ok", status=RunStatus.SUCCEEDED, created=0, started=2, finished=4),
            make_run(
                "bad", status=RunStatus.FAILED, created=0, started=1, finished=30, error_code="E1"
            ),
            make_run("busy", status=RunStatus.RUNNING, created=0.5, started=3.25, progress=0.4),
            make_run("waiting", status=RunStatus.QUEUED, created=1, workflow="Claims"),
        ],
        now=at(40),
        cursor=CURSOR,
    )


# Persistence -----------------------------------------------------------------------------


def test_applied_changes_survive_reopening(db: Path) -> None:
    store = Store(db, BUCKETS)
    first_cycle(store)
    before = store.snapshot()
    store.close()

    reopened = Store(db, BUCKETS)
    try:
        assert comparable(reopened.snapshot()) == comparable(before)
        assert reopened.cursor("src") == CURSOR
        assert reopened.labels("src", "workflow") == {"Invoices", "Claims"}
        assert reopened.labels("src", "code") == {"E1"}
        assert reopened.counted_among("src", ["ok", "bad", "busy", "x"]) == {"ok", "bad"}
        assert reopened.counted_total("src") == 2
        busy = reopened.active("src")["busy"]
        assert busy == ActiveRun(
            id="busy",
            workflow="Invoices",
            status=RunStatus.RUNNING,
            created_at=at(0.5),
            cursor_time=at(0.5),
            progress=0.4,
            queue_wait_observed=True,
            last_seen=at(40),
            workflow_id="id-Invoices",
        )
    finally:
        reopened.close()


def test_counters_continue_after_a_restart(db: Path) -> None:
    store = Store(db, BUCKETS)
    first_cycle(store)
    store.close()

    store = Store(db, BUCKETS)
    changes = cycle_into(
        store,
        "src",
        [
            make_run("ok", status=RunStatus.SUCCEEDED, created=0, started=2, finished=4),
            make_run("busy", status=RunStatus.SUCCEEDED, created=0.5, started=3.25, finished=50),
            make_run("new", status=RunStatus.SUCCEEDED, created=45, started=46, finished=47),
        ],
        now=at(60),
    )
    assert changes.counted_ids == {"busy", "new"}
    store.close()

    store = Store(db, BUCKETS)
    try:
        snap = store.snapshot()
        assert snap.finished == {
            ("src", "Invoices", "succeeded"): 3,
            ("src", "Invoices", "failed"): 1,
        }
        assert snap.errors == {("src", "Invoices", "E1"): 1}
        duration = snap.histograms[(DURATION, "src", "Invoices", "succeeded")]
        assert duration.count == 3
        assert duration.sum == pytest.approx(2 + 46.75 + 1)
        assert set(store.active("src")) == {"waiting"}
    finally:
        store.close()


def test_last_finished_survives_a_restart_and_only_moves_forward(db: Path) -> None:
    store = Store(db, BUCKETS)
    first_cycle(store)
    store.close()

    store = Store(db, BUCKETS)
    assert store.snapshot().last_finished == {
        ("src", "Invoices", "succeeded"): at(4).timestamp(),
        ("src", "Invoices", "failed"): at(30).timestamp(),
    }
    # A run counted later that finished earlier (a slow page) leaves the newest finish alone.
    cycle_into(
        store,
        "src",
        [
            make_run("late", status=RunStatus.SUCCEEDED, created=0, started=1, finished=3),
            make_run("new", status=RunStatus.FAILED, created=45, started=46, finished=47),
        ],
        now=at(60),
    )
    store.close()

    store = Store(db, BUCKETS)
    try:
        assert store.snapshot().last_finished == {
            ("src", "Invoices", "succeeded"): at(4).timestamp(),
            ("src", "Invoices", "failed"): at(47).timestamp(),
        }
    finally:
        store.close()


def test_snapshot_is_a_copy(store: Store) -> None:
    first_cycle(store)
    snap = store.snapshot()
    snap.finished.clear()
    snap.histograms[(DURATION, "src", "Invoices", "succeeded")].observe(1000)
    snap.active["src"].clear()
    snap.workflows["src"].add("tampered")
    fresh = store.snapshot()
    assert fresh.finished
    assert fresh.histograms[(DURATION, "src", "Invoices", "succeeded")].count == 1
    assert len(fresh.active["src"]) == 2
    assert "tampered" not in fresh.workflows["src"]


# One transaction per apply ---------------------------------------------------------------


def _poisoned_changes() -> CycleChanges:
    """A cycle touching every table, with an already counted run id among its counted runs."""
    changes = CycleChanges()
    changes.finished[("Receipts", "succeeded")] += 1
    changes.errors[("Receipts", "E9")] += 1
    changes.observations.append(Observation(DURATION, "Receipts", "succeeded", 3.0))
    changes.observations.append(Observation(DURATION, "Invoices", "succeeded", 3.0))
    changes.new_workflows.append("Receipts")
    changes.new_codes.append("E9")
    changes.counted.extend([("fresh", at(50)), ("ok", at(4))])
    changes.active_removals.add("busy")
    changes.active_upserts["other"] = ActiveRun(
        id="other",
        workflow="Receipts",
        status=RunStatus.RUNNING,
        created_at=at(45),
        cursor_time=at(45),
    )
    return changes


def test_a_failing_apply_leaves_nothing_half_written(db: Path) -> None:
    store = Store(db, BUCKETS)
    first_cycle(store)
    before = comparable(store.snapshot())
    moved = Cursor(baseline=CURSOR.baseline, watermark=at(3600), horizon=at(-10))

    with pytest.raises(sqlite3.IntegrityError):
        store.apply("src", "plextera", _poisoned_changes(), moved)

    def unchanged(s: Store) -> None:
        assert comparable(s.snapshot()) == before
        assert s.cursor("src") == CURSOR
        assert s.labels("src", "workflow") == {"Invoices", "Claims"}
        assert s.labels("src", "code") == {"E1"}
        assert s.counted_among("src", ["fresh", "ok", "bad"]) == {"ok", "bad"}
        assert set(s.active("src")) == {"busy", "waiting"}

    unchanged(store)
    # No transaction is left open: the next cycle commits normally.
    cycle_into(store, "src", [make_run("later", status=RunStatus.SKIPPED, finished=70)], at(80))
    assert store.counted_among("src", ["later"]) == {"later"}
    store.close()

    reopened = Store(db, BUCKETS)
    try:
        assert reopened.counted_among("src", ["fresh"]) == set()
        assert ("src", "Receipts", "succeeded") not in reopened.snapshot().finished
        assert "other" not in reopened.active("src")
    finally:
        reopened.close()


def test_the_same_run_twice_in_one_apply_is_refused_whole(db: Path) -> None:
    store = Store(db, BUCKETS)
    changes = CycleChanges()
    changes.finished[("Invoices", "succeeded")] += 2
    changes.new_workflows.append("Invoices")
    changes.counted.extend([("twice", at(1)), ("twice", at(1))])
    with pytest.raises(sqlite3.IntegrityError):
        store.apply("src", "plextera", changes, CURSOR)
    assert store.snapshot().finished == {}
    assert store.cursor("src") is None
    store.close()
    reopened = Store(db, BUCKETS)
    try:
        assert reopened.snapshot().finished == {}
        assert reopened.labels("src", "workflow") == set()
        assert reopened.cursor("src") is None
    finally:
        reopened.close()


# Histograms ------------------------------------------------------------------------------


def _observe_durations(store: Store, values: Sequence[float]) -> None:
    changes = CycleChanges()
    for value in values:
        changes.observations.append(Observation(DURATION, "wf", "succeeded", value))
    store.apply("src", "plextera", changes, CURSOR)


def test_values_on_a_bound_fall_into_that_bucket(store: Store) -> None:
    _observe_durations(store, [0.5, 1, 3, 5, 7, 10, 100])
    hist = store.snapshot().histograms[(DURATION, "src", "wf", "succeeded")]
    assert hist.bounds == (1, 5, 10)
    assert hist.counts == [2, 2, 2, 1]
    assert hist.count == 7
    assert hist.sum == pytest.approx(126.5)


def test_histograms_are_rebinned_when_buckets_change(db: Path) -> None:
    store = Store(db, BUCKETS)
    _observe_durations(store, [0.5, 3, 5, 7, 100])
    store.close()

    coarser = Store(db, {**BUCKETS, DURATION: (10, 2)})  # given unsorted: the store sorts them
    try:
        hist = coarser.snapshot().histograms[(DURATION, "src", "wf", "succeeded")]
        # Old (<=1) -> <=2; old (<=5) and (<=10) -> <=10; +Inf stays.
        assert hist.bounds == (2, 10)
        assert hist.counts == [1, 3, 1]
        assert hist.count == 5
        assert hist.sum == pytest.approx(115.5)
        _observe_durations(coarser, [1.5])
    finally:
        coarser.close()

    again = Store(db, {**BUCKETS, DURATION: (2, 10)})
    try:
        hist = again.snapshot().histograms[(DURATION, "src", "wf", "succeeded")]
        assert hist.counts == [2, 3, 1]
        assert hist.count == 6
    finally:
        again.close()


# Pruning ---------------------------------------------------------------------------------


def test_counted_ids_finished_before_the_horizon_are_pruned(store: Store) -> None:
    changes = CycleChanges()
    changes.counted.extend([("old", at(-7200)), ("edge", at(-3600)), ("new", at(0))])
    horizon = Cursor(baseline=at(-86400), watermark=at(0), horizon=at(-3600))
    store.apply("src", "plextera", changes, horizon)
    assert store.counted_among("src", ["old", "edge", "new"]) == {"edge", "new"}

    later = Cursor(baseline=at(-86400), watermark=at(7200), horizon=at(1))
    store.apply("src", "plextera", CycleChanges(), later)
    assert store.counted_total("src") == 0


def test_pruning_touches_only_its_own_source(store: Store) -> None:
    for source in ("a", "b"):
        changes = CycleChanges()
        changes.counted.append(("run", at(-7200)))
        store.apply(source, "plextera", changes, CURSOR)
    store.apply("a", "plextera", CycleChanges(), Cursor(at(-86400), at(0), at(-3600)))
    assert store.counted_total("a") == 0
    assert store.counted_total("b") == 1


# Forgetting a source ---------------------------------------------------------------------


def test_forget_source_drops_every_trace_of_it(db: Path) -> None:
    store = Store(db, BUCKETS)
    for source in ("gone", "kept"):
        cycle_into(
            store,
            source,
            [
                make_run("f", status=RunStatus.FAILED, started=1, finished=5, error_code="E"),
                make_run("r", status=RunStatus.RUNNING, started=1),
            ],
            at(10),
            provider="noxus",
        )
    kept_before = store.snapshot()

    store.forget_source("gone")

    def forgotten(s: Store) -> None:
        snap = s.snapshot()
        assert "gone" not in snap.providers
        assert "gone" not in snap.workflows
        assert "gone" not in snap.active
        assert all(key[0] != "gone" for key in (*snap.finished, *snap.errors, *snap.last_finished))
        assert snap.last_finished == {("kept", "Invoices", "failed"): at(5).timestamp()}
        assert all(key[1] != "gone" for key in snap.histograms)
        # Also what only the mirror holds: birth times and exemplars.
        assert all(key[0] != "gone" for key in (*snap.born, *snap.exemplars))
        assert s.cursor("gone") is None
        assert s.counted_total("gone") == 0
        assert s.labels("gone", "workflow") == set()
        assert s.labels("gone", "code") == set()
        assert s.active("gone") == {}
        assert snap.finished == {k: v for k, v in kept_before.finished.items() if k[0] == "kept"}
        assert s.counted_total("kept") == 1
        assert set(s.active("kept")) == {"r"}
        assert s.cursor("kept") is not None

    forgotten(store)
    store.close()
    reopened = Store(db, BUCKETS)
    try:
        forgotten(reopened)
    finally:
        reopened.close()


def test_source_timestamps_survive_with_microseconds(db: Path) -> None:
    cursor = Cursor(
        baseline=at(-1.000001), watermark=T0 + timedelta(microseconds=7), horizon=at(-2)
    )
    store = Store(db, BUCKETS)
    store.apply("src", "plextera", CycleChanges(), cursor)
    store.close()
    reopened = Store(db, BUCKETS)
    try:
        assert reopened.cursor("src") == cursor
    finally:
        reopened.close()
