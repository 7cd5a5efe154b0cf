"""Library logging (APScheduler, httpx, the standard library) comes out as our own lines."""

from __future__ import annotations

import io
import json
import logging

from exporter.core import logs


def test_a_library_record_is_one_json_line_like_ours(captured_logs: io.StringIO) -> None:
    logging.getLogger("apscheduler").warning("x")

    lines = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["x"]
    assert lines[0]["level"] == "warning"
    assert lines[0]["logger"] == "apscheduler"
    assert "timestamp" in lines[0]


def test_a_library_record_is_redacted_and_its_traceback_rendered(
    captured_logs: io.StringIO,
) -> None:
    logs.register_secret("lib-record-key-8f3a2c")
    try:
        raise RuntimeError("lib-record-key-8f3a2c rejected")
    except RuntimeError:
        logging.getLogger("httpx").exception("request with lib-record-key-8f3a2c failed")

    (line,) = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    assert line["event"] == "request with [REDACTED] failed"
    assert line["level"] == "error"
    assert "RuntimeError: [REDACTED] rejected" in line["exception"]


def test_configuring_again_replaces_the_handler_instead_of_adding_one() -> None:
    first, second = io.StringIO(), io.StringIO()
    logs.configure("info", "json", stream=first)
    logs.configure("info", "console", stream=second)
    logging.getLogger("somelib").warning("once")

    assert first.getvalue() == ""
    assert second.getvalue().count("once") == 1
