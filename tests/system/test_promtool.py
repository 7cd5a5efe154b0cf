"""The exposition passes Prometheus's own linter."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import PROVIDERS, ExporterFactory, SimFactory, source_for
from tests.series import exposition

pytestmark = pytest.mark.system


def test_metrics_pass_promtool_check_metrics(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by `make test` (scripts/install-system-deps.sh)"
    sources = []
    for seed, provider in enumerate(PROVIDERS):
        sim = simulator(provider, seed=50 + seed)
        sim.world.add_runs(20)
        sim.world.advance(1800)
        sources.append(source_for(sim, provider))
    exporter = exporter_factory(sources)
    assert all(r.ok for r in exporter.collect_all())
    text = exposition(exporter)
    assert "workflow_run_duration_seconds_bucket" in text

    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr
