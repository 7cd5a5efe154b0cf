"""Domain metrics: names, help texts, labels and buckets, rendered from a store snapshot.

Over 300 lines with no named split: each family reads the same snapshot and the same held-back
label pairs; writing the lines is `written`'s and `lines`'.

A custom Collector builds fresh metric families on every scrape (the Prometheus guide for writing
exporters asks for this): no stale label sets, no scrape racing a collection, and no provider API
call during a scrape. Sample output:

    workflow_runs_finished_total{source="plextera-prod",provider="plextera",workflow="Invoices",status="failed"} 3.0
    workflow_runs_active{source="plextera-prod",provider="plextera",workflow="Invoices",status="running"} 2.0
    workflow_runs_last_finished_timestamp_seconds{source="plextera-prod",provider="plextera",workflow="Invoices",status="succeeded"} 1.7e+09
    workflow_run_steps_total{source="plextera-prod",provider="plextera",workflow="Invoices",step="web_function",status="failed"} 2.0
"""  # noqa: E501

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from exporter.core.model import ACTIVE_STATUSES, TERMINAL_STATUSES, RunStatus, StepStatus
from exporter.core.tracking import ActiveRun
from exporter.core.units import DEFAULT_BUCKETS, DURATION, QUEUE_WAIT, STEP_DURATION
from exporter.exposition.families import (
    Exemplars,
    Row,
    WrittenHistogram,
    histogram_samples,
    label_pairs,
    simple_family,
)
from exporter.exposition.written import Labels, WrittenFamily
from exporter.state.snapshot import Histogram, Snapshot, born_key, error_born_key, step_born_key

_TERMINAL = sorted(s.value for s in TERMINAL_STATUSES)
_ACTIVE_PRECREATED = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)


def workflow_series(buckets: Mapping[str, Sequence[float]], active_statuses: int = 4) -> int:
    """Series one workflow label value can create: the budget's unit cost (error codes apart)."""
    terminal = len(_TERMINAL)
    duration = terminal * (len(buckets[DURATION]) + 3)  # buckets, +Inf, _sum, _count
    queue_wait = len(buckets[QUEUE_WAIT]) + 3
    last_finished = terminal
    return terminal + duration + queue_wait + last_finished + 2 * active_statuses + 1


def step_series(buckets: Mapping[str, Sequence[float]]) -> int:
    """Series one (workflow, step) pair creates: each step status, and its duration histogram
    (reserved whether or not the API gives durations: the bound must hold either way)."""
    return len(StepStatus) + len(buckets.get(STEP_DURATION, DEFAULT_BUCKETS[STEP_DURATION])) + 3


# One histogram series: its label values and its buckets.
HistogramRow = tuple[tuple[str, ...], Histogram]
# The written lines of histogram series, by (metric name, label values).
_Lines = dict[tuple[str, tuple[str, ...]], WrittenHistogram]

_FINISHED_LABELS = ("source", "provider", "workflow", "status")
_ERROR_LABELS = ("source", "provider", "workflow", "code")
_DURATION_LABELS = ("source", "provider", "workflow", "status")
_QUEUE_WAIT_LABELS = ("source", "provider", "workflow")
_ACTIVE_LABELS = ("source", "provider", "workflow", "status")
_PROGRESS_LABELS = ("source", "provider", "workflow")
_LAST_FINISHED_LABELS = ("source", "provider", "workflow", "status")
_STEP_LABELS = ("source", "provider", "workflow", "step", "status")
_STEP_DURATION_LABELS = ("source", "provider", "workflow", "step")


class RunsCollector(Collector):
    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        clock: Callable[[], float] = time.time,
        active_statuses: Callable[[str], Iterable[str]] | None = None,
        new_series_hold: float = 0.0,
        static_labels: Callable[[], Labels] = dict,
    ) -> None:
        """`active_statuses(source)` names the non-terminal statuses a source can report, so their
        gauges exist at 0 before the first such run (default: queued and running).
        `static_labels()` gives each source's static labels (`StaticLabels.current`), read once
        per rendering and written into each of its series' label sets."""
        self._snapshot = snapshot
        self._static_labels = static_labels
        self._clock = clock
        self._hold = new_series_hold
        self._active_statuses = active_statuses or (lambda _source: _ACTIVE_PRECREATED)
        # Written lines of each histogram series, reused while its buckets stay the same: between
        # two scrapes a cycle touches a few series, and histograms are most of a large scrape.
        # Kept with the static labels they were written with, in one reference, so that lines
        # written before a reload are never taken for lines written after it.
        self._histogram_text: tuple[Labels, _Lines] = ({}, {})

    def describe(self) -> Iterator[Metric]:
        # Describing nothing keeps registration from calling collect() at import time.
        return iter(())

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        now = self._clock()
        labels = self._static_labels()
        labels_kept, kept = self._histogram_text
        if labels != labels_kept:
            kept = {}  # reloaded labels: every histogram series is written again with them
        written: _Lines = {}
        held = self._held(snap, now)
        yield simple_family(
            "counter",
            "workflow_runs_finished",
            "Runs that reached a terminal status; each run counted once, ever.",
            _FINISHED_LABELS,
            self._finished(snap, held),
            labels,
        )
        yield simple_family(
            "counter",
            "workflow_run_errors",
            "Failed runs by error code (`unspecified` when the provider gives none).",
            _ERROR_LABELS,
            self._errors(snap, held),
            labels,
        )
        duration, queue_wait, step_duration = self._histograms(snap, held)
        yield self._histogram_family(
            "workflow_run_duration_seconds",
            "Run duration, observed once when the run finishes.",
            _DURATION_LABELS,
            duration,
            (labels, kept, written),
            # (source, provider, workflow, status) -> the runs behind its buckets.
            lambda values: snap.exemplars.get((values[0], values[2], values[3]), {}),
        )
        yield self._histogram_family(
            "workflow_run_queue_wait_seconds",
            "Time from creation to start, observed once when the run starts or finishes.",
            _QUEUE_WAIT_LABELS,
            queue_wait,
            (labels, kept, written),
        )
        yield simple_family(
            "counter",
            "workflow_run_steps",
            "Steps of finished runs by step status, counted once when the run finishes.",
            _STEP_LABELS,
            self._steps(snap, held),
            labels,
        )
        yield self._histogram_family(
            "workflow_run_step_duration_seconds",
            "Step duration where the API gives a step's start and end, observed once.",
            _STEP_DURATION_LABELS,
            step_duration,
            (labels, kept, written),
        )
        # Only the series of this scrape are kept: series of a forgotten source go with it.
        self._histogram_text = (labels, written)
        active, oldest, progress = self._active(snap, now)
        yield simple_family(
            "gauge",
            "workflow_runs_active",
            "Runs currently in a non-terminal status.",
            _ACTIVE_LABELS,
            active,
            labels,
        )
        yield simple_family(
            "gauge",
            "workflow_runs_oldest_active_age_seconds",
            "Age of the oldest active run in that status (stuck runs, review backlog).",
            _ACTIVE_LABELS,
            oldest,
            labels,
        )
        yield simple_family(
            "gauge",
            "workflow_runs_progress_ratio",
            "Mean progress (0..1) of active runs that report progress.",
            _PROGRESS_LABELS,
            progress,
            labels,
        )
        yield simple_family(
            "gauge",
            "workflow_runs_last_finished_timestamp_seconds",
            "When the newest run of the workflow reached that terminal status (Unix seconds).",
            _LAST_FINISHED_LABELS,
            self._last_finished(snap),
            labels,
        )

    def _held(self, snap: Snapshot, now: float) -> set[tuple[str, str]]:
        """Series born less than the hold ago: served at zero, their increments kept in the
        state until the hold is over (so Prometheus sees them rise from 0)."""
        if self._hold <= 0:
            return set()
        return {key for key, born in snap.born.items() if born and now < born + self._hold}

    def _finished(self, snap: Snapshot, held: set[tuple[str, str]]) -> list[Row]:
        values: dict[tuple[str, str, str], int] = {}
        # Pre-create every terminal status of every workflow seen, so increase() works from the
        # first failure.
        for source, workflows in snap.workflows.items():
            for workflow in workflows:
                for status in _TERMINAL:
                    values[(source, workflow, status)] = 0
        for key, count in snap.finished.items():
            source, workflow, _status = key
            values[key] = 0 if _is_held(held, source, workflow) else count
        return [
            ((source, snap.providers.get(source, ""), workflow, status), count)
            for (source, workflow, status), count in sorted(values.items())
        ]

    def _last_finished(self, snap: Snapshot) -> list[Row]:
        # No series before the first such run: a 0 would read as "last success in 1970" and
        # fire every "no success for N hours" alert for a workflow that never succeeded yet.
        return [
            ((source, snap.providers.get(source, ""), workflow, status), when)
            for (source, workflow, status), when in sorted(snap.last_finished.items())
        ]

    def _errors(self, snap: Snapshot, held: set[tuple[str, str]]) -> list[Row]:
        return [
            (
                (source, snap.providers.get(source, ""), workflow, code),
                0 if _is_held(held, source, workflow, error_born_key(workflow, code)) else count,
            )
            for (source, workflow, code), count in sorted(snap.errors.items())
        ]

    def _steps(self, snap: Snapshot, held: set[tuple[str, str]]) -> list[Row]:
        # Every status of an admitted step is in the snapshot from its admission, at 0.
        return [
            (
                (source, snap.providers.get(source, ""), workflow, step, status),
                0 if _is_held(held, source, workflow, step_born_key(workflow, step)) else count,
            )
            for (source, workflow, step, status), count in sorted(snap.steps.items())
        ]

    def _histograms(
        self, snap: Snapshot, held: set[tuple[str, str]]
    ) -> tuple[list[HistogramRow], list[HistogramRow], list[HistogramRow]]:
        duration: list[HistogramRow] = []
        queue_wait: list[HistogramRow] = []
        step_duration: list[HistogramRow] = []
        for (metric, source, workflow, status), hist in sorted(snap.histograms.items()):
            provider = snap.providers.get(source, "")
            # A step duration's `status` slot holds its step.
            own = step_born_key(workflow, status) if metric == STEP_DURATION else None
            if _is_held(held, source, workflow, own):
                hist = Histogram.empty(hist.bounds)  # noqa: PLW2901 - served at zero for now
            if metric == DURATION:
                duration.append(((source, provider, workflow, status), hist))
            elif metric == QUEUE_WAIT:
                queue_wait.append(((source, provider, workflow), hist))
            elif metric == STEP_DURATION:
                step_duration.append(((source, provider, workflow, status), hist))
        return duration, queue_wait, step_duration

    def _histogram_family(
        self,
        name: str,
        documentation: str,
        labelnames: tuple[str, ...],
        rows: list[HistogramRow],
        lines_of: tuple[Labels, _Lines, _Lines],
        exemplars: Callable[[tuple[str, ...]], Exemplars] = lambda _values: {},
    ) -> WrittenFamily:
        """A histogram family; in OpenMetrics a bucket with a recent run names it as its
        exemplar (a series held at zero has none). `lines_of`: the static labels of this
        rendering, the lines kept from the last one, and where this one's go."""
        labels, kept, written = lines_of
        classic, openmetrics = [], []
        for values, hist in rows:
            key = (name, values)
            lines = kept.get(key)
            if lines is None or not lines.same(hist):
                lines = WrittenHistogram.of(name, label_pairs(labelnames, values, labels), hist)
            written[key] = lines
            classic.append(lines.text)
            openmetrics.append(lines.openmetrics(exemplars(values) if hist.count else {}))

        def samples() -> list[Sample]:
            out: list[Sample] = []
            for values, hist in rows:
                recent = exemplars(values) if hist.count else {}
                series = dict(label_pairs(labelnames, values, labels))
                out.extend(histogram_samples(name, series, hist, recent))
            return out

        return WrittenFamily(
            name,
            documentation,
            "histogram",
            samples,
            classic_lines="".join(classic),
            openmetrics_lines="".join(openmetrics),
        )

    def _active(self, snap: Snapshot, now: float) -> tuple[list[Row], list[Row], list[Row]]:
        active: list[Row] = []
        oldest: list[Row] = []
        progress: list[Row] = []
        for source in sorted(set(snap.workflows) | set(snap.active)):
            provider = snap.providers.get(source, "")
            counts, ages, progress_values = _active_aggregates(snap.active.get(source, ()), now)
            for workflow in snap.workflows.get(source, ()):
                for status in self._active_statuses(source):
                    counts.setdefault((workflow, status), 0)
            for (workflow, status), count in sorted(counts.items()):
                active.append(((source, provider, workflow, status), count))
            for (workflow, status), age in sorted(ages.items()):
                oldest.append(((source, provider, workflow, status), age))
            for workflow, values in sorted(progress_values.items()):
                progress.append(((source, provider, workflow), sum(values) / len(values)))
        return active, oldest, progress


def _is_held(
    held: set[tuple[str, str]], source: str, workflow: str, own: str | None = None
) -> bool:
    """Whether a series is served at zero for now: its workflow was born lately, or the series'
    own birth key (an error code's, a step's) was."""
    return (source, born_key(workflow)) in held or (own is not None and (source, own) in held)


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
