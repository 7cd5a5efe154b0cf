"""The alerting agent's pure core: which alerts a cycle sends, with which labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from exporter.alerting.events import AlertEvent, OpenAlert, Planner, as_sent, sanitise
from exporter.config.alerting import AlertingSettings
from exporter.core.accounting import FinishedRun
from exporter.core.model import RunStatus
from exporter.core.tracking import ActiveRun

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _settings(**extra: object) -> AlertingSettings:
    return AlertingSettings.model_validate(
        {"alertmanagers": [{"url": "http://127.0.0.1:9093"}], **extra}
    )


def _failed(run_id: str = "r1", workflow: str = "Invoices", age: float = 60) -> FinishedRun:
    return FinishedRun(
        run_id,
        workflow,
        RunStatus.FAILED,
        "TIMEOUT",
        NOW - timedelta(seconds=age + 30),
        NOW - timedelta(seconds=age),
        error_message="step\nfailed: key sk-secret-123456 \x07 rejected",
        dashboard_url="https://dashboard.example/runs/r1",
    )


def _active(run_id: str, status: RunStatus, age: float) -> ActiveRun:
    created = NOW - timedelta(seconds=age)
    return ActiveRun(run_id, "Claims", status, created, created)


def test_a_failed_run_becomes_one_alert_with_labels_and_annotations() -> None:
    plan = Planner(_settings(), secrets=lambda: ["sk-secret-123456"]).plan(
        "ext", "extend", [_failed()], {}, {}, NOW
    )

    assert [e.key for e in plan.events] == ["failed/ext/r1"]
    payload = plan.events[0].payload
    assert payload["labels"] == {
        "alertname": "WorkflowRunFailed",
        "source": "ext",
        "provider": "extend",
        "workflow": "Invoices",
        "code": "TIMEOUT",
        "severity": "warning",
        "run_id": "r1",
    }
    notes = payload["annotations"]
    assert notes["run_id"] == "r1"
    assert notes["run_url"] == "https://dashboard.example/runs/r1"
    assert notes["error_message"] == "step failed: key [redacted] rejected"
    assert payload["endsAt"] > payload["startsAt"]


def test_old_failures_filtered_sources_and_workflows_send_nothing() -> None:
    settings = _settings(exclude_workflows="Test.*", sources=["ext"])
    planner = Planner(settings)
    assert not planner.plan("ext", "extend", [_failed(age=7200)], {}, {}, NOW).events
    assert not planner.plan("ext", "extend", [_failed(workflow="Test A")], {}, {}, NOW).events
    assert not planner.plan("other", "extend", [_failed()], {}, {}, NOW).events
    assert planner.plan("ext", "extend", [_failed()], {}, {}, NOW).events


def test_a_stuck_run_fires_once_refreshes_and_resolves_when_it_finishes() -> None:
    planner = Planner(_settings(stuck={"after": "10m"}, refresh_every="30m"))
    running = {"a": _active("a", RunStatus.RUNNING, 900), "b": _active("b", RunStatus.RUNNING, 60)}

    first = planner.plan("cx", "cortex", [], running, {}, NOW)
    assert [e.key for e in first.events] == ["stuck/cx/a/0"]
    assert first.events[0].payload["labels"]["alertname"] == "WorkflowRunStuck"
    opened = {(a.run_id, a.kind): a for a in first.opened}

    again = planner.plan("cx", "cortex", [], running, opened, NOW + timedelta(minutes=5))
    assert not again.events

    later = NOW + timedelta(minutes=31)
    refreshed = planner.plan("cx", "cortex", [], running, opened, later)
    # a is refreshed; b has meanwhile been running past the threshold too.
    assert [e.key for e in refreshed.events] == ["stuck/cx/a/1", "stuck/cx/b/0"]

    done = planner.plan("cx", "cortex", [], {}, opened, later)
    assert [e.key for e in done.events] == ["stuck/cx/a/resolved"]
    assert done.closed == [("a", "stuck")]
    assert done.events[0].payload["endsAt"] <= later.isoformat().replace("+00:00", "Z")


def test_a_run_waiting_on_review_too_long_alerts() -> None:
    planner = Planner(_settings(review={"after": "1h"}))
    runs = {"r": _active("r", RunStatus.NEEDS_REVIEW, 4000)}
    plan = planner.plan("nx", "noxus", [], runs, {}, NOW)
    assert [e.payload["labels"]["alertname"] for e in plan.events] == ["WorkflowReviewWaiting"]


def test_open_alert_of_a_filtered_source_resolves() -> None:
    opened = OpenAlert("a", "stuck", NOW, NOW, 1, {"alertname": "WorkflowRunStuck"}, {})
    plan = Planner(_settings(exclude_sources=["cx"])).plan(
        "cx",
        "cortex",
        [],
        {"a": _active("a", RunStatus.RUNNING, 99999)},
        {("a", "stuck"): opened},
        NOW,
    )
    assert [e.key for e in plan.events] == ["stuck/cx/a/resolved"]


def test_sanitise_cuts_long_messages() -> None:
    assert sanitise("x" * 50, 20) == "x" * 19 + "…"


def test_a_firing_alert_that_expired_in_the_queue_is_sent_with_a_fresh_end() -> None:
    hour = timedelta(hours=1)

    def event(key: str, **payload: object) -> AlertEvent:
        return AlertEvent(key, "s", {"labels": {"alertname": "WorkflowRunFailed"}, **payload})

    live = event("failed/s/r1", endsAt="2026-11-01T12:30:00Z")
    assert as_sent(live, NOW, hour) == live.payload
    expired = event("failed/s/r2", endsAt="2026-11-01T11:00:00Z")
    assert as_sent(expired, NOW, hour)["endsAt"] == "2026-11-01T13:00:00Z"
    resolution = event("stuck/s/r3/resolved", endsAt="2026-11-01T11:00:00Z")
    assert as_sent(resolution, NOW, hour) == resolution.payload
    # A payload without an end, or with one Alertmanager must judge, goes as it is.
    for payload in ({}, {"endsAt": "yesterday"}, {"endsAt": 5}):
        odd = event("failed/s/r4", **payload)
        assert as_sent(odd, NOW, hour) == odd.payload
