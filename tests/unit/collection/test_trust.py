"""What the fast path bets on, checked against real simulators: the single-run endpoint, the
clock, and the audit walk that finds what a lost bet missed.

Each test builds the world in which one undocumented guess is wrong and asserts the exporter is
exact, or loud and then exact at the next audit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from exporter.app import Exporter
from exporter.simulator import SimulatorServer
from exporter.simulator.variant import ApiVariant
from tests.conftest import ExporterFactory, SimFactory, source_for
from tests.series import active, by_labels, finished

CYCLE = timedelta(minutes=1)


class Clock:
    """The exporter's clock: the world's, plus time the world is held still for."""

    def __init__(self, sim: SimulatorServer) -> None:
        self.sim = sim
        self.extra = timedelta(0)

    def __call__(self) -> Any:
        return self.sim.world.now() + self.extra


def _collect(exporter: Exporter) -> None:
    report = exporter.collect_all()[0]
    assert report.ok, report.error


def _requests_to(sim: SimulatorServer, endpoint: str) -> int:
    return sum(1 for r in sim.requests if sim.endpoint_of(r) == endpoint)


def _found_late(exporter: Exporter, source: str) -> dict[str, int]:
    late = by_labels(exporter, "workflow_exporter_runs_found_late_total", source, "reason")
    return {reason: count for (reason,), count in late.items()}


def test_a_run_dated_an_hour_ahead_does_not_move_the_floor_past_a_run_listed_late(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("plextera", seed=41, workflows=2, arrival_rate_per_min=0)
    sim.world.add_runs(12)
    sim.world.advance(60)
    exporter = exporter_factory([source_for(sim, "plextera", page_size=5)], clock=sim.world.now)
    _collect(exporter)

    with sim.world.lock:
        now = sim.world.now()
        # A node whose clock runs an hour fast created this one: it tops the list.
        ahead = sim.world.add_runs(1)[0]
        ahead.created_at = ahead.updated_at = now + timedelta(hours=1)
        sim.world.touch()
    _collect(exporter)
    sim.world.advance(60)

    with sim.world.lock:
        now = sim.world.now()
        sim.world.add_runs(10)  # two pages of newer runs above the late one
        late = sim.world.add_runs(1)[0]
        # Listed two minutes after it was created (an index that lags): below the newest runs,
        # above the overlap.
        late.created_at = late.updated_at = now - timedelta(minutes=2)
        sim.world.finish(late.id, sim.native_for("failed"), "LATE_LISTED")
        sim.world.touch()
    _collect(exporter)

    source = "plextera-test"
    assert finished(exporter, source) == sim.world.truth().finished
    assert active(exporter, source) == sim.world.truth().active
    said = by_labels(exporter, "workflow_exporter_scan_inconsistencies_total", source, "reason")
    assert said == {("clock_ahead",): 1}
    cursor = exporter.store.cursor(source)
    assert cursor is not None
    assert cursor.watermark <= sim.world.now()


def test_the_audit_walk_counts_a_run_the_fast_scan_skipped_once_and_says_so(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("noxus", seed=43, workflows=2, arrival_rate_per_min=3)
    sim.world.add_runs(25)
    sim.world.advance(45 * 60)  # history: the late run will sit deep among older runs
    budget = 2
    exporter = exporter_factory(
        [
            source_for(
                sim,
                "noxus",
                page_size=10,
                audit_interval="10m",
                audit_requests_per_cycle=budget,
                rescan_window="1m",
            )
        ],
        clock=sim.world.now,
    )
    source = "noxus-test"
    _collect(exporter)
    fast: list[int] = []  # requests of a cycle without the audit: pages and lookups
    for _ in range(3):
        sim.world.advance(CYCLE.total_seconds())
        before = len(sim.requests)
        _collect(exporter)
        fast.append(len(sim.requests) - before)
    assert _found_late(exporter, source) == {}

    with sim.world.lock:
        # Listed half an hour after it was created, deeper than the overlap the fast scan reads.
        late = sim.world.add_runs(1)[0]
        late.created_at = late.updated_at = sim.world.now() - timedelta(minutes=30)
        sim.world.finish(late.id, sim.native_for("succeeded"))
        sim.world.touch()
    _collect(exporter)
    truth = sim.world.truth()
    missing = sum(truth.finished.values()) - sum(finished(exporter, source).values())
    assert missing == 1, "the fast scan cannot see below its floor"

    per_cycle = []
    for _ in range(40):
        sim.world.advance(CYCLE.total_seconds())
        before = len(sim.requests)
        _collect(exporter)
        per_cycle.append(len(sim.requests) - before)
        if _found_late(exporter, source):
            break
    assert _found_late(exporter, source) == {"below_floor": 1}
    assert finished(exporter, source) == sim.world.truth().finished
    # The walk spent at most its budget a cycle (plus the page it was reading) over what the
    # fast path costs (give or take a lookup as runs start and finish): resumed, never a storm.
    assert max(per_cycle) <= max(fast) + budget + 1 + 3, (fast, per_cycle)
    # Counted once: later walks find nothing more.
    for _ in range(25):
        sim.world.advance(CYCLE.total_seconds())
        _collect(exporter)
    audits = by_labels(exporter, "workflow_exporter_audits_total", source, "result")
    assert audits[("completed",)] >= 2
    assert _found_late(exporter, source) == {"below_floor": 1}
    assert finished(exporter, source) == sim.world.truth().finished


def test_without_a_single_run_endpoint_active_runs_are_followed_through_the_list(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator(
        "noxus", seed=45, workflows=3, variant=ApiVariant(lookups="absent"), history_seconds=0
    )
    sim.world.add_runs(30)
    sim.world.advance(900)
    clock = Clock(sim)
    exporter = exporter_factory(
        [source_for(sim, "noxus", page_size=5, audit_interval="15m")], clock=clock
    )
    source = "noxus-test"
    for cycle in range(10):
        _collect(exporter)
        sim.world.advance(120)
        if cycle in (3, 6):
            with sim.world.lock:
                assert sim.world.delete_active() is not None  # no endpoint can say it is gone
    for _ in range(10):  # a quiet spell: what is still open finishes or is found by the audit
        clock.extra += timedelta(minutes=2)
        _collect(exporter)
    truth = sim.world.truth()
    assert finished(exporter, source) == truth.finished
    assert active(exporter, source) == truth.active
    facts = exporter.sources[source].collector.list_facts()
    assert facts["lookups"] == "unsupported"
    # Two listed runs refused settle it; after that no lookup until an audit retries one.
    lookups = _requests_to(sim, "/v1/runs/{id}")
    audits = by_labels(exporter, "workflow_exporter_audits_total", source, "result")
    assert lookups <= 2 + 2 * (1 + sum(audits.values())), lookups


def test_a_run_a_confirmed_endpoint_calls_gone_is_looked_for_in_the_list_before_it_is_given_up(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("noxus", seed=47, workflows=2, arrival_rate_per_min=0)
    sim.world.add_runs(30)
    sim.world.advance(30)
    clock = Clock(sim)
    exporter = exporter_factory(
        [source_for(sim, "noxus", page_size=5, overlap="1m", rescan_window="1m")], clock=clock
    )
    source = "noxus-test"
    _collect(exporter)
    collector = exporter.sources[source].collector
    # Later runs push the first ones below the floor, where they are looked up.
    for _ in range(3):
        sim.world.add_runs(12)
        sim.world.advance(120)
        _collect(exporter)
    assert collector.lookups.verified, "an active run below the floor was answered by its id"
    with sim.world.lock:
        gone = sim.world.delete_active()
    assert gone is not None
    before = by_labels(exporter, "workflow_exporter_runs_vanished_total", source, "source")
    for _ in range(4):
        sim.world.advance(60)
        _collect(exporter)
    after = by_labels(exporter, "workflow_exporter_runs_vanished_total", source, "source")
    assert sum(after.values()) - sum(before.values()) >= 1
    assert active(exporter, source) == sim.world.truth().active
    assert finished(exporter, source) == sim.world.truth().finished
