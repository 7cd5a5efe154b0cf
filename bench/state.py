"""Memory and state: a state file of a million counted runs, writing it and restarting on it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.common import ROOT

_FILL = """
import sys, time
from bench.rss import peak_rss
from datetime import UTC, datetime, timedelta
from exporter.core.accounting import CycleChanges
from exporter.core.tracking import Cursor
from exporter.core.units import DEFAULT_BUCKETS
from exporter.state.store import Store
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

_RESTART = """
import sys, time
from bench.rss import peak_rss
started = time.perf_counter()
from exporter.app import Exporter
from exporter.exposition.formats import generate_text
from exporter.config.settings import config_from_data
from prometheus_client import generate_latest
config = config_from_data({"state_path": sys.argv[1], "sources": [{"name": "bench",
    "provider": "plextera", "base_url": "http://127.0.0.1:9", "api_key": "k-bench"}]}, environ={})
exporter = Exporter(config)
generate_latest(exporter.registry)
seconds = time.perf_counter() - started
exporter.shutdown()
print(seconds, peak_rss())
"""


def bench_state(runs: int, workdir: Path) -> tuple[int, int, float, int]:
    path = workdir / "million.db"
    fill = subprocess.run(
        [sys.executable, "-c", _FILL, str(path), str(runs)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    fill_rss = int(fill.stdout.strip())
    size = sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if p.exists())
    restart = subprocess.run(
        [sys.executable, "-c", _RESTART, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    seconds, rss = restart.stdout.split()
    return size, fill_rss, float(seconds), int(rss)
