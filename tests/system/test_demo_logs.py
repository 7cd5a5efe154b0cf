"""Logs a person reads: the demo demotes what its summaries replace, and APScheduler's raw
warnings become the exporter's own lines."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime

import pytest
from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent

from exporter.collection.schedule import Schedule
from exporter.core.logs import configure, get_logger


def test_quiet_events_are_dropped_at_info_and_shown_at_debug(captured_logs: io.StringIO) -> None:
    quiet = frozenset({"run failed"})
    try:
        out = io.StringIO()
        configure("info", "console", stream=out, quiet_events=quiet)
        log = get_logger("test")
        log.info("run failed", run_id="r-1")
        log.info("plextera-demo: 1 finished (+1), 0 failed (+0), 0 active")
        text = out.getvalue()
        assert "run failed" not in text
        assert "plextera-demo: 1 finished" in text
        assert "{" not in text  # console, not JSON

        out = io.StringIO()
        configure("debug", "console", stream=out, quiet_events=quiet)
        get_logger("test").info("run failed", run_id="r-2")
        assert "[debug" in out.getvalue()
        assert "r-2" in out.getvalue()
    finally:
        configure("debug", "json", stream=captured_logs)


def test_a_missed_run_is_the_exporters_line_not_apschedulers(captured_logs: io.StringIO) -> None:
    schedule = Schedule()
    due = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    # What APScheduler's executor does when a run starts later than its grace time: its raw
    # warning, then the event the schedule listens to.
    logging.getLogger("apscheduler.executors.default").warning(
        'Run time of job "%s" was missed by %s', "collect:late", "0:00:42"
    )
    schedule._missed(JobExecutionEvent(EVENT_JOB_MISSED, "collect:late", "default", due))
    lines = [json.loads(line) for line in captured_logs.getvalue().splitlines() if line]
    assert not any("was missed by" in line["event"] for line in lines)
    (missed,) = [line for line in lines if "too late" in line["event"]]
    assert missed["job"] == "collect:late"
    assert missed["level"] == "warning"
    assert missed["scheduled_at"] == due.isoformat()


def test_the_demos_announcements_are_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """Collection logs from other threads meanwhile; with PYTHONUNBUFFERED a `print` writes a URL
    and its newline apart, and a log line landed between them."""
    from exporter.commands.demo import say

    writes: list[str] = []

    class Recorder(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

    monkeypatch.setattr("sys.stdout", Recorder())
    say(["  exporter landing page  http://127.0.0.1:9855/", "demo-stack: Ctrl-C stops everything"])
    assert writes == [
        "  exporter landing page  http://127.0.0.1:9855/\ndemo-stack: Ctrl-C stops everything\n"
    ]
