"""Scale: many sources and workflows in one exporter (`make bench` runs it; alone, `python -m
bench.scale`).

One process serves a simulator per provider on loopback, each with its own workflows and
finished runs; the exporter is configured with `sources` sources spread evenly over them (a
source is its own label set: two sources reading one API are two sets of series). Measured in a
process of its own, so that its peak RSS is the exporter's alone: building the configuration
and the exporter, the first cycle of every source (one after another, as `collect_all` runs
them), the first render of `/metrics`, and the series that render holds.

    python -m bench.scale [--sources 1000] [--workflows 10] [--runs 5]
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROVIDERS = ("cortex", "extend", "noxus", "plextera")

# Targets (docs/performance.md: Scale says why these).
BUILD_SECONDS = 5.0
CYCLE_SECONDS = 90.0
RENDER_SECONDS = 5.0
RSS_BYTES = 300_000_000


@dataclass(frozen=True)
class Scale:
    sources: int
    workflows: int  # (source, workflow) pairs: each its own series
    runs: int  # counted by the first cycle, every source together
    build: float  # seconds: configuration read and validated, exporter built
    first_cycle: float  # seconds, every source's first cycle, one after another
    first_cycle_cpu: float  # CPU seconds of the exporter's process in that time
    first_render: float  # seconds, the classic text of /metrics
    series: int  # samples in that render
    peak_rss: int  # bytes, of the exporter's process


def serve_worlds(workflows: int, runs_per_workflow: int) -> None:
    """A simulator per provider, each with `workflows` workflows and their finished runs; prints
    what a source needs to read each, and serves until stdin closes."""
    from exporter.simulator import SIMULATORS  # here: the measuring process never imports it

    sims = []
    for provider in PROVIDERS:
        sim = SIMULATORS[provider](
            seed=4, arrival_rate_per_min=0, enforce_rate_limit=False, workflows=workflows
        )
        succeeded = sim.native_for("succeeded")
        for run in sim.world.add_runs(workflows * runs_per_workflow):
            sim.world.finish(run.id, succeeded)
        sim.start()
        sims.append(sim)
    gc.freeze()
    worlds = [
        {
            "provider": sim.provider,
            "base_url": sim.base_url,
            "api_key": sim.api_key,
            "settings": sim.source_settings(),
            "runs": len(sim.world.runs),
        }
        for sim in sims
    ]
    print(json.dumps(worlds), flush=True)
    sys.stdin.read()
    for sim in sims:
        sim.stop()


def _config(worlds: list[dict[str, Any]], sources: int, state: Path) -> dict[str, Any]:
    return {
        "state_path": str(state),
        "sources": [
            {
                "name": f"{world['provider']}-{index:04d}",
                "provider": world["provider"],
                "base_url": world["base_url"],
                "api_key": world["api_key"],
                "backfill": "30d",
                "rate_limit": 1_000_000,
                **world["settings"],
            }
            for index in range(sources)
            for world in [worlds[index % len(worlds)]]
        ],
    }


def scale_child(sources: int, workflows: int, runs_per_workflow: int, workdir: str) -> None:
    """Runs in a process of its own: prints one Scale as JSON."""
    from bench.rss import peak_rss
    from exporter.app import Exporter
    from exporter.config.settings import config_from_data
    from exporter.core import logs
    from exporter.exposition.formats import generate_text

    logs.configure("warning", "json")
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from bench.scale import serve_worlds; "
            "serve_worlds(int(sys.argv[1]), int(sys.argv[2]))",
            str(workflows),
            str(runs_per_workflow),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert server.stdin is not None
    assert server.stdout is not None
    try:
        worlds = json.loads(server.stdout.readline())
        data = _config(worlds, sources, Path(workdir) / "scale.db")
        started = time.perf_counter()
        exporter = Exporter(config_from_data(data, environ={}))
        build = time.perf_counter() - started
        started, cpu = time.perf_counter(), time.process_time()
        reports = exporter.collect_all()
        first_cycle, first_cycle_cpu = time.perf_counter() - started, time.process_time() - cpu
        failed = [r.error for r in reports if not r.ok]
        assert not failed, failed[:3]
        started = time.perf_counter()
        text = generate_text(exporter.exposed)
        first_render = time.perf_counter() - started
        series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
        exporter.shutdown()
    finally:
        server.stdin.close()
        server.wait(timeout=60)
    runs = sum(r.counted for r in reports)
    expected = sum(worlds[i % len(worlds)]["runs"] for i in range(sources))
    assert runs == expected, (runs, expected)
    pairs = sources * workflows
    result = Scale(
        sources, pairs, runs, build, first_cycle, first_cycle_cpu, first_render, series, peak_rss()
    )
    print(json.dumps(asdict(result)))


def bench_scale(sources: int, workflows: int, runs_per_workflow: int) -> Scale:
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as workdir:
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from bench.scale import scale_child; "
                "scale_child(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])",
                str(sources),
                str(workflows),
                str(runs_per_workflow),
                workdir,
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
    return Scale(**json.loads(child.stdout.strip().splitlines()[-1]))


def scale_rows(
    sources: int = 1000, workflows: int = 10, runs_per_workflow: int = 5
) -> list[tuple[str, str, str, bool | None]]:
    """The figures (name, value, target, met) for bench/RESULTS.md."""
    scale = bench_scale(sources, workflows, runs_per_workflow)
    where = f"{scale.sources:,} sources, {scale.workflows:,} workflows"
    print(
        f"scale {where}: built in {scale.build:.2f} s, first cycle {scale.first_cycle:.1f} s "
        f"({scale.first_cycle_cpu:.1f} CPU s, {scale.runs:,} runs), first render "
        f"{scale.first_render:.2f} s, {scale.series:,} series, peak RSS "
        f"{scale.peak_rss / 2**20:.0f} MiB",
        flush=True,
    )
    return [
        (
            f"configuration and exporter built, {where}",
            f"{scale.build:.2f} s",
            f"<= {BUILD_SECONDS:g} s",
            scale.build <= BUILD_SECONDS,
        ),
        (
            f"first cycle, {where} ({scale.runs:,} runs)",
            f"{scale.first_cycle:.1f} s",
            f"<= {CYCLE_SECONDS:g} s",
            scale.first_cycle <= CYCLE_SECONDS,
        ),
        (
            f"first /metrics render, {where}",
            f"{scale.first_render:.2f} s, {scale.series:,} series",
            f"<= {RENDER_SECONDS:g} s",
            scale.first_render <= RENDER_SECONDS,
        ),
        (
            f"peak RSS, {where} ({scale.series:,} series)",
            f"{scale.peak_rss / 2**20:.0f} MiB",
            f"<= {RSS_BYTES / 1e6:g} MB",
            scale.peak_rss <= RSS_BYTES,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--workflows", type=int, default=10, help="per source")
    parser.add_argument("--runs", type=int, default=5, help="finished runs per workflow")
    args = parser.parse_args(argv)
    for name, value, target, met in scale_rows(args.sources, args.workflows, args.runs):
        verdict = {True: "met", False: "MISSED", None: "—"}[met]
        print(f"| {name} | {value} | {target} | {verdict} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
