"""API keys never reach a log line, an error message or /metrics, even at DEBUG."""

from __future__ import annotations

import io
import json

from tests.conftest import ExporterFactory, SimFactory, source_for
from tests.helpers import exposition


def test_keys_never_appear_in_logs_errors_or_metrics(
    simulator: SimFactory, exporter_factory: ExporterFactory, captured_logs: io.StringIO
) -> None:
    plextera = simulator("plextera", seed=31, api_key="plx-secret-key-7f3a9c")
    noxus = simulator("noxus", seed=32, api_key="nox-secret-key-b81d2e")
    wrong = "nox-wrong-key-55aa11"
    for sim in (plextera, noxus):
        sim.world.add_runs(10)
        sim.unknown_status(1)
    plextera.bad_record(1)
    exporter = exporter_factory(
        [
            source_for(plextera, "plextera", name="plx"),
            source_for(noxus, "noxus", name="nox"),
            {**source_for(noxus, "noxus", name="nox-wrong"), "api_key": wrong},
        ]
    )
    keys = [plextera.api_key, noxus.api_key, wrong]

    reports = exporter.collect_all()
    plextera.faults.inject("status", count=10, code=500)
    reports += exporter.collect_all()

    errors = [r.error for r in reports if r.error]
    assert errors, "the scenario must produce errors to scan"
    lines = captured_logs.getvalue().splitlines()
    assert len(lines) >= 3, "the scenario must produce log lines to scan"
    for line in lines:
        json.loads(line)  # every line is JSON when not on a terminal
    metrics_text = exposition(exporter)
    for key in keys:
        assert key not in captured_logs.getvalue()
        assert key not in metrics_text
        assert all(key not in error for error in errors)
