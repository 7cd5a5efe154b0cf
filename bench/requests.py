"""API requests: what a cycle, an audit walk and each list order cost in requests, beside the
minimum the changes need."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from bench.common import local_world, source_config
from exporter.app import Exporter
from exporter.config.settings import config_from_data
from exporter.providers import registry
from exporter.simulator import SIMULATORS, SimulatorServer
from exporter.simulator.variant import ApiVariant


@dataclass(frozen=True)
class Efficiency:
    ratio: float  # requests over the minimum, median of the cycles
    requests: float  # per cycle, median
    minimum: float  # new and changed runs over the page size (Cortex: one per workflow, plus one)
    to_floor: float  # list pages that reading down to the cycle's floor takes at the least
    lookups: float  # single-run requests per cycle, median

    def detail(self) -> str:
        return (
            f"{self.requests:g} requests: {self.requests - self.lookups:g} list pages "
            f"(down to the floor: {self.to_floor:g}) and {self.lookups:g} lookups; "
            f"minimum {self.minimum:g}"
        )


def bench_efficiency(provider: str, change_ratio: float, workdir: Path) -> Efficiency:
    """Requests per cycle over the minimum: (new + changed runs) / page size, plus discovery.

    Also counts the list pages that reading down to the cycle's floor (the watermark less the
    overlap) takes at the least, with one more run to show the floor is reached: what an exporter
    that re-reads the overlap must spend whatever its paging."""
    total = 2000
    # Two thousand runs spread over the last ~33 hours, as a real list would be.
    sim = SIMULATORS[provider](
        seed=2,
        arrival_rate_per_min=1,
        enforce_rate_limit=False,
        workflows=4,
        history_seconds=total * 60,
    )
    sim.world.arrival_rate_per_min = 0  # from now on, the benchmark makes the changes
    natives = [sim.native_for("succeeded"), sim.native_for("failed")]
    sim.start()
    overlap = timedelta(minutes=1)
    try:
        config = config_from_data(
            {
                "state_path": str(workdir / f"eff-{provider}-{change_ratio}.db"),
                "sources": [source_config(sim, overlap="1m")],
            },
            environ={},
        )
        exporter = Exporter(config, clock=sim.world.now)
        assert exporter.collect_all()[0].ok
        rows: list[tuple[float, int, int, int, int]] = []
        for _ in range(4):
            changes = max(2, int(total * change_ratio))
            before = {r.id: r.updated_at for r in sim.world.runs.values()}
            sim.world.advance(60)
            active = [r for r in sim.world.runs_newest_first() if r.finished_at is None]
            for run in active[: changes // 2]:
                sim.world.finish(run.id, natives[0])
            sim.world.add_runs(changes // 2)
            # New and changed runs, including those the world moved on by itself.
            changed = sum(1 for r in sim.world.runs.values() if before.get(r.id) != r.updated_at)
            cursor = exporter.store.cursor(f"{provider}-bench")
            assert cursor is not None
            to_floor = _pages_to_floor(sim, cursor.scan_floor(overlap), 100)
            sim.clear_requests()
            assert exporter.collect_all()[0].ok
            # Cortex lists per workflow: one request per workflow at the least, and the workflow
            # list (read every cycle, so a new workflow counts at the next one).
            floor = len(sim.world.workflows) + 1 if provider == "cortex" else 0
            minimum = max(floor, math.ceil(changed / 100))
            requests = sim.requests
            lookups = sum(1 for r in requests if not sim.is_list(r))
            rows.append((len(requests) / minimum, len(requests), minimum, to_floor, lookups))
        exporter.shutdown()
    finally:
        sim.stop()
    columns = list(zip(*rows, strict=True))
    return Efficiency(*(statistics.median(column) for column in columns))


@dataclass
class AuditCost:
    runs: int
    requests: int
    minimum: int  # list pages the whole window takes at the page size (plus Cortex discovery)
    rate_limit: float | None  # the source's default requests per second, where it has one

    @property
    def ratio(self) -> float:
        return self.requests / self.minimum

    def share(self, interval_hours: float = 1.0) -> str:
        if self.rate_limit is None:
            return "no documented limit"
        per_hour = self.requests / interval_hours
        return f"{per_hour / (self.rate_limit * 3600):.1%} of {self.rate_limit:g} req/s"


def bench_audit(provider: str, runs: int, workdir: Path) -> AuditCost:
    """What one audit walk costs: the requests to read the whole retention window once, against
    the pages that window holds (a walk a default `audit_interval` of an hour)."""
    sim = local_world(provider, runs, failures=True)
    try:
        config = config_from_data(
            {
                "state_path": str(workdir / f"audit-{provider}-{runs}.db"),
                "sources": [source_config(sim)],
            },
            environ={},
        )
        exporter = Exporter(config, clock=sim.world.now)
        assert exporter.collect_all()[0].ok
        collector = exporter.sources[f"{provider}-bench"].collector
        cursor = exporter.store.cursor(f"{provider}-bench")
        assert cursor is not None
        floor = max(cursor.baseline, cursor.horizon)
        sim.clear_requests()
        read = sum(1 for _ in collector.provider.scan(floor, first_read_floor=floor))
        assert read >= runs
        requests = len(sim.requests)
        exporter.shutdown()
    finally:
        sim.stop()
    minimum = math.ceil(runs / 100)
    if provider == "cortex":
        # Listed per workflow: each workflow's runs fill pages of their own.
        per_workflow = Counter(run.workflow.id for run in sim.world.runs.values())
        minimum = sum(math.ceil(count / 100) for count in per_workflow.values())
    limit = registry()[provider].settings_model.model_fields["rate_limit"].default
    return AuditCost(runs, requests, minimum, limit)


def _pages_to_floor(sim: SimulatorServer, floor: datetime, page_size: int) -> int:
    """List pages from the front down to the first run below the floor (per workflow for
    Cortex), the list ordered as the provider documents it."""
    by_update = sim.provider == "extend"
    lists: dict[str, int] = Counter()
    for run in sim.world.runs.values():
        time_of = run.updated_at if by_update else run.created_at
        if time_of >= floor:
            lists[run.workflow.id if sim.provider == "cortex" else ""] += 1
    if sim.provider == "cortex":
        return sum(math.ceil((lists[w.id] + 1) / page_size) for w in sim.world.workflows)
    return math.ceil((lists[""] + 1) / page_size)


# 2b. List order --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderCost:
    requests: dict[str, float]  # list order -> requests per steady-state cycle, mean
    runs: int

    @property
    def ratio(self) -> float:
        return self.requests["oldest_first"] / self.requests["newest_first"]


def bench_order(provider: str, runs: int, *, cycles: int = 20, arrivals: int = 30) -> OrderCost:
    """Requests per steady-state cycle over a list of `runs` runs served newest-first, and the
    same list served oldest-first (learned, then read from its last page backwards)."""
    cost: dict[str, float] = {}
    for order in ("newest_first", "oldest_first"):
        sim = SIMULATORS[provider](
            seed=3,
            arrival_rate_per_min=0,
            enforce_rate_limit=False,
            workflows=4,
            variant=ApiVariant(order=order),
        )
        finished = sim.native_for("succeeded")
        # History spread over time, all finished (the world then evolves only new runs).
        for _ in range(runs // 100):
            for run in sim.world.add_runs(100):
                sim.world.finish(run.id, finished)
            sim.world.advance(30)
        sim.start()
        try:
            config = config_from_data(
                {
                    "state_path": ":memory:",
                    "sources": [source_config(sim, backfill="1h", overlap="1m")],
                },
                environ={},
            )
            exporter = Exporter(config, clock=sim.world.now)
            for _ in range(2):  # the first start, and one cycle to settle what it learned
                assert exporter.collect_all()[0].ok
                sim.world.advance(60)
            counts = []
            for _ in range(cycles):
                active = [r for r in sim.world.runs_newest_first()[:200] if r.finished_at is None]
                for run in active[: arrivals // 2]:
                    sim.world.finish(run.id, finished)
                sim.world.add_runs(arrivals)
                sim.world.advance(60)
                sim.clear_requests()
                assert exporter.collect_all()[0].ok
                counts.append(len(sim.requests))
            exporter.shutdown()
        finally:
            sim.stop()
        cost[order] = statistics.mean(counts)
    return OrderCost(cost, runs)
