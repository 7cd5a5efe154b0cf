"""A warning the same condition would give every cycle is said once per source and reason,
then summed up once an hour; the counters still count every occurrence."""

from __future__ import annotations

import io
import json
from typing import Any

from exporter.collection.repeats import MAX_CONDITIONS, RepeatedWarnings
from tests.conftest import ExporterFactory, SimFactory, source_for
from tests.series import by_labels


class RecordingLog:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def warning(self, message: str, **fields: Any) -> None:
        self.lines.append(("warning", message, fields))

    def info(self, message: str, **fields: Any) -> None:
        self.lines.append(("info", message, fields))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_condition_is_said_once_then_summed_up_each_hour() -> None:
    log, clock = RecordingLog(), Clock()
    repeats = RepeatedWarnings(log, interval=3600, clock=clock)
    for minute in range(60):
        clock.now = minute * 60.0
        repeats.warn(("invalid_record", "field"), "invalid record skipped", detail=f"run {minute}")
    assert log.lines == [("warning", "invalid record skipped", {"detail": "run 0"})]

    clock.now = 3600.0
    repeats.warn(("invalid_record", "field"), "invalid record skipped", detail="run 60")
    assert log.lines[1:] == [
        (
            "warning",
            "still seen: invalid record skipped",
            {"times": 60, "in_the_last_seconds": 3600, "detail": "run 60"},
        )
    ]
    # The next hour starts from the summary: quiet until it is over.
    clock.now = 3700.0
    repeats.warn(("invalid_record", "field"), "invalid record skipped", detail="run 61")
    assert len(log.lines) == 2


def test_each_reason_is_its_own_condition_and_keeps_its_level() -> None:
    log = RecordingLog()
    repeats = RepeatedWarnings(log, clock=Clock())
    for _ in range(3):
        repeats.warn(("invalid_record", "field"), "invalid record skipped")
        repeats.warn(("invalid_record", "schema"), "invalid record skipped")
        repeats.say(("learned", "list_order", "newest_first"), "info", "learned")
    assert [(level, message) for level, message, _ in log.lines] == [
        ("warning", "invalid record skipped"),
        ("warning", "invalid record skipped"),
        ("info", "learned"),
    ]


def test_the_conditions_remembered_are_bounded() -> None:
    log = RecordingLog()
    repeats = RepeatedWarnings(log, clock=Clock())
    for index in range(MAX_CONDITIONS + 1):
        repeats.warn(index, "odd")
    repeats.warn(0, "odd")  # forgotten when the memory started over: said again
    assert len(log.lines) == MAX_CONDITIONS + 2


def test_an_invalid_record_served_every_cycle_is_logged_once_and_counted_each_time(
    simulator: SimFactory, exporter_factory: ExporterFactory, captured_logs: io.StringIO
) -> None:
    sim = simulator("plextera", seed=53, arrival_rate_per_min=0)
    sim.world.add_runs(3)
    exporter = exporter_factory([source_for(sim, "plextera", name="plx")])

    for _ in range(4):
        sim.bad_record(1)  # the cycle's list page carries one record with a broken field
        assert exporter.collect_all()[0].ok

    invalid = by_labels(exporter, "workflow_exporter_invalid_records_total", "plx", "reason")
    assert sum(invalid.values()) == 4, "every occurrence counted"
    lines = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    said = [line for line in lines if "invalid record skipped" in line.get("event", "")]
    assert len(said) == len(invalid), "one line per reason"
    assert {line["source"] for line in said} == {"plx"}
