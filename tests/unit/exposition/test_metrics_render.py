"""The domain metrics as Prometheus scrapes them, rendered from a store snapshot."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.core.model import TERMINAL_STATUSES, RunStatus
from exporter.core.tracking import ActiveRun
from exporter.core.units import DEFAULT_BUCKETS, DURATION, QUEUE_WAIT
from exporter.exposition.metrics import RunsCollector
from exporter.state.snapshot import Histogram, Snapshot
from exporter.state.store import Store
from tests.core_runs import at, cycle_into, make_run

NOW = at(100).timestamp()
TERMINAL = sorted(s.value for s in TERMINAL_STATUSES)


def render(
    snapshot: Snapshot | Callable[[], Snapshot],
    active_statuses: Callable[[str], Iterable[str]] | None = None,
) -> CollectorRegistry:
    registry = CollectorRegistry()
    source = snapshot if callable(snapshot) else (lambda: snapshot)
    registry.register(RunsCollector(source, clock=lambda: NOW, active_statuses=active_statuses))
    return registry


def labels(workflow: str, status: str | None = None, source: str = "src") -> dict[str, str]:
    out = {"source": source, "provider": "plextera", "workflow": workflow}
    if status is not None:
        out["status"] = status
    return out


def active_run(
    run_id: str,
    workflow: str,
    status: RunStatus,
    created: float,
    progress: float | None = None,
    awaiting_detail: bool = False,
) -> ActiveRun:
    return ActiveRun(
        id=run_id,
        workflow=workflow,
        status=status,
        created_at=at(created),
        cursor_time=at(created),
        progress=progress,
        awaiting_detail=awaiting_detail,
    )


def snapshot_with(
    active: list[ActiveRun] | None = None,
    finished: dict[tuple[str, str, str], int] | None = None,
    workflows: set[str] | None = None,
) -> Snapshot:
    return Snapshot(
        providers={"src": "plextera"},
        workflows={"src": workflows if workflows is not None else {"Invoices", "Claims"}},
        finished=finished or {},
        active={"src": active or []},
    )


# Counters --------------------------------------------------------------------------------


def test_every_terminal_status_of_every_workflow_seen_starts_at_zero() -> None:
    registry = render(snapshot_with(finished={("src", "Invoices", "failed"): 3}))
    for workflow in ("Invoices", "Claims"):
        for status in TERMINAL:
            expected = 3.0 if (workflow, status) == ("Invoices", "failed") else 0.0
            value = registry.get_sample_value(
                "workflow_runs_finished_total", labels(workflow, status)
            )
            assert value == expected, (workflow, status)
    for status in ("queued", "running", "needs_review", "unknown"):
        assert (
            registry.get_sample_value("workflow_runs_finished_total", labels("Invoices", status))
            is None
        )


def test_finished_counter_exposes_no_created_samples() -> None:
    text = generate_latest(render(snapshot_with())).decode()
    assert "# TYPE workflow_runs_finished_total counter" in text
    assert "_created" not in text


def test_error_counter_by_code() -> None:
    snap = snapshot_with()
    snap.errors = {("src", "Invoices", "UNSUPPORTED_DOCUMENT"): 2, ("src", "Claims", "other"): 1}
    registry = render(snap)
    invoices = {**labels("Invoices"), "code": "UNSUPPORTED_DOCUMENT"}
    claims = {**labels("Claims"), "code": "other"}
    assert registry.get_sample_value("workflow_run_errors_total", invoices) == 2
    assert registry.get_sample_value("workflow_run_errors_total", claims) == 1


# Last finished -----------------------------------------------------------------------------


def test_last_finished_is_served_only_for_statuses_reached() -> None:
    snap = snapshot_with()
    snap.last_finished = {
        ("src", "Invoices", "succeeded"): at(40).timestamp(),
        ("src", "Invoices", "failed"): at(55.5).timestamp(),
    }
    registry = render(snap)
    name = "workflow_runs_last_finished_timestamp_seconds"
    assert registry.get_sample_value(name, labels("Invoices", "succeeded")) == at(40).timestamp()
    assert registry.get_sample_value(name, labels("Invoices", "failed")) == at(55.5).timestamp()
    for workflow, status in [("Invoices", "cancelled"), ("Claims", "succeeded")]:
        assert registry.get_sample_value(name, labels(workflow, status)) is None
    text = generate_latest(registry).decode()
    assert f"# TYPE {name} gauge" in text


def test_last_finished_renders_from_the_store_after_a_restart(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db", DEFAULT_BUCKETS)
    cycle_into(
        store,
        "src",
        [make_run("ok", status=RunStatus.SUCCEEDED, created=0, started=2, finished=30)],
        now=at(40),
    )
    store.close()
    store = Store(tmp_path / "state.db", DEFAULT_BUCKETS)
    try:
        value = render(store.snapshot).get_sample_value(
            "workflow_runs_last_finished_timestamp_seconds", labels("Invoices", "succeeded")
        )
        assert value == at(30).timestamp()
    finally:
        store.close()


# Active runs -----------------------------------------------------------------------------


def test_active_gauges_are_pre_created_for_the_statuses_given() -> None:
    registry = render(
        snapshot_with(), active_statuses=lambda _source: ["queued", "running", "needs_review"]
    )
    for workflow in ("Invoices", "Claims"):
        for status in ("queued", "running", "needs_review"):
            assert registry.get_sample_value("workflow_runs_active", labels(workflow, status)) == 0
        assert (
            registry.get_sample_value("workflow_runs_active", labels(workflow, "unknown")) is None
        )


def test_active_gauges_default_to_queued_and_running() -> None:
    registry = render(snapshot_with())
    assert registry.get_sample_value("workflow_runs_active", labels("Claims", "queued")) == 0
    assert registry.get_sample_value("workflow_runs_active", labels("Claims", "running")) == 0
    assert (
        registry.get_sample_value("workflow_runs_active", labels("Claims", "needs_review")) is None
    )


def test_active_counts_oldest_age_and_mean_progress() -> None:
    runs = [
        active_run("a", "Invoices", RunStatus.RUNNING, created=10, progress=0.2),
        active_run("b", "Invoices", RunStatus.RUNNING, created=40, progress=0.6),
        active_run("c", "Invoices", RunStatus.QUEUED, created=50),
        active_run("d", "Invoices", RunStatus.NEEDS_REVIEW, created=0, progress=1.0),
        active_run("e", "Claims", RunStatus.RUNNING, created=90),
        # A provider clock slightly ahead: the age is 0, never negative.
        active_run("f", "Claims", RunStatus.QUEUED, created=130),
    ]
    registry = render(snapshot_with(active=runs))

    def active(workflow: str, status: str) -> float | None:
        return registry.get_sample_value("workflow_runs_active", labels(workflow, status))

    def oldest(workflow: str, status: str) -> float | None:
        return registry.get_sample_value(
            "workflow_runs_oldest_active_age_seconds", labels(workflow, status)
        )

    assert active("Invoices", "running") == 2
    assert active("Invoices", "queued") == 1
    assert active("Invoices", "needs_review") == 1
    assert active("Claims", "running") == 1
    assert oldest("Invoices", "running") == 90
    assert oldest("Invoices", "queued") == 50
    assert oldest("Invoices", "needs_review") == 100
    assert oldest("Claims", "running") == 10
    assert oldest("Claims", "queued") == 0
    # Only statuses with runs have an age.
    assert oldest("Claims", "needs_review") is None
    progress = "workflow_runs_progress_ratio"
    assert registry.get_sample_value(progress, labels("Invoices")) == pytest.approx(0.6)
    assert registry.get_sample_value(progress, labels("Claims")) is None


def test_runs_awaiting_detail_are_not_shown_as_active() -> None:
    runs = [
        active_run("x", "Invoices", RunStatus.FAILED, created=0, awaiting_detail=True),
        active_run("y", "Invoices", RunStatus.RUNNING, created=60, progress=0.5),
        active_run("z", "Claims", RunStatus.FAILED, created=0, progress=0.9, awaiting_detail=True),
    ]
    registry = render(snapshot_with(active=runs))
    assert registry.get_sample_value("workflow_runs_active", labels("Invoices", "failed")) is None
    assert registry.get_sample_value("workflow_runs_active", labels("Claims", "failed")) is None
    assert registry.get_sample_value("workflow_runs_active", labels("Invoices", "running")) == 1
    assert registry.get_sample_value("workflow_runs_active", labels("Claims", "running")) == 0
    assert (
        registry.get_sample_value(
            "workflow_runs_oldest_active_age_seconds", labels("Invoices", "failed")
        )
        is None
    )
    assert registry.get_sample_value(
        "workflow_runs_progress_ratio", labels("Invoices")
    ) == pytest.approx(0.5)
    assert registry.get_sample_value("workflow_runs_progress_ratio", labels("Claims")) is None


def test_each_scrape_renders_a_fresh_snapshot() -> None:
    snapshots = [
        snapshot_with(active=[active_run("a", "Invoices", RunStatus.RUNNING, created=0)]),
        snapshot_with(),
    ]
    registry = render(lambda: snapshots[0])
    running = labels("Invoices", "running")
    assert registry.get_sample_value("workflow_runs_active", running) == 1
    snapshots.pop(0)
    assert registry.get_sample_value("workflow_runs_active", running) == 0
    assert registry.get_sample_value("workflow_runs_oldest_active_age_seconds", running) is None


# Histograms ------------------------------------------------------------------------------


def test_histogram_buckets_are_cumulative() -> None:
    hist = Histogram.empty((1, 5, 10))
    for value in (0.5, 3, 7, 100):
        hist.observe(value)
    queue = Histogram.empty((1, 10))
    queue.observe(2)
    snap = snapshot_with()
    snap.histograms = {
        (DURATION, "src", "Invoices", "succeeded"): hist,
        (QUEUE_WAIT, "src", "Invoices", ""): queue,
    }
    registry = render(snap)
    name = "workflow_run_duration_seconds"
    base = labels("Invoices", "succeeded")
    buckets = [
        registry.get_sample_value(f"{name}_bucket", {**base, "le": le})
        for le in ("1.0", "5.0", "10.0", "+Inf")
    ]
    assert buckets == [1, 2, 3, 4]
    assert registry.get_sample_value(f"{name}_count", base) == 4
    assert registry.get_sample_value(f"{name}_sum", base) == pytest.approx(110.5)
    wait = "workflow_run_queue_wait_seconds"
    assert registry.get_sample_value(f"{wait}_count", labels("Invoices")) == 1
    assert registry.get_sample_value(f"{wait}_bucket", {**labels("Invoices"), "le": "10.0"}) == 1
    assert registry.get_sample_value(f"{wait}_bucket", {**labels("Invoices"), "le": "1.0"}) == 0


def test_duration_count_equals_the_finished_counter(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db", DEFAULT_BUCKETS)
    try:
        statuses = [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.SKIPPED]
        runs = [
            make_run(
                f"r{i}",
                status=statuses[i % len(statuses)],
                workflow=("Invoices", "Claims")[i % 2],
                created=i,
                started=i + 1 if i % 3 else None,
                finished=i + 5 + i * i if i % 5 else None,
            )
            for i in range(40)
        ]
        cycle_into(store, "src", runs[:25], now=at(3000))
        cycle_into(store, "src", runs, now=at(6000))
        registry = render(store.snapshot)
    finally:
        store.close()

    text = generate_latest(registry).decode()
    finished_total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != "workflow_run_duration_seconds":
            continue
        counts: dict[tuple[tuple[str, str], ...], list[float]] = {}
        for sample in family.samples:
            key = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
            if sample.name.endswith("_bucket"):
                counts.setdefault(key, []).append(sample.value)
            elif sample.name.endswith("_count"):
                finished = registry.get_sample_value("workflow_runs_finished_total", dict(key))
                assert sample.value == finished
                finished_total += sample.value
                assert counts[key][-1] == sample.value  # +Inf bucket == _count
        for values in counts.values():
            assert values == sorted(values)
    assert finished_total == 40


def test_exposition_types() -> None:
    snap = snapshot_with(active=[active_run("a", "Invoices", RunStatus.RUNNING, 0, 0.5)])
    snap.histograms = {(DURATION, "src", "Invoices", "failed"): Histogram.empty((1,))}
    types = {
        family.name: family.type
        for family in text_string_to_metric_families(generate_latest(render(snap)).decode())
    }
    assert types == {
        "workflow_runs_finished": "counter",
        "workflow_run_errors": "counter",
        "workflow_run_duration_seconds": "histogram",
        "workflow_run_queue_wait_seconds": "histogram",
        "workflow_run_steps": "counter",
        "workflow_run_step_duration_seconds": "histogram",
        "workflow_runs_active": "gauge",
        "workflow_runs_oldest_active_age_seconds": "gauge",
        "workflow_runs_progress_ratio": "gauge",
        "workflow_runs_last_finished_timestamp_seconds": "gauge",
    }
