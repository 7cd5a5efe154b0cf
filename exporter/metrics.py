"""Domain metrics: names, help texts, labels and buckets, rendered from a store snapshot.

A custom Collector builds fresh metric families on every scrape (the Prometheus guide for writing
exporters asks for this): no stale label sets, no scrape racing a collection, and no provider API
call during a scrape. Sample output:

    workflow_runs_finished_total{source="plextera-prod",provider="plextera",workflow="Invoices",status="failed"} 3.0
    workflow_runs_active{source="plextera-prod",provider="plextera",workflow="Invoices",status="running"} 2.0
"""  # noqa: E501

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from exporter.accounting import DURATION, QUEUE_WAIT, ActiveRun
from exporter.model import ACTIVE_STATUSES, TERMINAL_STATUSES, RunStatus
from exporter.store import Histogram, Snapshot

DEFAULT_BUCKETS: Mapping[str, tuple[float, ...]] = {
    # Document workflows take seconds to hours.
    DURATION: (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800),
    QUEUE_WAIT: (0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200),
}

_TERMINAL = sorted(s.value for s in TERMINAL_STATUSES)
_ACTIVE_PRECREATED = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)


def workflow_series(buckets: Mapping[str, Sequence[float]], active_statuses: int = 4) -> int:
    """Series one workflow label value can create: the budget's unit cost (error codes apart)."""
    terminal = len(_TERMINAL)
    duration = terminal * (len(buckets[DURATION]) + 3)  # buckets, +Inf, _sum, _count
    queue_wait = len(buckets[QUEUE_WAIT]) + 3
    return terminal + duration + queue_wait + 2 * active_statuses + 1


class RunsCollector(Collector):
    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        clock: Callable[[], float] = time.time,
        active_statuses: Callable[[str], Iterable[str]] | None = None,
    ) -> None:
        """`active_statuses(source)` names the non-terminal statuses a source can report, so their
        gauges exist at 0 before the first such run (default: queued and running)."""
        self._snapshot = snapshot
        self._clock = clock
        self._active_statuses = active_statuses or (lambda _source: _ACTIVE_PRECREATED)

    def describe(self) -> Iterator[Metric]:
        # Describing nothing keeps registration from calling collect() at import time.
        return iter(())

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        now = self._clock()
        yield self._finished(snap)
        yield self._errors(snap)
        yield from self._histograms(snap)
        yield from self._active(snap, now)

    def _finished(self, snap: Snapshot) -> Metric:
        family = CounterMetricFamily(
            "workflow_runs_finished",
            "Runs that reached a terminal status; each run counted once, ever.",
            labels=["source", "provider", "workflow", "status"],
        )
        values: dict[tuple[str, str, str], int] = {}
        # Pre-create every terminal status of every workflow seen, so increase() works from the
        # first failure.
        for source, workflows in snap.workflows.items():
            for workflow in workflows:
                for status in _TERMINAL:
                    values[(source, workflow, status)] = 0
        for key, count in snap.finished.items():
            values[key] = count
        for (source, workflow, status), count in sorted(values.items()):
            family.add_metric([source, snap.providers.get(source, ""), workflow, status], count)
        return family

    def _errors(self, snap: Snapshot) -> Metric:
        family = CounterMetricFamily(
            "workflow_run_errors",
            "Failed runs by error code (`unspecified` when the provider gives none).",
            labels=["source", "provider", "workflow", "code"],
        )
        for (source, workflow, code), count in sorted(snap.errors.items()):
            family.add_metric([source, snap.providers.get(source, ""), workflow, code], count)
        return family

    def _histograms(self, snap: Snapshot) -> Iterator[Metric]:
        duration = HistogramMetricFamily(
            "workflow_run_duration_seconds",
            "Run duration, observed once when the run finishes.",
            labels=["source", "provider", "workflow", "status"],
        )
        queue_wait = HistogramMetricFamily(
            "workflow_run_queue_wait_seconds",
            "Time from creation to start, observed once when the run starts or finishes.",
            labels=["source", "provider", "workflow"],
        )
        for (metric, source, workflow, status), hist in sorted(snap.histograms.items()):
            provider = snap.providers.get(source, "")
            if metric == DURATION:
                _add_histogram(duration, [source, provider, workflow, status], hist)
            elif metric == QUEUE_WAIT:
                _add_histogram(queue_wait, [source, provider, workflow], hist)
        yield duration
        yield queue_wait

    def _active(self, snap: Snapshot, now: float) -> Iterator[Metric]:
        labels = ["source", "provider", "workflow", "status"]
        active = GaugeMetricFamily(
            "workflow_runs_active",
            "Runs currently in a non-terminal status.",
            labels=labels,
        )
        oldest = GaugeMetricFamily(
            "workflow_runs_oldest_active_age_seconds",
            "Age of the oldest active run in that status (stuck runs, review backlog).",
            labels=labels,
        )
        progress = GaugeMetricFamily(
            "workflow_runs_progress_ratio",
            "Mean progress (0..1) of active runs that report progress.",
            labels=["source", "provider", "workflow"],
        )
        for source in sorted(set(snap.workflows) | set(snap.active)):
            provider = snap.providers.get(source, "")
            counts, ages, progress_values = _active_aggregates(snap.active.get(source, ()), now)
            for workflow in snap.workflows.get(source, ()):
                for status in self._active_statuses(source):
                    counts.setdefault((workflow, status), 0)
            for (workflow, status), count in sorted(counts.items()):
                active.add_metric([source, provider, workflow, status], count)
            for (workflow, status), age in sorted(ages.items()):
                oldest.add_metric([source, provider, workflow, status], age)
            for workflow, values in sorted(progress_values.items()):
                progress.add_metric([source, provider, workflow], sum(values) / len(values))
        yield active
        yield oldest
        yield progress


def _active_aggregates(
    runs: Iterable[ActiveRun], now: float
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], float], dict[str, list[float]]]:
    counts: dict[tuple[str, str], int] = defaultdict(int)
    ages: dict[tuple[str, str], float] = {}
    progress: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        if run.awaiting_detail or run.status not in ACTIVE_STATUSES:
            continue  # finished, waiting for its failure detail: not active any more
        key = (run.workflow, run.status.value)
        counts[key] += 1
        # A provider clock slightly ahead would give a negative age: report 0 instead.
        age = max(0.0, now - run.created_at.timestamp())
        if age > ages.get(key, -1.0):
            ages[key] = age
        if run.progress is not None:
            progress[run.workflow].append(run.progress)
    return dict(counts), ages, dict(progress)


def _add_histogram(family: HistogramMetricFamily, values: list[str], hist: Histogram) -> None:
    """What `HistogramMetricFamily.add_metric` adds, built with one label dict per series instead
    of one per bucket: histograms are most of a large scrape."""
    labels = dict(zip(family._labelnames, values, strict=True))
    bucket_name = family.name + "_bucket"
    family.samples.extend(
        Sample(bucket_name, {**labels, "le": le}, count, None, None) for le, count in _buckets(hist)
    )
    family.samples.append(Sample(family.name + "_count", labels, hist.count, None, None))
    family.samples.append(Sample(family.name + "_sum", dict(labels), hist.sum, None, None))


def _buckets(hist: Histogram) -> Sequence[tuple[str, float]]:
    cumulative = 0
    out: list[tuple[str, float]] = []
    for upper, count in zip([*hist.bounds, float("inf")], hist.counts, strict=True):
        cumulative += count
        out.append(("+Inf" if upper == float("inf") else _le(upper), cumulative))
    return out


def _le(value: float) -> str:
    return repr(float(value))
