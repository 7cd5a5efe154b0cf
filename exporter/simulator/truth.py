"""What a client should count of a world: the `GroundTruth` tests compare an exporter's counts
against, and how it is counted from the runs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from exporter.core.model import TERMINAL_STATUSES, RunStatus
from exporter.simulator.records import SimRun, Vocabulary


@dataclass
class GroundTruth:
    finished: Counter[tuple[str, str]] = field(default_factory=Counter)
    active: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    runs: int = 0
    # (workflow, step, step status) over the steps of finished runs; the same over failed runs
    # only (what a client that sees steps only in failed runs' details can know); and
    # (workflow, step) -> steps that carry a start and an end.
    steps: Counter[tuple[str, ...]] = field(default_factory=Counter)
    failed_run_steps: Counter[tuple[str, ...]] = field(default_factory=Counter)
    step_durations: Counter[tuple[str, ...]] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        def rows(counter: Mapping[Any, int]) -> list[list[Any]]:
            return [[*key, n] for key, n in sorted(counter.items())]

        return {
            "finished": rows(self.finished),
            "active": rows(self.active),
            "errors": rows(self.errors),
            "runs": self.runs,
            "steps": rows(self.steps),
            "failed_run_steps": rows(self.failed_run_steps),
            "step_durations": rows(self.step_durations),
        }


def count_truth(
    vocabulary: Vocabulary,
    runs: Collection[SimRun],
    deleted_finished: Iterable[SimRun],
    origin_of: Callable[[SimRun], str],
    origins: Collection[str] | None = None,
) -> GroundTruth:
    """What a client should count of these runs and of those deleted after they finished;
    `origins`: of the runs from those origins only."""
    truth = GroundTruth(runs=sum(1 for run in runs if not run.hidden))
    for run in [*runs, *deleted_finished]:
        if run.hidden:
            continue
        status = vocabulary.canonical(run.native_status)
        key = (run.workflow.name, status.value)
        if origins is not None and origin_of(run) not in origins:
            continue
        if not has_finished(vocabulary, run):
            truth.active[key] += 1
            continue
        truth.finished[key] += 1
        _step_truth(vocabulary, run, status, truth)
        # A rejected run counts as an error too (a project decision), with its code only
        # where the API exposes one for rejections.
        if status is RunStatus.FAILED or status is RunStatus.REJECTED:
            exposed = (
                vocabulary.error_codes if status is RunStatus.FAILED else vocabulary.rejection_codes
            )
            code = run.error_code if exposed else None
            truth.errors[(run.workflow.name, code or "unspecified")] += 1
    return truth


def _step_truth(vocabulary: Vocabulary, run: SimRun, status: RunStatus, truth: GroundTruth) -> None:
    v = vocabulary
    if not v.step_labels or run.steps_broken:
        return
    for index, state in enumerate(run.step_states()):
        label = v.step_label(index)
        key = (run.workflow.name, label, v.step_canonical(state).value)
        truth.steps[key] += 1
        if status is RunStatus.FAILED:
            truth.failed_run_steps[key] += 1
        spans = run.step_spans
        if v.step_times and index < len(spans) and None not in spans[index]:
            truth.step_durations[(run.workflow.name, label)] += 1


def has_finished(vocabulary: Vocabulary, run: SimRun) -> bool:
    """Terminal, or in a status the vocabulary does not know but with an end time: a client
    that sees the end time knows the run is over, whatever its status is called."""
    status = vocabulary.canonical(run.native_status)
    if status is RunStatus.UNKNOWN:
        return run.finished_at is not None
    return status in TERMINAL_STATUSES
