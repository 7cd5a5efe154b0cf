"""A state file that refuses writes (full, read-only) fails the source's collection as a health
reason, counted and said once, never a traceback per cycle; nothing counted is lost, and
counting resumes exactly when the fault clears.

The faults are SQLite's own: `max_page_count` at the file's current size is a full disk to
every write that needs a page more, `query_only` a read-only file (root writes through a
`chmod`, so that would test nothing here).
"""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.app import Exporter
from exporter.commands.run import server_hooks
from exporter.core.budgets import SeriesBudget, SeriesTab
from exporter.core.errors import StateWriteError
from exporter.core.model import RunStatus
from exporter.core.units import DEFAULT_BUCKETS
from exporter.state.store import Store
from exporter.web.health import Unwritable, problems
from exporter.web.server import MetricsServer
from tests.conftest import ExporterFactory, SimFactory, source_for
from tests.core_runs import at, cycle_into, make_run
from tests.loopback import Webhook, serve_webhook
from tests.series import by_labels, finished

WRITE_ERRORS = "workflow_exporter_state_write_errors_total"


def fill_disk(conn: sqlite3.Connection) -> str:
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    return "database or disk is full"


def free_disk(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA max_page_count = 1073741823")


def make_read_only(conn: sqlite3.Connection) -> str:
    conn.execute("PRAGMA query_only = ON")
    return "attempt to write a readonly database"


def make_writable(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA query_only = OFF")


Fault = tuple[Callable[[sqlite3.Connection], str], Callable[[sqlite3.Connection], None]]
FAULTS: dict[str, Fault] = {
    "disk-full": (fill_disk, free_disk),
    "read-only": (make_read_only, make_writable),
}


# The store ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
def test_a_refused_write_keeps_nothing_and_the_next_one_goes_through(
    tmp_path: Path, fault: Fault
) -> None:
    inject, clear = fault
    store = Store(tmp_path / "state.db", DEFAULT_BUCKETS)
    cycle_into(store, "plx", [make_run("warm", status=RunStatus.SUCCEEDED, finished=5)], at(10))
    runs = [make_run(f"r{i}", status=RunStatus.SUCCEEDED, finished=5) for i in range(300)]
    before = store.snapshot().finished
    expected = store.read(inject)

    with pytest.raises(StateWriteError) as refused:
        cycle_into(store, "plx", runs, at(20))
    assert str(refused.value) == f"state not writable: {expected}"
    assert store.snapshot().finished == before
    assert store.counted_among("plx", [r.id for r in runs]) == set()
    assert not store.read(lambda c: c.in_transaction), "the transaction was ended"

    store.read(clear)
    cycle_into(store, "plx", runs, at(30))
    assert store.snapshot().finished[("plx", "Invoices", "succeeded")] == 301
    store.close()


def test_a_mistake_in_a_statement_is_not_taken_for_a_refused_write(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db", DEFAULT_BUCKETS)
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        store.write(lambda c: c.execute("INSERT INTO no_such_table VALUES (1)"))
    store.close()


def test_state_not_writable_is_a_health_reason() -> None:
    assert problems([], None, [], [Unwritable("source plx", "database or disk is full")]) == [
        "state not writable: source plx: database or disk is full"
    ]


# Through the exporter, against a simulator ------------------------------------------------


@contextmanager
def serving(exporter: Exporter) -> Iterator[MetricsServer]:
    server = MetricsServer("127.0.0.1:0", server_hooks(exporter))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def write_errors(exporter: Exporter) -> dict[tuple[str, ...], int]:
    return dict(by_labels(exporter, WRITE_ERRORS, "plx", "source", nonzero=False))


def events(logs: io.StringIO, name: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    return [line for line in lines if str(line.get("event", "")).startswith(name)]


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
def test_a_state_refusing_writes_fails_health_once_said_and_loses_nothing(
    simulator: SimFactory,
    exporter_factory: ExporterFactory,
    captured_logs: io.StringIO,
    fault: Fault,
) -> None:
    inject, clear = fault
    sim = simulator("plextera", seed=47, arrival_rate_per_min=0)
    world = sim.world
    exporter = exporter_factory(
        [source_for(sim, "plextera", name="plx"), source_for(sim, "plextera", name="other")]
    )
    assert write_errors(exporter) == {("plx",): 0}, "created at zero"
    world.add_runs(20)
    assert all(report.ok for report in exporter.collect_all())
    used_before = exporter.series.used

    expected = exporter.store.read(inject)
    with serving(exporter) as server:
        for round_ in range(3):
            # Work goes on in the platform while nothing can be kept: enough of it that its
            # rows need pages the file cannot grow by.
            for run in world.add_runs(300, workflow=f"New {round_}"):
                world.finish(run.id, "COMPLETED" if round_ % 2 else "FAILED")
            report = exporter.collect_source("plx")
            assert not report.ok
            assert report.error == f"state not writable: {expected}"
        health = httpx.get(server.url("/healthz"), timeout=5)
        assert health.status_code == 503
        assert f"unhealthy: state not writable: source plx: {expected}\n" in health.text
        assert write_errors(exporter) == {("plx",): 3}
        # Nothing half-kept, and no series budget held by the workflows it could not admit.
        assert sum(finished(exporter, "plx").values()) == 0
        assert exporter.series.used == used_before

        exporter.store.read(clear)
        assert exporter.collect_source("plx").ok
        assert httpx.get(server.url("/healthz"), timeout=5).status_code == 200

    assert finished(exporter, "plx") == world.truth().finished
    assert write_errors(exporter) == {("plx",): 3}
    assert len(events(captured_logs, "state not writable")) == 1
    assert len(events(captured_logs, "state writable again")) == 1
    assert events(captured_logs, "collection crashed") == []
    assert "Traceback" not in captured_logs.getvalue()


def test_a_refused_write_gives_back_the_series_it_reserved() -> None:
    budget = SeriesBudget(limit=100, used=10)
    tab = SeriesTab(budget)
    assert tab.reserve(30)
    assert not tab.reserve(70)
    assert (tab.taken, budget.used) == (30, 40)
    budget.release(tab.taken)
    assert budget.used == 10


def test_an_outbox_that_cannot_record_a_delivery_is_a_health_reason_and_resends(
    simulator: SimFactory, exporter_factory: ExporterFactory, captured_logs: io.StringIO
) -> None:
    receiver = Webhook()
    server, port = serve_webhook(receiver)
    sim = simulator("plextera", seed=59, arrival_rate_per_min=0)
    (run,) = sim.world.add_runs(1)
    sim.world.finish(run.id, "FAILED")
    exporter = exporter_factory(
        [source_for(sim, "plextera", name="plx")],
        alerting={"alertmanagers": [{"url": f"http://127.0.0.1:{port}"}]},
    )
    try:
        assert exporter.collect_all()[0].ok
        assert exporter.alerting is not None
        assert exporter.alerting.outbox.depth() == 1

        expected = exporter.store.read(make_read_only)
        assert exporter.flush_alerts() == 0
        assert exporter.health() == [f"state not writable: alert outbox: {expected}"]
        assert len(receiver.notifications) == 1, "sent, but its delivery could not be recorded"

        exporter.store.read(make_writable)
        assert exporter.flush_alerts() == 1
        assert exporter.health() == []
        assert exporter.alerting.outbox.depth() == 0
        assert len(receiver.notifications) == 2, "sent again: Alertmanager folds the repeat"
    finally:
        server.shutdown()
        server.server_close()
    assert events(captured_logs, "alert delivery crashed") == []
    assert len(events(captured_logs, "state not writable")) == 1
