"""A scripted incident for the demo: one workflow starts failing with a new error code, then
recovers, and leaves a stuck run and a review backlog behind.

It exists so the demo shows what the product is for within minutes: `WorkflowRunsFailedSpike`
firing in Prometheus and reaching Alertmanager, and the agent's per-run alerts. It acts through
the world's public calls only (`add_runs`, `set_status`, `finish`), from the world's advance
hook, so it moves with simulated time like everything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from exporter.simulator.world import World

# Not one of the world's usual codes, so the incident shows as a new `code` series.
INCIDENT_CODE = "OCR_ENGINE_UNAVAILABLE"


@dataclass(frozen=True)
class IncidentPlan:
    """When and how hard, in simulated seconds (the demo converts from real time by its speed)."""

    start_after: float
    duration: float
    failures_per_minute: float
    # Planted when the incident starts: runs that never finish, and runs left waiting on review.
    stuck_runs: int = 1
    review_runs: int = 3
    code: str = INCIDENT_CODE

    @classmethod
    def real_time(
        cls,
        *,
        speed: float,
        start_after: float = 45.0,
        duration: float = 300.0,
        failures_per_minute: float = 12.0,
    ) -> IncidentPlan:
        """A plan given in real seconds and real failures per minute, for a world advancing
        `speed` simulated seconds per real second."""
        return cls(
            start_after=start_after * speed,
            duration=duration * speed,
            failures_per_minute=failures_per_minute / speed,
        )


@dataclass
class Incident:
    """Attached to one world; `workflow` is the name of the workflow that fails."""

    plan: IncidentPlan
    workflow: str
    started: datetime | None = None
    ended: bool = False
    _debt: float = field(default=0.0, repr=False)
    _origin: datetime | None = field(default=None, repr=False)

    @classmethod
    def attach(cls, world: World, plan: IncidentPlan) -> Incident:
        incident = cls(plan, world.workflows[0].name)
        incident._origin = world.now()
        world.on_advance.append(incident.step)
        return incident

    def step(self, world: World, seconds: float) -> None:
        """Called by the world after each step of `seconds` simulated seconds."""
        if self.ended or self._origin is None:
            return
        elapsed = (world.now() - self._origin).total_seconds()
        if elapsed < self.plan.start_after:
            return
        if self.started is None:
            self.started = world.now()
            self._plant(world)
        if elapsed >= self.plan.start_after + self.plan.duration:
            self.ended = True
            return
        self._debt += self.plan.failures_per_minute * seconds / 60.0
        while self._debt >= 1.0:
            self._debt -= 1.0
            self._fail_one(world)

    def _fail_one(self, world: World) -> None:
        run = world.add_runs(1, workflow=self.workflow)[0]
        world.set_status(run.key, world.vocabulary.running)
        world.finish(run.key, world.vocabulary.failed, error_code=self.plan.code)

    def _plant(self, world: World) -> None:
        vocabulary = world.vocabulary
        for _ in range(self.plan.stuck_runs):
            run = world.add_runs(1, workflow=self.workflow)[0]
            world.set_status(run.key, vocabulary.running)
            run.run_for = timedelta(days=365).total_seconds()  # never finishes by itself
        if vocabulary.review is None:
            return
        for _ in range(self.plan.review_runs):
            run = world.add_runs(1, workflow=self.workflow)[0]
            world.set_status(run.key, vocabulary.running)
            world.set_status(run.key, vocabulary.review)
            run.run_for = 0.0
            run.review_for = timedelta(days=365).total_seconds()  # nobody reviews it
        world.touch()
