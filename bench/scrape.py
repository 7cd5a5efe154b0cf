"""Scrape: the /metrics render in both formats at 1k, 10k and 50k series
(`python -m bench.run --only scrape`)."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as reference_openmetrics

from bench.common import Figure
from exporter.core.accounting import CycleChanges, Observation
from exporter.core.tracking import Cursor
from exporter.core.units import DEFAULT_BUCKETS, DURATION, QUEUE_WAIT
from exporter.exposition.formats import generate_openmetrics, generate_text
from exporter.exposition.metrics import RunsCollector
from exporter.state.store import Store

SERIES_PER_WORKFLOW = (
    5 + 5 * (len(DEFAULT_BUCKETS[DURATION]) + 3) + len(DEFAULT_BUCKETS[QUEUE_WAIT]) + 3 + 2
)


def store_with_series(series: int, workdir: Path) -> Store:
    store = Store(workdir / f"scrape-{series}.db", DEFAULT_BUCKETS)
    workflows = max(1, series // SERIES_PER_WORKFLOW)
    changes = CycleChanges()
    for w in range(workflows):
        name = f"workflow-{w}"
        changes.new_workflows.append(name)
        for status in ("succeeded", "failed", "cancelled", "rejected", "skipped"):
            changes.finished[(name, status)] += 3
            changes.observations.append(Observation(DURATION, name, status, 42.0))
        changes.observations.append(Observation(QUEUE_WAIT, name, "", 3.0))
        changes.errors[(name, "E1")] += 1
    now = datetime.now(UTC)
    store.apply("bench", "plextera", changes, Cursor.first_start(now, timedelta(hours=1)))
    return store


@dataclass(frozen=True)
class Scrape:
    samples: int
    first: float  # seconds: the first render after start-up, nothing written yet
    p50: float
    p99: float
    # The same scrapes in OpenMetrics, duration buckets carrying exemplars (what Prometheus
    # asks for first): beside the classic text, as a ratio in one run.
    om_p50: float = 0.0
    om_p99: float = 0.0


def bench_scrape(series: int, workdir: Path) -> Scrape:
    """Render times of /metrics' classic text and OpenMetrics, each from its own collection of
    the families, with a cycle committed before each scrape that touches 2% of the workflows
    (what changes between two scrapes at a high run rate), so that reusing what did not change
    is measured as it would help, not more."""
    store = store_with_series(series, workdir)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunsCollector(store.snapshot))
    started = time.perf_counter()
    text = generate_text(registry)
    first = time.perf_counter() - started
    assert text == generate_latest(registry), "the writer must write prometheus_client's bytes"
    samples = len([line for line in text.decode().splitlines() if not line.startswith("#")])
    gc.freeze()  # what the server does once start-up is done (exporter.core.heap.settle_start_up)
    workflows = max(1, series // SERIES_PER_WORKFLOW)
    touched = max(1, workflows // 50)
    cursor = store.cursor("bench")
    assert cursor is not None
    times, om_times = [], []
    for scrape in range(200):
        changes = CycleChanges()
        for w in range(scrape * touched, (scrape + 1) * touched):
            name = f"workflow-{w % workflows}"
            changes.finished[(name, "succeeded")] += 1
            changes.observations.append(
                Observation(DURATION, name, "succeeded", 7.0 + scrape, f"run-{scrape}-{w}", 1.0)
            )
            changes.observations.append(Observation(QUEUE_WAIT, name, "", 1.0))
        store.apply("bench", "plextera", changes, cursor)
        started = time.perf_counter()
        text = generate_text(registry)  # what the server sends for the classic text format
        times.append(time.perf_counter() - started)
        started = time.perf_counter()
        om_text = generate_openmetrics(registry)  # what it sends to Prometheus
        om_times.append(time.perf_counter() - started)
    assert b'# {run_id="' in om_text, "OpenMetrics duration buckets carry exemplars"
    assert text == generate_latest(registry), "and the same bytes after changes"
    assert om_text == reference_openmetrics(registry), "in OpenMetrics too"  # type: ignore[no-untyped-call]
    gc.unfreeze()
    store.close()
    times.sort()
    om_times.sort()
    return Scrape(
        samples,
        first,
        times[len(times) // 2],
        times[int(len(times) * 0.99) - 1],
        om_times[len(om_times) // 2],
        om_times[int(len(om_times) * 0.99) - 1],
    )


def scrape_figures(workdir: Path, figures: list[Figure]) -> None:
    """Both formats at each size: the classic text against its own target, OpenMetrics with
    exemplars (what Prometheus asks for first) against the classic text of the same run."""
    for series in (1_000, 10_000, 50_000):
        scrape = bench_scrape(series, workdir)
        ratio = scrape.om_p99 / scrape.p99
        print(
            f"scrape {series}: first {scrape.first * 1000:.1f} ms, p50 {scrape.p50 * 1000:.1f} "
            f"ms, p99 {scrape.p99 * 1000:.1f} ms ({scrape.samples} samples); OpenMetrics p50 "
            f"{scrape.om_p50 * 1000:.1f} ms, p99 {scrape.om_p99 * 1000:.1f} ms ({ratio:.2f}x)",
            flush=True,
        )
        figures.append(
            Figure(
                f"/metrics render, {scrape.samples:,} series",
                f"p50 {scrape.p50 * 1000:.1f} ms, p99 {scrape.p99 * 1000:.1f} ms "
                f"(first {scrape.first * 1000:.0f} ms)",
                "p99 <= 50 ms at 10k" if series == 10_000 else "",
                (scrape.p99 <= 0.05) if series == 10_000 else None,
            )
        )
        targeted = series >= 10_000
        figures.append(
            Figure(
                f"/metrics render, OpenMetrics with exemplars, {scrape.samples:,} series",
                f"p50 {scrape.om_p50 * 1000:.1f} ms, p99 {scrape.om_p99 * 1000:.1f} ms "
                f"({ratio:.2f}x the classic text)",
                "<= 2x the classic text" if targeted else "",
                ratio <= 2 if targeted else None,
            )
        )
