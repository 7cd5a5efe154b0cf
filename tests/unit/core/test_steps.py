"""Per-step counting: the pure pieces (step timestamps, bad step lists, the per-workflow bound,
counting once with the run) and the state that keeps them (restart, migration, zero-first)."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from exporter.core.accounting import CycleChanges, decide
from exporter.core.budgets import OTHER_LABEL, LabelBudget, SeriesBudget, StepBudget
from exporter.core.model import Run, RunStatus, Step, StepStatus
from exporter.core.tracking import ActiveRun
from exporter.core.units import DEFAULT_BUCKETS, STEP_DURATION
from exporter.exposition.metrics import RunsCollector
from exporter.providers import Provider, registry
from exporter.providers.client import ApiClient
from exporter.providers.retry import RetryPolicy
from exporter.providers.steps import (
    StepMapper,
    keyed_step,
    read_keyed_steps,
    read_steps,
    step_duration,
    step_instant,
)
from exporter.state.statefile import MIGRATIONS, SCHEMA_VERSION
from exporter.state.store import Store
from tests.core_runs import T0, at, make_run, wide_cursor
from tests.series import samples

EPOCH_S = 1_767_225_600  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(
    "value",
    [EPOCH_S, EPOCH_S * 1000, float(EPOCH_S), str(EPOCH_S * 1000), "2026-01-01T00:00:00Z",
     "2026-01-01T00:00:00", "2026-01-01T01:00:00+01:00"],
)  # fmt: skip
def test_a_step_instant_is_read_from_epoch_seconds_milliseconds_or_iso(value: object) -> None:
    assert step_instant(value) == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("value", [None, True, "", "soon", [], {}, float("nan"), 1e300])
def test_anything_else_is_no_instant(value: object) -> None:
    assert step_instant(value) is None


def test_a_step_duration_needs_both_ends_in_order() -> None:
    assert step_duration(EPOCH_S * 1000, EPOCH_S * 1000 + 2500) == 2.5
    assert step_duration(EPOCH_S, None) is None
    assert step_duration(EPOCH_S + 10, EPOCH_S) is None  # an end before the start: wrong data


@pytest.mark.parametrize(
    ("start", "end"),
    [(EPOCH_S * 1000, EPOCH_S * 1000 + 1), (EPOCH_S * 1000 + 999, EPOCH_S * 1000 + 123_457),
     (100_000_000_001, 100_000_000_002), (4_294_967_295_000, 4_294_967_295_999),
     (253_402_214_399_000, 253_402_214_399_999),
     (EPOCH_S * 1000, EPOCH_S * 1000 + 366 * 86_400_000), (EPOCH_S * 1000, EPOCH_S * 1000 - 1)],
)  # fmt: skip
def test_whole_milliseconds_give_the_duration_two_datetimes_would(start: int, end: int) -> None:
    began, ended = step_instant(start), step_instant(end)
    assert began is not None
    assert ended is not None
    seconds = (ended - began).total_seconds()
    assert step_duration(start, end) == (seconds if 0 <= seconds <= 366 * 86_400 else None)
    # The same numbers as floats take the full reading: the same answer.
    assert step_duration(float(start), float(end)) == step_duration(start, end)


@pytest.mark.parametrize("bad", [-5, 10**400, "soon", True, float("nan")])
def test_a_step_time_that_is_no_instant_is_said_and_costs_the_duration_only(bad: object) -> None:
    said: list[str] = []
    mapper = StepMapper({"COMPLETED": StepStatus.SUCCEEDED}, lambda _native: None)
    item = {"status": "COMPLETED", "key": "ocr", "start": EPOCH_S * 1000, "end": bad}
    step = keyed_step(("ocr", item), mapper, said.append)
    assert step is not None
    assert step.duration_seconds is None or bad == -5  # a negative is an instant, if a wrong one
    assert said == [f"output.ocr.end: {str(bad)[:40]!r} is not an instant"]


def _named(item: object) -> Step | None:
    if not isinstance(item, dict) or not isinstance(item.get("s"), str):
        return None
    return Step(name=item["s"], status="OK")


def test_bad_step_lists_lose_only_their_bad_items() -> None:
    assert read_steps(None, _named).invalid == 0  # no steps given: nothing wrong
    assert read_steps("steps", _named).invalid == 1  # not a list
    read = read_steps([{"s": "a"}, 7, None, {"s": 3}, {"s": "b"}], _named)
    assert [s.name for s in read.steps] == ["a", "b"]
    assert read.invalid == 3


def test_keyed_step_outputs_lose_only_their_bad_items() -> None:
    mapper = StepMapper({"COMPLETED": StepStatus.SUCCEEDED}, lambda _native: None)
    said: list[str] = []
    ok = {"status": "COMPLETED", "start": EPOCH_S * 1000, "end": EPOCH_S * 1000 + 1500}
    absent = read_keyed_steps(None, mapper, said.append)
    assert (absent.steps, absent.invalid) == ((), 0)  # no steps given: nothing wrong
    assert read_keyed_steps("steps", mapper, said.append).invalid == 1  # no object, no list
    keyed = read_keyed_steps(
        {"ocr": ok, "llm": 7, "": ok, "code": {"status": 3}}, mapper, said.append
    )
    assert [(s.name, s.canonical, s.duration_seconds) for s in keyed.steps] == [
        ("ocr", StepStatus.SUCCEEDED, 1.5)
    ]
    assert keyed.invalid == 3  # not an object, no name, no status
    # The older list form: each item names itself.
    listed = read_keyed_steps([{**ok, "key": "ocr"}, ok], mapper, said.append)
    assert [s.name for s in listed.steps] == ["ocr"]
    assert listed.invalid == 1
    assert said == []


def _finished(
    run_id: str, steps: tuple[Step, ...], *, invalid: int = 0, workflow: str = "Invoices"
) -> Run:
    run = make_run(
        run_id, status=RunStatus.FAILED, workflow=workflow, started=0, finished=60, cursor=60
    )
    return replace(run, steps=steps, invalid_steps=invalid)


STEPS = (
    Step("Read", "COMPLETED", "ocr", StepStatus.SUCCEEDED, 2.0),
    Step("Extract", "FAILED", "llm", StepStatus.FAILED, 3.0),
    Step("Check", "QUEUED", None, StepStatus.NOT_STARTED),
)


def _decide(runs: list[Run], counted: set[str], budget: StepBudget | None = None) -> CycleChanges:
    return decide(
        runs=runs,
        active={},
        counted=counted,
        cursor=wide_cursor(),
        workflows=LabelBudget((), 200),
        codes=LabelBudget((), 50),
        now=at(120),
        steps=budget or StepBudget((), 30),
    )


def test_the_steps_of_a_run_are_counted_when_the_run_is_and_never_again() -> None:
    run = _finished("r1", STEPS, invalid=2)

    first = _decide([run], set())
    again = _decide([run], {"r1"})

    assert first.steps == Counter(
        {
            ("Invoices", "ocr", "succeeded"): 1,
            ("Invoices", "llm", "failed"): 1,
            ("Invoices", "Check", "not_started"): 1,
        }
    )
    assert first.invalid_steps == 2
    assert sorted(first.new_steps) == [
        ("Invoices", "Check"),
        ("Invoices", "llm"),
        ("Invoices", "ocr"),
    ]
    durations = [(o.status, o.value) for o in first.observations if o.metric == STEP_DURATION]
    assert sorted(durations) == [("llm", 3.0), ("ocr", 2.0)]
    assert not again.steps
    assert not again.invalid_steps
    assert not again.counted


def test_a_run_parked_for_its_detail_counts_its_steps_only_when_counted() -> None:
    parked = replace(_finished("r2", STEPS), needs_detail=True)
    assert not _decide([parked], set()).steps


def test_a_parked_run_that_vanishes_is_counted_once_without_steps() -> None:
    """Parked for its detail (Extend's failure reason, where its steps are), then gone: the run
    is counted, code unspecified, with no steps and no invalid ones; never again after."""
    parked = replace(_finished("r3", STEPS, invalid=1), needs_detail=True)
    first = _decide([parked], set())
    tracked = first.active_upserts["r3"]
    assert tracked.awaiting_detail

    def gone(counted: set[str], active: dict[str, ActiveRun]) -> CycleChanges:
        return decide(
            runs=[],
            vanished=["r3"],
            active=active,
            counted=counted,
            cursor=wide_cursor(),
            workflows=LabelBudget((), 200),
            codes=LabelBudget((), 50),
            now=at(300),
            steps=StepBudget((), 30),
        )

    counted = gone(set(), {"r3": tracked})
    assert counted.finished == Counter({("Invoices", "failed"): 1})
    assert counted.counted_ids == {"r3"}
    assert not counted.steps
    assert not counted.new_steps
    assert not counted.invalid_steps
    assert not gone({"r3"}, {}).finished


def test_steps_past_the_bound_fold_into_other_per_workflow_and_are_counted_dropped() -> None:
    many = tuple(Step(f"s{i}", "COMPLETED", None, StepStatus.SUCCEEDED) for i in range(5))
    budget = StepBudget((), 3)

    changes = _decide(
        [_finished("a", many), _finished("b", many[:1], workflow="Receipts")], set(), budget
    )

    assert changes.steps[("Invoices", OTHER_LABEL, "succeeded")] == 2
    assert changes.steps[("Receipts", "s0", "succeeded")] == 1  # another workflow's own bound
    assert changes.dropped_labels["step"] == 2
    assert (("Invoices", OTHER_LABEL)) in changes.new_steps


def test_each_new_step_reserves_its_series_and_folds_when_the_budget_is_spent() -> None:
    series = SeriesBudget(limit=35, used=0)
    budget = StepBudget((), 30, series=series, cost=10)

    labels = [budget.step("W", name) for name in ("a", "b", "c")]
    # A workflow's first step reserves its `other` too; with nothing left, none at all.
    stranger = budget.step("V", "a")

    assert labels == ["a", "b", OTHER_LABEL]
    assert stranger is None
    assert series.used == 30  # a + W's other, b: `other` itself never overshoots
    assert budget.dropped == 2


def _store(path: Path) -> Store:
    return Store(path, DEFAULT_BUCKETS)


def _commit(store: Store, changes: CycleChanges) -> None:
    store.apply("src", "plextera", changes, wide_cursor())


def test_step_counters_and_durations_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = _store(db)
    _commit(store, _decide([_finished("r1", STEPS)], set()))
    store.close()

    store = _store(db)
    snap = store.snapshot()
    # A restart reserves what the state holds: the failed run's error series, and for steps
    # three of them and Invoices' `other`.
    in_use = store.series_in_use(workflow_cost=0, step_cost=10)
    store.close()

    assert in_use == 1 + (3 + 1) * 10

    assert snap.steps[("src", "Invoices", "llm", "failed")] == 1
    # Every status of an admitted step exists from its admission, at zero.
    assert snap.steps[("src", "Invoices", "llm", "skipped")] == 0
    assert len(snap.steps) == 3 * len(StepStatus)
    assert snap.histograms[(STEP_DURATION, "src", "Invoices", "ocr")].count == 1


def test_a_version_4_file_migrates_to_the_steps_schema_and_keeps_its_counts(
    tmp_path: Path,
) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    for script in MIGRATIONS[:4]:
        conn.executescript(script)
    conn.execute("INSERT INTO finished VALUES ('src', 'Invoices', 'failed', 7)")
    conn.execute("PRAGMA user_version=4")
    conn.commit()
    conn.close()

    store = _store(db)
    _commit(store, _decide([_finished("r1", STEPS)], set()))
    version = store.read(lambda c: c.execute("PRAGMA user_version").fetchone()[0])
    snap = store.snapshot()
    store.close()

    assert SCHEMA_VERSION == 6
    assert version == 6
    assert snap.finished[("src", "Invoices", "failed")] == 8
    assert snap.steps[("src", "Invoices", "ocr", "succeeded")] == 1


def _scrape(store: Store, now: float, hold: float) -> dict[tuple[str, ...], float]:
    registry = CollectorRegistry()
    registry.register(RunsCollector(store.snapshot, clock=lambda: now, new_series_hold=hold))
    values: dict[tuple[str, ...], float] = {}
    for name in ("workflow_run_steps_total", "workflow_run_step_duration_seconds_count"):
        for labels, value in samples(registry, name):
            values[(name, labels["step"], labels.get("status", ""))] = value
    return values


def test_a_new_step_is_served_at_zero_before_its_first_increment_shows(tmp_path: Path) -> None:
    store = _store(tmp_path / "state.db")
    changes = _decide([_finished("r1", STEPS)], set())
    changes.born_at = T0.timestamp()  # born after the first start: not backfill
    _commit(store, changes)
    failed = ("workflow_run_steps_total", "llm", "failed")
    durations = ("workflow_run_step_duration_seconds_count", "ocr", "")

    held = _scrape(store, T0.timestamp() + 1, hold=30)
    later = _scrape(store, T0.timestamp() + 31, hold=30)
    store.close()

    assert (held[failed], held[durations]) == (0, 0)
    assert (later[failed], later[durations]) == (1, 1)
    assert len([k for k in later if k[0] == "workflow_run_steps_total"]) == 3 * len(StepStatus)


class _Events:
    def __init__(self) -> None:
        self.invalid: list[str] = []
        self.unknown: list[str] = []

    def invalid_record(self, reason: str, detail: str) -> None:
        self.invalid.append(reason)

    def unknown_status(self, native_status: str) -> None:
        self.unknown.append(native_status)

    def learned(self, fact: str, value: str, detail: str) -> None:
        pass

    def inconsistency(self, reason: str, detail: str) -> None:
        pass


def _provider(name: str, **settings: object) -> tuple[Provider[Any], _Events]:
    cls = registry()[name]
    source = cls.settings_model.model_validate(
        {
            "name": "s",
            "provider": name,
            "api_key": "k",
            "base_url": "http://127.0.0.1:1",
            **settings,
        }
    )
    client = ApiClient(
        source="s",
        base_url=source.base_url,
        headers={},
        timeout=1,
        retry=RetryPolicy(max_retries=0),
    )
    client.close()  # decoding does no I/O
    events = _Events()
    return cls(source, client, events), events


def _plextera_item(steps: object) -> dict[str, object]:
    return {
        "id": "r1",
        "status": "FAILED",
        "createdAt": "2026-03-01T12:00:00Z",
        "completedAt": "2026-03-01T12:01:00Z",
        "workflow": {"id": "w", "name": "Invoices"},
        "error": {"code": "E", "message": "m"},
        "steps": steps,
    }


def test_plextera_steps_map_loudly_and_bad_items_are_counted_not_fatal() -> None:
    provider, events = _provider("plextera")
    steps = [
        {"type": "ocr", "status": "COMPLETED", "nestedRuns": {"count": 1, "data": [{"id": "n1"}]}},
        {"name": "Check", "status": "WEIRD"},
        7,
        {"status": "FAILED"},  # neither a type nor a name: not a step
    ]
    body = {"data": [_plextera_item(steps)]}

    # The odd steps make the fast reading give up (the client then reads plain JSON), and the
    # page is read item by item; a page of clean steps is read fast, to the same steps.
    with pytest.raises(ValidationError):
        provider.fast_decode(json.dumps(body).encode())
    slow = provider.decode_page(body, {}).items
    clean = [s for s in steps if isinstance(s, dict) and "type" in s]
    typed = provider.decode_page(
        provider.fast_decode(json.dumps({"data": [_plextera_item(clean)]}).encode()), {}
    ).items

    (run,) = slow
    assert [(s.label, s.canonical) for s in run.steps] == [
        ("ocr", StepStatus.SUCCEEDED),
        ("Check", StepStatus.UNKNOWN),
    ]
    assert run.invalid_steps == 2
    assert run.nested_ids == ("n1",)
    assert typed[0].steps == run.steps[:1]
    assert typed[0].nested_ids == ("n1",)
    assert "step:WEIRD" in events.unknown


def test_plextera_with_steps_off_reads_none() -> None:
    provider, _ = _provider("plextera", steps=False)
    body = {"data": [_plextera_item([{"type": "ocr", "status": "COMPLETED"}])]}
    (run,) = provider.decode_page(provider.fast_decode(json.dumps(body).encode()), {}).items
    assert run.steps == ()


def test_cortex_step_durations_from_milliseconds_seconds_or_iso() -> None:
    provider, _ = _provider("cortex", app_id="a")
    start_ms = EPOCH_S * 1000
    output = {
        "a": {"status": "COMPLETED", "start": start_ms, "end": start_ms + 1500},
        "b": {"status": "COMPLETED", "start": EPOCH_S, "end": EPOCH_S + 3},
        "c": {"status": "FAILED", "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:00:07Z"},
        "d": {"status": "PENDING", "start": None, "end": None},
    }
    item = {
        "id": "r",
        "status": "FAILED",
        "created_at": "2026-01-01T00:00:00Z",
        "ended_at": "2026-01-01T00:01:00Z",
        "workflow_id": "w",
        "output": output,
    }

    (run,) = provider.decode_page([item], {}).items

    assert [(s.label, s.canonical.value, s.duration_seconds) for s in run.steps] == [
        ("a", "succeeded", 1.5),
        ("b", "succeeded", 3.0),
        ("c", "failed", 7.0),
        ("d", "not_started", None),
    ]
