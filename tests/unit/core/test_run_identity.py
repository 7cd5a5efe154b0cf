"""A run's identity is exactly the API's id, scoped as the API scopes it: never the cleaned text
people read. Two ids that clean alike are two runs; Cortex run ids that repeat across workflows
are two runs; two workflows whose names read alike are two series. A state file of the previous
schema (ids cleaned, Cortex's unscoped) upgrades without counting a run again or losing one."""

from __future__ import annotations

import hashlib
import sqlite3
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from exporter.alerting.events import Planner
from exporter.config.alerting import AlertingSettings
from exporter.core.accounting import FinishedRun, decide
from exporter.core.budgets import LabelBudget
from exporter.core.model import MAX_ID_LENGTH, RunStatus, id_problem, scoped_id, split_scoped_id
from exporter.core.tracking import Cursor
from exporter.core.units import DURATION, QUEUE_WAIT
from exporter.providers.client import ApiClient
from exporter.providers.plextera import PlexteraProvider, PlexteraSettings
from exporter.providers.retry import RetryPolicy
from exporter.simulator.cortex import CortexSimulator
from exporter.simulator.records import SimWorkflow
from exporter.simulator.variant import ApiVariant
from exporter.state.statefile import SCHEMA_VERSION
from exporter.state.store import Store
from tests.conftest import PROVIDERS, ExporterFactory, SimFactory, source_for
from tests.core_runs import at, cycle_into, make_run, wide_cursor
from tests.series import active, by_labels, finished

# Pure: keys ---------------------------------------------------------------------------------


def test_scoped_ids_never_meet_and_give_both_parts_back() -> None:
    pairs = [
        ("wf", "r1"),
        ("wf/x", "r1"),
        ("wf", "x/r1"),
        ("wf%2Fx", "r1"),
        ("wf", "r1\x01"),
        ("wf", "r1\x02"),
        ("wf\x00", "r1"),
        ("w f", "ré 1"),
    ]
    keys = [scoped_id(workflow, run) for workflow, run in pairs]
    assert len(set(keys)) == len(pairs)
    assert [split_scoped_id(key) for key in keys] == pairs
    assert split_scoped_id("r1") is None  # a bare id is no scoped key
    assert split_scoped_id("wf/%FF") is None  # nor is one whose quoting is not UTF-8


def test_an_id_that_cannot_be_a_key_says_why() -> None:
    assert id_problem("run-1\x01") is None  # kept exactly: control characters are no problem
    assert id_problem("r" * MAX_ID_LENGTH) is None
    assert id_problem("r" * (MAX_ID_LENGTH + 1)) == f"is longer than {MAX_ID_LENGTH} characters"
    assert id_problem("") == "is empty"
    assert id_problem("run-\ud800") == "is not valid text (a lone UTF-16 surrogate)"


# Pure: decoding -----------------------------------------------------------------------------


class _Events:
    def __init__(self) -> None:
        self.invalid: list[tuple[str, str]] = []

    def invalid_record(self, reason: str, detail: str) -> None:
        self.invalid.append((reason, detail))

    def unknown_status(self, native_status: str) -> None:
        return None

    def learned(self, fact: str, value: str, detail: str) -> None:
        return None

    def inconsistency(self, reason: str, detail: str) -> None:
        return None


def _plextera(events: _Events) -> PlexteraProvider:
    settings = PlexteraSettings.model_validate({"name": "p", "api_key": "k"})
    client = ApiClient(
        source="p", base_url=settings.base_url, headers={}, timeout=1, retry=RetryPolicy()
    )
    client.close()  # decoding does no I/O
    return PlexteraProvider(settings, client, events)


def _item(run_id: str, workflow_id: str = "wf-1") -> dict[str, Any]:
    return {
        "id": run_id,
        "status": "COMPLETED",
        "createdAt": "2026-03-01T12:00:00Z",
        "workflow": {"id": workflow_id, "name": "Invoices"},
    }


def test_ids_that_clean_alike_stay_two_runs_and_are_shown_clean() -> None:
    events = _Events()
    page = _plextera(events).decode_page({"data": [_item("r-1\x01"), _item("r-1\x02")]}, {})

    assert [run.id for run in page.items] == ["r-1\x01", "r-1\x02"]
    assert [run.shown for run in page.items] == ["r-1 ", "r-1 "]
    assert events.invalid == []


def test_an_id_that_cannot_be_a_key_is_an_invalid_record_and_the_page_is_kept() -> None:
    events = _Events()
    items = [
        _item("x" * 1_000_000),
        _item("run-\ud800"),
        _item("r-2", workflow_id="w" * (MAX_ID_LENGTH + 1)),
        _item("r-3"),
    ]
    page = _plextera(events).decode_page({"data": items}, {})

    assert [run.id for run in page.items] == ["r-3"]
    # A lone surrogate is refused by the wire model already (`id_problem` holds for any path).
    assert [reason for reason, _ in events.invalid] == ["id", "schema", "id"]
    assert all(len(detail) <= 500 for _, detail in events.invalid)
    assert "id 'xxxx" in events.invalid[0][1]
    assert "longer than 1024 characters" in events.invalid[0][1]
    assert "workflow id" in events.invalid[2][1]


# Pure: workflow labels ----------------------------------------------------------------------


def _suffixed(name: str, workflow_id: str, length: int = 4) -> str:
    return f"{name}~{hashlib.sha256(workflow_id.encode()).hexdigest()[:length]}"


def test_two_workflows_that_read_alike_get_two_labels_and_the_collision_is_said_once() -> None:
    budget = LabelBudget((), limit=10, owners={})
    assert budget.label("Invoices", "wf-a") == "Invoices"
    assert budget.label("Invoices", "wf-b") == _suffixed("Invoices", "wf-b")
    assert budget.label("Invoices", "wf-a") == "Invoices"
    assert budget.label("Invoices", "wf-b") == _suffixed("Invoices", "wf-b")
    # Ids that differ only in a control character, both read as the cleaned id.
    assert budget.label("wf ", "wf\x01") == "wf "
    assert budget.label("wf ", "wf\x02") == _suffixed("wf ", "wf\x02")
    assert budget.collisions == [("Invoices", "wf-b", "wf-a"), ("wf ", "wf\x02", "wf\x01")]
    assert budget.newly_owned == {
        "Invoices": "wf-a",
        _suffixed("Invoices", "wf-b"): "wf-b",
        "wf ": "wf\x01",
        _suffixed("wf ", "wf\x02"): "wf\x02",
    }

    # The owners are kept: the next cycle (or process) gives each workflow the same label and
    # says nothing again.
    later = LabelBudget(budget.admitted, limit=10, owners=budget.owners)
    assert later.label("Invoices", "wf-b") == _suffixed("Invoices", "wf-b")
    assert later.label("Invoices", "wf-a") == "Invoices"
    assert later.collisions == []


def test_a_suffix_taken_by_another_id_grows_until_it_is_free() -> None:
    taken = _suffixed("Invoices", "wf-b")
    budget = LabelBudget((), limit=10, owners={"Invoices": "wf-a", taken: "wf-c"})
    assert budget.label("Invoices", "wf-b") == _suffixed("Invoices", "wf-b", 8)


def test_a_suffixed_label_is_one_more_workflow_within_the_same_bound() -> None:
    budget = LabelBudget((), limit=1, owners={})
    assert budget.label("Invoices", "wf-a") == "Invoices"
    assert budget.label("Invoices", "wf-b") == "other"
    assert budget.dropped == 1
    assert budget.collisions == []  # folded, not a series of its own: the dropped count says it


# Against the simulators ---------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_two_workflows_of_one_name_are_two_series_across_a_restart(
    provider: str, simulator: SimFactory, exporter_factory: ExporterFactory, tmp_path: Path
) -> None:
    sim = simulator(provider, seed=41, workflows=2)
    twin = sim.world.add_workflow(sim.world.workflows[0].name)
    original = sim.world.workflows[0]
    sim.world.add_runs(40)
    sim.world.advance(1200)
    source = source_for(sim, provider, page_size=100)
    state = tmp_path / "twins.db"
    exporter = exporter_factory([source], state=state)
    for _ in range(3):
        sim.world.advance(120)
        assert exporter.collect_all()[0].ok

    name = original.name
    labels = {labels[0] for labels in finished(exporter, f"{provider}-test")}
    suffixed = {label for label in labels if label.startswith(f"{name}~")}
    assert name in labels
    assert len(suffixed) == 1
    owner, other = _owner_and_other(suffixed.pop(), name, original, twin)
    assert finished(exporter, f"{provider}-test") == _truth_by_id(sim, {owner.id: name}, other)
    collisions = by_labels(
        exporter, "workflow_exporter_scan_inconsistencies_total", f"{provider}-test", "reason"
    )
    assert collisions[("workflow_name_collision",)] == 1
    exporter.shutdown()

    restarted = exporter_factory([source], state=state)
    for _ in range(2):
        sim.world.advance(120)
        assert restarted.collect_all()[0].ok
    expected = _truth_by_id(sim, {owner.id: name}, other)
    assert finished(restarted, f"{provider}-test") == expected
    again = by_labels(
        restarted, "workflow_exporter_scan_inconsistencies_total", f"{provider}-test", "reason"
    )
    assert again[("workflow_name_collision",)] == 0  # said once, by the first process


def _owner_and_other(
    suffixed: str, name: str, first: SimWorkflow, second: SimWorkflow
) -> tuple[SimWorkflow, tuple[str, str]]:
    """Which twin holds the plain name, and (the other's id, its label)."""
    for owner, other in ((first, second), (second, first)):
        if suffixed == _suffixed(name, other.id):
            return owner, (other.id, suffixed)
    raise AssertionError(f"{suffixed!r} is derived from neither workflow id")


def _truth_by_id(
    sim: Any, labels: dict[str, str], other: tuple[str, str]
) -> Counter[tuple[str, ...]]:
    """The world's finished runs by (label, status), where twins are told apart by id."""
    labels = {**labels, other[0]: other[1]}
    counts: Counter[tuple[str, ...]] = Counter()
    with sim.world.lock:
        for run in [*sim.world.runs.values(), *sim.world.deleted_finished]:
            status = sim.vocabulary.canonical(run.native_status)
            if status.terminal or (status is RunStatus.UNKNOWN and run.finished_at):
                label = labels.get(run.workflow.id, run.workflow.name)
                counts[(label, status.value)] += 1
    return counts


# Upgrade --------------------------------------------------------------------------------------


def _as_version_5(state: Path) -> None:
    """The file the previous release wrote for the same cycles: the same rows, with each id as
    it kept them (the id as shown: cleaned, and Cortex's without its workflow), no owners."""
    conn = sqlite3.connect(state)
    try:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO counted SELECT * FROM counted_v5")
        for source, run_id in conn.execute("SELECT source, run_id FROM counted").fetchall():
            scoped = split_scoped_id(run_id)
            if scoped is not None:
                conn.execute(
                    "UPDATE counted SET run_id = ? WHERE source = ? AND run_id = ?",
                    (scoped[1], source, run_id),
                )
        conn.execute("UPDATE active SET run_id = shown_id WHERE shown_id IS NOT NULL")
        conn.execute("ALTER TABLE active DROP COLUMN shown_id")
        conn.execute("DROP TABLE counted_v5")
        conn.execute("DROP TABLE workflow_owners")
        conn.execute("PRAGMA user_version=5")
        conn.execute("COMMIT")
    finally:
        conn.close()


@pytest.mark.parametrize("provider", ["cortex", "plextera"])
def test_a_version_5_state_file_upgrades_without_counting_again_or_losing_an_active_run(
    provider: str, simulator: SimFactory, exporter_factory: ExporterFactory, tmp_path: Path
) -> None:
    sim = simulator(provider, seed=43, workflows=3)
    sim.world.add_runs(40)
    sim.world.advance(900)
    source = source_for(sim, provider, page_size=100)
    state = tmp_path / "v5.db"
    exporter = exporter_factory([source], state=state)
    for _ in range(3):
        assert exporter.collect_all()[0].ok
        sim.world.advance(60)
    name = f"{provider}-test"
    tracked = sum(active(exporter, name).values())
    assert tracked > 0, "runs still going at the upgrade"
    exporter.shutdown()
    _as_version_5(state)
    if provider == "cortex":
        with sqlite3.connect(state) as conn:
            legacy = [row[0] for row in conn.execute("SELECT run_id FROM active")]
        assert legacy
        assert all(split_scoped_id(run_id) is None for run_id in legacy)

    upgraded = exporter_factory([source], state=state)
    # Right after the upgrade, before any cycle: nothing counted or tracked is lost.
    assert finished(upgraded, name) == finished(exporter, name)
    assert sum(active(upgraded, name).values()) == tracked
    for _ in range(4):
        assert upgraded.collect_all()[0].ok  # re-reads the overlap: every counted run again
        sim.world.advance(120)
    assert upgraded.collect_all()[0].ok

    truth = sim.world.truth()
    assert finished(upgraded, name) == truth.finished
    assert active(upgraded, name) == truth.active
    vanished = by_labels(upgraded, "workflow_exporter_runs_vanished_total", name)
    assert sum(vanished.values()) == 0  # every active run was found under its new key
    version = upgraded.store.read(lambda c: c.execute("PRAGMA user_version").fetchone()[0])
    assert version == SCHEMA_VERSION == 6


def test_a_version_5_counted_id_is_found_by_the_id_as_shown_until_it_is_pruned(
    tmp_path: Path,
) -> None:
    """The store alone: a run version 5 counted under its cleaned id is counted already, until
    the row is pruned like any counted id."""
    state = tmp_path / "legacy.db"
    buckets = {DURATION: (1.0, 10.0), QUEUE_WAIT: (1.0, 10.0)}
    store = Store(state, buckets)
    store.write(
        lambda c: c.execute(
            "INSERT INTO counted_v5 VALUES ('src', 'r-1 ', ?)", (at(5).timestamp(),)
        )
    )
    store.close()
    store = Store(state, buckets)
    try:
        run = replace(make_run("r-1\x01", status=RunStatus.SUCCEEDED, finished=5), shown_id="r-1 ")
        assert store.counted_among("src", {run.id: run}) == {run.id}
        assert store.counted_among("src", ["r-1 "]) == {"r-1 "}  # a bare key stands for itself
        assert store.counted_among("src", ["r-2"]) == set()
        assert store.counted_total("src") == 1

        horizon = Cursor(baseline=at(-1000), watermark=at(100), horizon=at(50))
        cycle_into(store, "src", [], at(100), cursor=horizon)
        assert store.counted_among("src", {run.id: run}) == set()
        assert store.counted_total("src") == 0
    finally:
        store.close()


def test_a_cortex_world_with_ids_per_workflow_repeats_them_and_looks_each_up_in_its_workflow(
    simulator: SimFactory,
) -> None:
    sim = simulator("cortex", seed=47, workflows=2, variant=ApiVariant(run_ids="per_workflow"))
    sim.world.add_runs(12)
    first, second = sim.world.workflows
    headers = {"authorization": f"Bearer {sim.api_key}"}
    base = f"{sim.base_url}/apps/{CortexSimulator.app_id}/workflows"
    with httpx.Client(headers=headers) as http:
        listed = {
            workflow.id: {item["id"] for item in http.get(f"{base}/{workflow.id}/runs").json()}
            for workflow in (first, second)
        }
        shared = listed[first.id] & listed[second.id]
        assert shared, "two workflows list runs under the same id"
        run_id = sorted(shared)[0]
        for workflow in (first, second):
            one = http.get(f"{base}/{workflow.id}/runs/{quote(run_id, safe='')}").json()
            assert (one["id"], one["workflow_id"]) == (run_id, workflow.id)
    assert len(sim.world.runs) == 12  # the world keeps every run, whatever its id


# What is shown: the id, never the key --------------------------------------------------------


def test_what_a_cycle_records_is_keyed_by_the_key_and_shows_the_id() -> None:
    key = scoped_id("wf-a", "run-1")
    finished_run = replace(
        make_run(key, status=RunStatus.FAILED, started=1, finished=5), shown_id="run-1"
    )
    running = replace(make_run(scoped_id("wf-b", "run-1")), shown_id="run-1")
    changes = decide(
        runs=[finished_run, running],
        active={},
        counted=set(),
        cursor=wide_cursor(),
        workflows=LabelBudget((), 10),
        codes=LabelBudget((), 10),
        now=at(10),
    )

    assert [run_id for run_id, _ in changes.counted] == [key]
    assert [(run.id, run.shown) for run in changes.finished_runs] == [(key, "run-1")]
    assert [o.run_id for o in changes.observations if o.metric == DURATION] == ["run-1"]
    tracked = changes.active_upserts[running.id]
    assert (tracked.id, tracked.shown) == (running.id, "run-1")


def test_two_failed_runs_that_show_alike_are_two_alert_events_saying_the_id() -> None:
    def failed(key: str) -> FinishedRun:
        return FinishedRun(
            key, "Invoices", RunStatus.FAILED, "unspecified", at(0), at(5), None, None, "run-1"
        )

    settings = AlertingSettings.model_validate({"alertmanagers": [{"url": "http://127.0.0.1:9"}]})
    keys = [scoped_id("wf-a", "run-1"), scoped_id("wf-b", "run-1")]
    plan = Planner(settings).plan("cx", "cortex", [failed(k) for k in keys], {}, {}, at(10))

    assert [event.key for event in plan.events] == [f"failed/cx/{k}" for k in keys]
    assert {event.payload["labels"]["run_id"] for event in plan.events} == {"run-1"}
    assert {event.payload["annotations"]["run_id"] for event in plan.events} == {"run-1"}
