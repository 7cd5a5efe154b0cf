"""Reading an exporter's metrics the way Prometheus would, for comparison with ground truth."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Exporter


def exposition(exporter: Exporter) -> str:
    return generate_latest(exporter.registry).decode()


def samples(registry: CollectorRegistry, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    text = generate_latest(registry).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out.append((dict(sample.labels), sample.value))
    return out


def by_labels(
    exporter: Exporter, name: str, source: str, *keys: str, nonzero: bool = True
) -> Counter[tuple[str, ...]]:
    """Values of one metric for one source, keyed by the given labels (zeros dropped)."""
    result: Counter[tuple[str, ...]] = Counter()
    for labels, value in samples(exporter.registry, name):
        if labels.get("source") != source or (nonzero and value == 0):
            continue
        result[tuple(labels[k] for k in keys)] += int(value)
    return result


def finished(exporter: Exporter, source: str) -> Counter[tuple[str, ...]]:
    return by_labels(exporter, "workflow_runs_finished_total", source, "workflow", "status")


def active(exporter: Exporter, source: str) -> Counter[tuple[str, ...]]:
    return by_labels(exporter, "workflow_runs_active", source, "workflow", "status")


def errors(exporter: Exporter, source: str) -> Counter[tuple[str, ...]]:
    return by_labels(exporter, "workflow_run_errors_total", source, "workflow", "code")


def steps(exporter: Exporter, source: str) -> Counter[tuple[str, ...]]:
    return by_labels(exporter, "workflow_run_steps_total", source, "workflow", "step", "status")


def step_durations(exporter: Exporter, source: str) -> Counter[tuple[str, ...]]:
    return by_labels(
        exporter, "workflow_run_step_duration_seconds_count", source, "workflow", "step"
    )


def up(exporter: Exporter, source: str) -> float | None:
    for labels, value in samples(exporter.registry, "workflow_exporter_source_up"):
        if labels.get("source") == source:
            return value
    return None


def errors_by_workflow(counts: Mapping[Any, float]) -> dict[str, float]:
    """Error counts summed over their codes: (workflow, code) -> n to workflow -> n, for where
    the codes may rightly differ from the truth's (a failure reason no lookup could give)."""
    totals: dict[str, float] = {}
    for (workflow, _code), value in counts.items():
        totals[workflow] = totals.get(workflow, 0) + value
    return totals
