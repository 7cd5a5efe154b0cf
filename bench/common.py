"""What every benchmark shares: the figure rows, a simulated world served from a process of its
own, and the machine's description."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporter.simulator import SIMULATORS, SimulatorServer

RESULTS = Path(__file__).with_name("RESULTS.md")
# Children run `python -c` scripts that import `bench` and `exporter` from here.
ROOT = Path(__file__).resolve().parent.parent
MILLION = Path(__file__).with_name("RESULTS-million.md")


@dataclass
class Figure:
    name: str
    value: str
    target: str
    met: bool | None  # None: no target, a figure for the record

    def row(self) -> str:
        verdict = {True: "met", False: "MISSED", None: "—"}[self.met]
        return f"| {self.name} | {self.value} | {self.target} | {verdict} |"


def source_config(sim: SimulatorServer, **extra: Any) -> dict[str, Any]:
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


def local_world(provider: str, runs: int, *, failures: bool) -> SimulatorServer:
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


@dataclass(frozen=True)
class RemoteWorld:
    """A simulator serving a finished world from its own process, so that the exporter's rate is
    measured on its own core and its CPU time is its own."""

    provider: str
    base_url: str
    api_key: str
    settings: dict[str, Any]
    process: subprocess.Popen[str]

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()  # the server stops when its stdin closes
        self.process.wait(timeout=30)


# The world is built once and never changes: frozen out of the garbage collector's reach, or
# every full collection walks a million runs while a page is being rendered.
_SERVE = """
import gc, json, sys
from bench.common import local_world
sim = local_world(sys.argv[1], int(sys.argv[2]), failures=sys.argv[3] == "1")
gc.freeze()
print(json.dumps({"base_url": sim.base_url, "api_key": sim.api_key,
                  "settings": sim.source_settings()}), flush=True)
sys.stdin.read()
sim.stop()
"""


def remote_world(provider: str, runs: int, *, failures: bool) -> RemoteWorld:
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVE, provider, str(runs), "1" if failures else "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait()
        raise RuntimeError(f"the {provider} simulator did not start (exit {process.returncode})")
    info = json.loads(line)
    return RemoteWorld(provider, info["base_url"], info["api_key"], info["settings"], process)


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
