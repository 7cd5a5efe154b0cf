"""The landing page and the bounded record of recent runs it shows."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx

from exporter.collection.summary import cycle_summary
from exporter.core.accounting import FinishedRun
from exporter.core.logs import register_secret
from exporter.core.model import RunStatus
from exporter.state.recent import FAILURES_KEPT, RecentFailure, RecentRuns
from exporter.web.landing import SHIPPED_FILES, SourceStatus, render, shipped_file
from tests.loopback import free_port

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _run(status: RunStatus, minutes_ago: float, workflow: str = "Invoices") -> FinishedRun:
    at = NOW - timedelta(minutes=minutes_ago)
    code = "TIMEOUT" if status is RunStatus.FAILED else "unspecified"
    return FinishedRun(f"r-{minutes_ago}-{status}", workflow, status, code, at, at)


def test_recent_runs_count_the_last_hour_by_finish_time_and_keep_the_last_failures() -> None:
    recent = RecentRuns()
    runs = [_run(RunStatus.SUCCEEDED, m) for m in (1, 30, 59, 61, 120)]
    runs += [_run(RunStatus.FAILED, m) for m in range(20)]
    recent.record("s", runs, NOW)
    assert recent.last_hour("s", NOW) == Counter({"succeeded": 3, "failed": 20})
    assert recent.totals("s") == Counter({"succeeded": 5, "failed": 20})
    failures = recent.failures("s")
    assert len(failures) == FAILURES_KEPT
    assert failures[0].finished_at == NOW  # newest first
    # An hour later the minutes have aged out; the totals stay.
    assert recent.last_hour("s", NOW + timedelta(hours=1)) == Counter()
    recent.forget("s")
    assert recent.totals("s") == Counter()


def test_finish_times_ahead_of_the_clock_count_as_now_and_stay_bounded() -> None:
    recent = RecentRuns()
    ahead = [_run(RunStatus.SUCCEEDED, -m) for m in range(1, 500)]  # up to 500 minutes ahead
    recent.record("s", ahead, NOW)
    assert recent.last_hour("s", NOW) == Counter({"succeeded": 499})
    assert len(recent._sources["s"].minutes) == 1


def test_failures_include_rejections_and_never_show_a_time_not_yet_reached() -> None:
    recent = RecentRuns()
    recent.record("s", [_run(RunStatus.FAILED, -30), _run(RunStatus.REJECTED, 2)], NOW)
    failures = recent.failures("s")
    assert [f.finished_at for f in failures] == [NOW, NOW - timedelta(minutes=2)]


def test_cycle_summary_reads_at_a_glance() -> None:
    before = Counter({"succeeded": 130, "failed": 2})
    after = Counter({"succeeded": 135, "failed": 3, "cancelled": 4})
    line = cycle_summary("plextera-demo", after, before, active=14)
    assert line == "plextera-demo: 142 finished (+10), 3 failed (+1), 14 active"


def test_landing_page_shows_recent_runs_escaped_and_never_a_key() -> None:
    register_secret("sk-landing-0123456789")
    status = SourceStatus(
        name="plx",
        provider="plextera",
        up=False,
        last_error="401 for key sk-landing-0123456789",
        last_collection=NOW.timestamp() - 5,
        active=3,
        counted_last_cycle=1,
        last_hour={"failed": 4, "succeeded": 40},
        failures=[RecentFailure("<script>alert(1)</script>", "BAD&CODE", NOW)],
    )
    page = render([status], now=NOW.timestamp() + 60)
    assert "sk-landing-0123456789" not in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "BAD&amp;CODE" in page
    assert "succeeded <b>40</b>" in page
    assert "12:00:00 UTC (60 s ago)" in page
    assert page.index("succeeded <b>") < page.index("failed <b>")  # lifecycle order


def test_shipped_files_are_served_by_a_fixed_list_only() -> None:
    assert shipped_file("/files/../pyproject.toml") is None
    assert shipped_file("/files/grafana/../../README.md") is None
    for path, file in SHIPPED_FILES.items():
        assert file.is_file(), file
        served = shipped_file(path)
        assert served is not None
        assert served[0] == file.read_bytes()


def test_landing_page_links_the_files_it_serves() -> None:
    from prometheus_client import CollectorRegistry

    from exporter.web.server import MetricsServer, ServerHooks

    port = free_port()
    server = MetricsServer(
        f"127.0.0.1:{port}",
        ServerHooks(registry=CollectorRegistry(), ready=lambda: True, sources=lambda: []),
    )
    server.start()
    try:
        page = httpx.get(server.url("/")).text
        for path in SHIPPED_FILES:
            assert f'href="{path}"' in page
            response = httpx.get(server.url(path))
            assert response.status_code == 200
        assert httpx.get(server.url("/files/nothing")).status_code == 404
    finally:
        server.stop()


def test_a_finish_time_ahead_of_our_clock_shows_no_negative_age() -> None:
    status = SourceStatus(
        "s",
        "extend",
        True,
        None,
        NOW.timestamp(),
        0,
        0,
        {},
        [RecentFailure("Invoices", "TIMEOUT", NOW + timedelta(minutes=5))],
    )
    page = render([status], now=NOW.timestamp())
    assert "12:05:00 UTC</td>" in page
    assert "-300" not in page
