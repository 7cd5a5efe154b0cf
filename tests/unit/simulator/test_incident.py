"""The demo's scripted incident, driven through the world's own clock."""

from __future__ import annotations

from collections import Counter

from exporter.core.model import RunStatus
from exporter.simulator.extend import ExtendSimulator
from exporter.simulator.incident import INCIDENT_CODE, Incident, IncidentPlan


def test_incident_fails_one_workflow_with_a_new_code_then_recovers() -> None:
    sim = ExtendSimulator(seed=3)
    world = sim.world
    plan = IncidentPlan(start_after=60, duration=300, failures_per_minute=10)
    incident = Incident.attach(world, plan)

    def incident_failures() -> int:
        return sum(1 for r in world.runs.values() if r.error_code == INCIDENT_CODE)

    world.advance(59)
    assert incident.started is None
    assert incident_failures() == 0
    world.advance(120)
    assert incident.started is not None
    during = incident_failures()
    assert 15 <= during <= 25  # about 10 a minute for two minutes
    assert {r.workflow.name for r in world.runs.values() if r.error_code == INCIDENT_CODE} == {
        incident.workflow
    }
    world.advance(600)
    assert incident.ended
    after = incident_failures()
    world.advance(600)
    assert incident_failures() == after  # recovered: no more of them


def test_incident_leaves_a_stuck_run_and_a_review_backlog() -> None:
    sim = ExtendSimulator(seed=4)
    world = sim.world
    incident = Incident.attach(
        world, IncidentPlan(start_after=0, duration=60, failures_per_minute=1)
    )
    world.advance(30)
    world.advance(7200)  # two hours later they still wait
    statuses = Counter(
        world.vocabulary.canonical(r.native_status)
        for r in world.runs.values()
        if r.workflow.name == incident.workflow
        and r.created_at == incident.started
        and r.error_code is None
    )
    assert statuses[RunStatus.RUNNING] == incident.plan.stuck_runs
    assert statuses[RunStatus.NEEDS_REVIEW] == incident.plan.review_runs


def test_a_real_time_plan_scales_with_the_demo_speed() -> None:
    plan = IncidentPlan.real_time(speed=30, start_after=60, duration=300, failures_per_minute=12)
    assert plan.start_after == 1800
    assert plan.duration == 9000
    assert plan.failures_per_minute == 0.4  # per simulated minute: 12 per real minute


def test_a_steady_workflow_fails_rarely_from_its_history_on() -> None:
    """The demo's SLO workflow; the other workflows fail as usual."""
    sim = ExtendSimulator(seed=4, history_seconds=6 * 3600, steady_workflows=1)
    first = sim.world.workflows[0].name
    assert sim.world.steady_workflows == {first}
    mine = [r.outcome for r in sim.world.runs.values() if r.workflow.name == first]
    others = [r.outcome for r in sim.world.runs.values() if r.workflow.name != first]
    assert len(mine) > 50
    assert mine.count("failed") <= 1
    assert "rejected" not in mine
    assert others.count("failed") > len(others) / 20
