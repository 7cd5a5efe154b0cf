"""`/healthz` fails while a collection hangs or the scheduler stops; overruns are counted."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from exporter.app import Exporter
from exporter.collection.schedule import Schedule
from exporter.commands.run import server_hooks
from exporter.exposition.selfmetrics import SelfMetrics
from exporter.providers import SourceSettings
from exporter.web.health import Collecting, Due, collection_bound, problems
from exporter.web.server import MetricsServer
from tests.conftest import ExporterFactory, SimFactory, source_for
from tests.loopback import until
from tests.series import samples

OVERRUNS = "workflow_exporter_collection_overruns_total"


@contextmanager
def serving(exporter: Exporter) -> Iterator[MetricsServer]:
    server = MetricsServer("127.0.0.1:0", server_hooks(exporter))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def healthz(server: MetricsServer) -> httpx.Response:
    return httpx.get(server.url("/healthz"), timeout=5)


def overruns(exporter: Exporter, source: str) -> float:
    return sum(
        v for labels, v in samples(exporter.registry, OVERRUNS) if labels["source"] == source
    )


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_healthz_fails_naming_the_source_while_a_request_hangs_and_recovers(
    simulator: SimFactory, exporter_factory: ExporterFactory, captured_logs: io.StringIO
) -> None:
    sim = simulator("noxus", seed=171)
    sim.world.add_runs(5)
    # Timeouts far longer than the hang: nothing but the health check notices it.
    source = source_for(
        sim, "noxus", interval="1s", timeout="60s", request_deadline="60s", max_retries=0
    )
    exporter = exporter_factory([source], hung_after="2s")
    name = source["name"]
    with serving(exporter) as server:
        exporter.start()
        until("first collection", lambda: httpx.get(server.url("/readyz")).status_code == 200, 10)
        assert healthz(server).text == "ok\n"

        sim.faults.inject("delay", seconds=6)
        until("healthz fails", lambda: healthz(server).status_code == 503, 10)
        reason = healthz(server).text
        assert f"source {name}: collection running for" in reason
        assert "longer than its bound of 2s" in reason

        until("healthz recovers", lambda: healthz(server).status_code == 200, 15)
        assert healthz(server).text == "ok\n"
    report = exporter.sources[name].last_report
    assert report is not None
    assert report.ok
    # The cycles due during the hang were skipped, counted and logged, by source.
    assert overruns(exporter, name) >= 1
    lines = json_lines(captured_logs)
    overrun_lines = [line for line in lines if line.get("event", "").startswith("collection still")]
    assert overrun_lines
    assert all(line["source"] == name for line in overrun_lines)
    assert overrun_lines[0]["level"] == "warning"
    assert not any("maximum number of running instances" in line["event"] for line in lines)


def test_a_held_source_lock_counts_as_hung_and_due_cycles_as_overruns(
    simulator: SimFactory, exporter_factory: ExporterFactory, captured_logs: io.StringIO
) -> None:
    sim = simulator("plextera", seed=172)
    exporter = exporter_factory([source_for(sim, "plextera", interval="1s")], hung_after="1s")
    name = next(iter(exporter.sources))
    assert overruns(exporter, name) == 0  # born at zero
    with serving(exporter) as server:
        with exporter.sources[name].lock:
            exporter.start()
            until("healthz fails", lambda: healthz(server).status_code == 503, 10)
            until("an overrun", lambda: overruns(exporter, name) >= 1, 10)
            assert name in healthz(server).text
        until("healthz recovers", lambda: healthz(server).status_code == 200, 10)
    assert any(
        line.get("source") == name and line["level"] == "warning"
        for line in json_lines(captured_logs)
        if line.get("event", "").startswith("collection still running")
    )


def test_the_schedule_reports_an_overrun_by_source_instead_of_apschedulers_warning(
    captured_logs: io.StringIO,
) -> None:
    release = threading.Event()
    skipped: list[str] = []
    schedule = Schedule(overrun=skipped.append)
    tick = timedelta(seconds=0.2)
    schedule.collect("slow", lambda _name: release.wait(10), interval=tick, jitter_ratio=0, delay=0)
    schedule.deliver_alerts(lambda: release.wait(10), every=tick)
    schedule.start()
    try:
        until("an overrun", lambda: bool(skipped), 5)
        until("the alert job's overrun", lambda: "alerts:flush" in captured_logs.getvalue(), 5)
    finally:
        release.set()
        schedule.shutdown()
    assert set(skipped) == {"slow"}
    assert "maximum number of running instances" not in captured_logs.getvalue()
    other = [line for line in json_lines(captured_logs) if line.get("job") == "alerts:flush"]
    assert other[0]["level"] == "warning"


def test_the_overrun_counter_is_born_at_zero_and_leaves_with_its_source() -> None:
    reg = CollectorRegistry()
    metrics = SelfMetrics(reg)
    metrics.for_source("a", "noxus").overrun()
    metrics.for_source("b", "noxus")
    assert reg.get_sample_value(OVERRUNS, {"source": "a"}) == 1
    assert reg.get_sample_value(OVERRUNS, {"source": "b"}) == 0
    metrics.remove_source("a", "noxus")
    assert reg.get_sample_value(OVERRUNS, {"source": "a"}) is None


def test_the_bound_is_three_intervals_plus_every_attempt_of_one_request() -> None:
    settings = SourceSettings.model_validate(
        {
            "name": "n",
            "provider": "noxus",
            "base_url": "https://example.test",
            "api_key": "k",
            "request_deadline": "60s",
            "max_retries": 3,
        }
    )
    assert collection_bound(timedelta(seconds=30), settings) == 90 + 240


def test_problems_name_a_hung_source_and_a_scheduler_that_stopped() -> None:
    hung = Collecting("a", running_for=12.0, bound=10.0)
    fine = Collecting("b", running_for=3.0, bound=10.0)
    idle = Collecting("c", running_for=None, bound=10.0)
    assert problems([fine, idle], True, [Due("collect:b", -1, 30)]) == []
    assert problems([hung, fine], True, []) == [
        "source a: collection running for 12s, longer than its bound of 10s"
    ]
    assert problems([], False, []) == ["scheduler is not running"]
    assert problems([], True, [Due("collect:b", 45, 30)]) == [
        "scheduler stopped ticking: job collect:b overdue by 45s"
    ]
    # Not scheduling at all (one-shot use): nothing to say about a scheduler.
    assert problems([], None, [Due("collect:b", 999, 30)]) == []
