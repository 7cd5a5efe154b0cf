"""Benchmarks (`make bench`): every figure beside its target, each speed as a ratio to a baseline
measured in the same run, since these machines are noisy. Writes bench/RESULTS.md.

    python -m bench.run [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, generate_latest

from exporter import logs
from exporter.accounting import DURATION, QUEUE_WAIT, Cursor, CycleChanges, Observation
from exporter.app import Exporter
from exporter.exposition import generate_text
from exporter.metrics import DEFAULT_BUCKETS, RunsCollector
from exporter.settings import config_from_data
from exporter.simulator import SIMULATORS, SimulatorServer
from exporter.store import Store

RESULTS = Path(__file__).with_name("RESULTS.md")


@dataclass
class Figure:
    name: str
    value: str
    target: str
    met: bool | None  # None: no target, a figure for the record

    def row(self) -> str:
        verdict = {True: "met", False: "MISSED", None: "—"}[self.met]
        return f"| {self.name} | {self.value} | {self.target} | {verdict} |"


def _source(sim: SimulatorServer, **extra: Any) -> dict[str, Any]:
    return {
        "name": f"{sim.provider}-bench",
        "provider": sim.provider,
        "base_url": sim.base_url,
        "api_key": sim.api_key,
        "backfill": "3650d",
        "page_size": 100,
        "rate_limit": 1_000_000,
        "lookup_budget": 100_000,
        **sim.source_settings(),
        **extra,
    }


def _world(provider: str, runs: int, *, failures: bool) -> SimulatorServer:
    sim = SIMULATORS[provider](
        seed=1, arrival_rate_per_min=0, enforce_rate_limit=False, workflows=8
    )
    outcomes = ["succeeded", "succeeded", "succeeded", "cancelled"]
    if failures:
        outcomes.append("failed")
    natives = [sim.native_for(o) for o in outcomes]
    for index, run in enumerate(sim.world.add_runs(runs)):
        sim.world.finish(run.id, natives[index % len(natives)])
    sim.start()
    return sim


# 1. Ingest -------------------------------------------------------------------------------------


def _baseline_fetch(sim: SimulatorServer) -> float:
    """Only fetching the same pages with httpx and parsing them with json.loads."""
    headers = {
        "plextera": {"Authorization": f"api-key {sim.api_key}"},
        "extend": {"Authorization": f"Bearer {sim.api_key}", "x-extend-api-version": "2026-02-09"},
    }[sim.provider]
    started = time.perf_counter()
    with httpx.Client(base_url=sim.base_url, headers=headers) as client:
        if sim.provider == "plextera":
            page = 1
            while True:
                body = json.loads(
                    client.get("/workflow-runs", params={"page": page, "size": 100}).content
                )
                if len(body["data"]) < 100:
                    break
                page += 1
        else:
            params: dict[str, Any] = {"sortBy": "updatedAt", "sortDir": "desc", "maxPageSize": 100}
            while True:
                body = json.loads(client.get("/workflow_runs", params=params).content)
                if "nextPageToken" not in body:
                    break
                params["nextPageToken"] = body["nextPageToken"]
    return time.perf_counter() - started


def bench_ingest(provider: str, runs: int, workdir: Path) -> tuple[float, float]:
    sim = _world(provider, runs, failures=provider == "plextera")
    try:
        baseline = min(_baseline_fetch(sim) for _ in range(2))
        config = config_from_data(
            {
                "state_path": str(workdir / f"ingest-{provider}-{runs}.db"),
                "sources": [_source(sim)],
            },
            environ={},
        )
        exporter = Exporter(config)
        started = time.perf_counter()
        report = exporter.collect_all()[0]
        seconds = time.perf_counter() - started
        exporter.shutdown()
        assert report.ok, report.error
        assert report.counted == runs, (report.counted, runs)
    finally:
        sim.stop()
    return runs / seconds, seconds / baseline


# 2. API efficiency ----------------------------------------------------------------------------


def bench_efficiency(provider: str, change_ratio: float, workdir: Path) -> float:
    """Requests per cycle over the minimum: (new + changed runs) / page size, plus discovery."""
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
    try:
        config = config_from_data(
            {
                "state_path": str(workdir / f"eff-{provider}-{change_ratio}.db"),
                "sources": [_source(sim, overlap="1m")],
            },
            environ={},
        )
        exporter = Exporter(config, clock=sim.world.now)
        assert exporter.collect_all()[0].ok
        ratios = []
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
            sim.clear_requests()
            assert exporter.collect_all()[0].ok
            # Cortex lists per workflow: one request per workflow at the least.
            floor = len(sim.world.workflows) if provider == "cortex" else 0
            minimum = max(floor, math.ceil(changed / 100))
            ratios.append(len(sim.requests) / minimum)
        exporter.shutdown()
    finally:
        sim.stop()
    return statistics.median(ratios)


# 3. Scrape -------------------------------------------------------------------------------------

SERIES_PER_WORKFLOW = (
    5 + 5 * (len(DEFAULT_BUCKETS[DURATION]) + 3) + len(DEFAULT_BUCKETS[QUEUE_WAIT]) + 3 + 2
)


def _store_with_series(series: int, workdir: Path) -> Store:
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


def bench_scrape(series: int, workdir: Path) -> tuple[float, float, int]:
    store = _store_with_series(series, workdir)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunsCollector(store.snapshot))
    text = generate_text(registry)
    assert text == generate_latest(registry), "the fast writer must write the same bytes"
    samples = len([line for line in text.decode().splitlines() if not line.startswith("#")])
    times = []
    for _ in range(60):
        started = time.perf_counter()
        generate_text(registry)  # what the server sends for the classic text format
        times.append(time.perf_counter() - started)
    store.close()
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99) - 1], samples


# 4. Memory and state ---------------------------------------------------------------------------

# VmHWM, not ru_maxrss: after fork and exec, ru_maxrss still counts the parent's pages.
_PEAK = """
def peak_rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0
"""

_FILL = (
    _PEAK
    + """
import sys, time
from datetime import UTC, datetime, timedelta
from exporter.accounting import Cursor, CycleChanges
from exporter.metrics import DEFAULT_BUCKETS
from exporter.store import Store
path, total = sys.argv[1], int(sys.argv[2])
store = Store(path, DEFAULT_BUCKETS)
now = datetime.now(UTC)
cursor = Cursor.first_start(now, timedelta(days=3650))
for start in range(0, total, 20000):
    changes = CycleChanges()
    for i in range(start, min(total, start + 20000)):
        changes.counted.append((f"run-{i:08d}-3c90c3cc-0d44-4b50-8888", now))
        changes.finished[(f"workflow-{i % 50}", "succeeded")] += 1
    store.apply("bench", "plextera", changes, cursor)
store.close()
print(peak_rss())
"""
)

_RESTART = (
    _PEAK
    + """
import sys, time
started = time.perf_counter()
from exporter.app import Exporter
from exporter.exposition import generate_text
from exporter.settings import config_from_data
from prometheus_client import generate_latest
config = config_from_data({"state_path": sys.argv[1], "sources": [{"name": "bench",
    "provider": "plextera", "base_url": "http://127.0.0.1:9", "api_key": "k-bench"}]}, environ={})
exporter = Exporter(config)
generate_latest(exporter.registry)
seconds = time.perf_counter() - started
exporter.shutdown()
print(seconds, peak_rss())
"""
)


def bench_state(runs: int, workdir: Path) -> tuple[int, int, float, int]:
    path = workdir / "million.db"
    fill = subprocess.run(
        [sys.executable, "-c", _FILL, str(path), str(runs)],
        capture_output=True,
        text=True,
        check=True,
    )
    fill_rss = int(fill.stdout.strip())
    size = sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if p.exists())
    restart = subprocess.run(
        [sys.executable, "-c", _RESTART, str(path)], capture_output=True, text=True, check=True
    )
    seconds, rss = restart.stdout.split()
    return size, fill_rss, float(seconds), int(rss)


# The report ------------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}, {platform.system()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args(argv)
    logs.configure("warning", "json")
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    figures: list[Figure] = []
    sizes = [10_000] if args.quick else [10_000, 100_000]
    for provider in ("plextera", "extend"):
        for n in sizes:
            rate, ratio = bench_ingest(provider, n, workdir)
            print(f"ingest {provider} {n}: {rate:,.0f} runs/s, {ratio:.2f}x baseline", flush=True)
            if provider == "plextera":
                figures.append(
                    Figure(
                        f"ingest {provider} {n:,} runs",
                        f"{rate:,.0f} runs/s",
                        ">= 20,000 runs/s",
                        rate >= 20_000,
                    )
                )
            figures.append(
                Figure(
                    f"ingest {provider} {n:,} runs vs fetch+json.loads",
                    f"{ratio:.2f}x",
                    "<= 3x",
                    ratio <= 3,
                )
            )
    for provider in sorted(SIMULATORS):
        for change in (0.01, 0.10):
            ratio = bench_efficiency(provider, change, workdir)
            print(f"efficiency {provider} {change:.0%}: {ratio:.2f}x", flush=True)
            figures.append(
                Figure(
                    f"API requests per cycle, {provider}, {change:.0%} changing",
                    f"{ratio:.2f}x minimum",
                    "<= 1.1x",
                    ratio <= 1.1,
                )
            )
    for series in (1_000, 10_000, 50_000):
        p50, p99, samples = bench_scrape(series, workdir)
        print(
            f"scrape {series}: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms "
            f"({samples} samples)",
            flush=True,
        )
        figures.append(
            Figure(
                f"/metrics render, {samples:,} series",
                f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms",
                "p99 <= 50 ms at 10k" if series == 10_000 else "",
                (p99 <= 0.05) if series == 10_000 else None,
            )
        )
    runs = 100_000 if args.quick else 1_000_000
    size, fill_rss, restart_seconds, restart_rss = bench_state(runs, workdir)
    figures.append(
        Figure(f"state file with {runs:,} counted runs", f"{size / 2**20:.0f} MiB", "", None)
    )
    figures.append(
        Figure(
            f"peak RSS writing {runs:,} runs into the state",
            f"{fill_rss / 2**20:.0f} MiB",
            "<= 150 MB",
            fill_rss <= 150e6,
        )
    )
    figures.append(
        Figure(
            f"restart with {runs:,} runs in the state (start + first render)",
            f"{restart_seconds:.2f} s, peak RSS {restart_rss / 2**20:.0f} MiB",
            "<= 5 s, <= 150 MB",
            restart_seconds <= 5 and restart_rss <= 150e6,
        )
    )
    table = "\n".join(
        ["| figure | value | target | |", "|---|---|---|---|", *(f.row() for f in figures)]
    )
    print(table)
    command = "make bench" if not args.quick else "python -m bench.run --quick"
    RESULTS.write_text(
        f"# Benchmark results\n\nMachine: {machine()}  \n"
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  \n"
        f"Command: `{command}`\n\n{table}\n"
    )
    print(f"written {RESULTS}")
    misses = Counter(f.met for f in figures)[False]
    print(f"{misses} targets missed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
