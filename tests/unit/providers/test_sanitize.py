"""Texts and numbers from an API, made safe where a run enters the exporter (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from exporter.core.model import Run, RunStatus, Step
from exporter.providers.sanitize import Limits, RunSanitizer, clean_label, clean_text

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _mask(text: str) -> str:
    return text.replace("sekret-key-123", "[REDACTED]")


def _sanitizer(reported: list[tuple[str, str]]) -> RunSanitizer:
    return RunSanitizer(
        Limits(), _mask, lambda run_id, what: reported.append((run_id, what)), lambda: NOW
    )


def _run(**fields: object) -> Run:
    base = Run(
        id="r1",
        workflow_id="wf",
        workflow_name="Invoices",
        status=RunStatus.SUCCEEDED,
        native_status="DONE",
        created_at=NOW - timedelta(minutes=5),
        cursor_time=NOW - timedelta(minutes=5),
        finished_at=NOW,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def test_lone_surrogates_and_controls_become_valid_text() -> None:
    cleaned = clean_text("a\ud800b\x00c\nd", 100, _mask)
    assert cleaned == "a\ufffdb c d"
    cleaned.encode("utf-8")  # never raises


def test_long_values_are_cut_with_a_stable_hash_of_the_whole() -> None:
    a, b = "x" * 500 + "a", "x" * 500 + "b"
    assert len(clean_text(a, 128, _mask)) == 128
    assert clean_text(a, 128, _mask) != clean_text(b, 128, _mask)
    assert clean_text(a, 128, _mask) == clean_text(a, 128, _mask)


def test_keys_are_masked_before_cutting() -> None:
    assert "sekret" not in clean_text("x" * 120 + "sekret-key-123", 128, _mask)


def test_an_api_value_reading_like_the_fold_value_is_kept_apart() -> None:
    assert clean_label("other", 128, _mask) == "other_"
    assert clean_label("Invoices", 128, _mask) == "Invoices"


def test_out_of_range_numbers_and_times_are_left_out_and_reported() -> None:
    reported: list[tuple[str, str]] = []
    run = _sanitizer(reported).run(
        _run(
            duration_seconds=float("inf"),
            progress=float("nan"),
            started_at=datetime(1970, 1, 1, tzinfo=UTC),
            created_at=datetime(1970, 1, 1, tzinfo=UTC),
        )
    )
    assert run.duration_seconds is None
    assert run.progress is None
    assert run.started_at is None
    assert not run.created_exactly  # kept, but no age or wait from it
    assert {what.split(" ")[0] for _, what in reported} == {
        "duration",
        "progress",
        "started_at",
        "created_at",
    }


def test_steps_and_every_text_field_are_cleaned() -> None:
    run = _sanitizer([]).run(
        _run(
            error_message="echo sekret-key-123",
            steps=(Step(name="s\ud800", status="OK", type="other"),),
        )
    )
    assert run.error_message == "echo [REDACTED]"
    assert run.steps[0] == Step(name="s\ufffd", status="OK", type="other_")
