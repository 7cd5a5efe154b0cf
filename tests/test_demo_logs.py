"""The demo's logs are for a person: events it summarises elsewhere are demoted to debug."""

from __future__ import annotations

import io

from exporter.logs import configure, get_logger


def test_quiet_events_are_dropped_at_info_and_shown_at_debug() -> None:
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
        configure("info", "json")
