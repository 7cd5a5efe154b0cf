"""The things a simulated world is made of: a provider's status `Vocabulary`, workflows, and runs
with their lifecycle stage and steps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from exporter.core.model import RunStatus, StepStatus


@dataclass(frozen=True)
class Vocabulary:
    """How one provider names the lifecycle stages, and its canonical table."""

    queued: str
    running: str
    succeeded: str
    failed: str
    cancelled: str
    table: Mapping[str, RunStatus]
    review: str | None = None  # a run waiting on a human
    rejected: str | None = None
    skipped: str | None = None
    error_codes: bool = True  # False: the API exposes no code (truth uses `unspecified`)
    # True: rejected runs carry a code drawn like failed ones' (Plextera's `error` on rejections).
    rejection_codes: bool = False
    # Steps as this API shows them: the label of step i (cycled; empty: the runs carry no
    # steps), each canonical step status's native word, and the provider's table back.
    step_labels: tuple[str, ...] = ()
    step_names: Mapping[StepStatus, str] = field(default_factory=dict)
    step_table: Mapping[str, StepStatus] = field(default_factory=dict)
    step_times: bool = False  # steps carry their start and end (Cortex)

    def canonical(self, native: str) -> RunStatus:
        return self.table.get(native, RunStatus.UNKNOWN)

    def step_label(self, index: int) -> str:
        return self.step_labels[index % len(self.step_labels)]

    def step_native(self, state: StepStatus) -> str:
        return self.step_names[state]

    def step_canonical(self, state: StepStatus) -> StepStatus:
        """What a client reading this API makes of a step in `state`."""
        return self.step_table.get(self.step_names[state], StepStatus.UNKNOWN)


@dataclass(frozen=True)
class SimWorkflow:
    id: str
    name: str


# How the world's API numbers runs: `global` ids are unique in the whole app; `per_workflow` ids
# count within each workflow (`1`, `2`, ... in every one, as an API that addresses runs only
# under their workflow may), so two runs of two workflows share an id; `control_chars` ids come
# in pairs that differ only in a control character (`run-7\x01`, `run-7\x02`).
RunIds = Literal["global", "per_workflow", "control_chars"]


@dataclass
class SimRun:
    id: str  # the API's id: unique only as the world's `run_ids` promise
    workflow: SimWorkflow
    native_status: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    steps_total: int = 3
    steps_completed: int = 0
    error_code: str | None = None
    error_message: str | None = None
    duration_ms: int | None = None
    # Planned lifecycle, in simulated seconds from creation.
    start_after: float = 0.0
    run_for: float = 0.0
    review_for: float | None = None
    outcome: str = "succeeded"
    # Fixed when the run finishes (None while it runs: then `step_states` derives them).
    final_steps: tuple[StepStatus, ...] | None = None
    # (start, end) of each step of a finished run; None where the step never started or ended.
    step_spans: tuple[tuple[datetime | None, datetime | None], ...] = ()
    # The API sends this run's step list garbled (not a list): a client counts it invalid.
    steps_broken: bool = False
    # Nested runs (Plextera): shown inside this run's first step; a hidden run is in no list, so
    # no truth a client of the lists can know includes it.
    children: list[str] = field(default_factory=list)
    hidden: bool = False
    # The world's own key for the run (`World.runs`): its id, unless ids repeat (`per_workflow`).
    key: str = ""

    def __post_init__(self) -> None:
        self.key = self.key or self.id

    @property
    def progress(self) -> float:
        return self.steps_completed / self.steps_total if self.steps_total else 0.0

    def step_states(self) -> tuple[StepStatus, ...]:
        if self.final_steps is not None:
            return self.final_steps
        return tuple(
            StepStatus.SUCCEEDED
            if index < self.steps_completed
            else StepStatus.UNFINISHED
            if index == self.steps_completed and self.started_at is not None
            else StepStatus.NOT_STARTED
            for index in range(self.steps_total)
        )

    def settle_steps(self, status: RunStatus) -> None:
        """Each step's end as the run ends: a failed or cancelled run stops at the step it was
        in (later steps never start), a skipped one skips them all, the others complete them."""
        total = self.steps_total
        at = min(self.steps_completed, total - 1) if total else 0
        states: list[StepStatus] = []
        for index in range(total):
            if status is RunStatus.SKIPPED:
                states.append(StepStatus.SKIPPED)
            elif status in (RunStatus.FAILED, RunStatus.CANCELLED):
                stopped = StepStatus.FAILED if status is RunStatus.FAILED else StepStatus.CANCELLED
                states.append(
                    StepStatus.SUCCEEDED
                    if index < at
                    else stopped
                    if index == at
                    else StepStatus.NOT_STARTED
                )
            else:
                states.append(StepStatus.SUCCEEDED)
        self.final_steps = tuple(states)
        ran = [i for i, state in enumerate(states) if state not in _NEVER_RAN]
        began, ended = self.started_at, self.finished_at
        spans: list[tuple[datetime | None, datetime | None]] = [(None, None)] * total
        if began is not None and ended is not None and ran:
            width = (ended - began) / len(ran)
            for order, index in enumerate(ran):
                spans[index] = (began + width * order, began + width * (order + 1))
        self.step_spans = tuple(spans)

    def reopen_steps(self) -> None:
        self.final_steps = None
        self.step_spans = ()


_NEVER_RAN = frozenset({StepStatus.NOT_STARTED, StepStatus.SKIPPED})
