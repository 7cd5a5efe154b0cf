"""What Extend and Cortex need beyond the shared contract: cursor pages over a list that reorders
itself, failure details within a budget, workflows discovered while running, documented rate
limits never met."""

from __future__ import annotations

import io
import json
from collections import Counter
from typing import Any

import httpx

from tests.conftest import ExporterFactory, SimFactory, source_for
from tests.series import active, by_labels, errors, finished


def test_extend_counts_every_change_while_runs_jump_to_the_front_between_page_reads(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("extend", seed=61)
    sim.world.add_runs(40)
    exporter = exporter_factory([source_for(sim, "extend", page_size=5)], clock=sim.world.now)
    sim.advance_per_list_request = 20  # runs progress and finish while pages are read

    for _ in range(6):
        sim.world.advance(120)
        assert exporter.collect_all()[0].ok

    sim.advance_per_list_request = 0
    for _ in range(3):
        assert exporter.collect_all()[0].ok
    truth = sim.world.truth()
    assert finished(exporter, "extend-test") == truth.finished
    assert active(exporter, "extend-test") == truth.active
    assert errors(exporter, "extend-test") == truth.errors
    assert any(status == "needs_review" for _, status in truth.active) or any(
        status == "rejected" for _, status in truth.finished
    )


def test_extend_failure_details_beyond_the_budget_are_fetched_later_and_counted_once(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("extend", seed=62, arrival_rate_per_min=0)
    runs = sim.world.add_runs(30)
    exporter = exporter_factory([source_for(sim, "extend", lookup_budget=7)], clock=sim.world.now)
    assert exporter.collect_all()[0].ok
    for index, run in enumerate(runs):
        sim.world.finish(run.id, "FAILED", error_code=f"CODE_{index % 3}")

    failed_after: list[int] = []
    for _ in range(5):
        sim.clear_requests()
        assert exporter.collect_all()[0].ok
        details = [r for r in sim.requests if r.path.startswith("/workflow_runs/")]
        assert len(details) <= 7
        failed_after.append(
            sum(n for (_, s), n in finished(exporter, "extend-test").items() if s == "failed")
        )

    assert failed_after[0] == 7, "the budget bounds each cycle"
    assert failed_after == sorted(failed_after)
    assert failed_after[-1] == 30
    assert errors(exporter, "extend-test") == sim.world.truth().errors
    assert sum(errors(exporter, "extend-test").values()) == 30
    # Waiting for its reason, a failed run is not shown as active.
    assert sum(active(exporter, "extend-test").values()) == 0


def test_extend_needs_review_is_active_and_ages(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("extend", seed=63, arrival_rate_per_min=0)
    waiting = sim.world.add_runs(3, native_status="NEEDS_REVIEW")
    exporter = exporter_factory([source_for(sim, "extend")], clock=sim.world.now)
    assert exporter.collect_all()[0].ok
    sim.world.advance(600)
    assert exporter.collect_all()[0].ok

    review = Counter(
        {k: v for k, v in active(exporter, "extend-test").items() if k[1] == "needs_review"}
    )
    assert sum(review.values()) == 3
    ages = by_labels(
        exporter,
        "workflow_runs_oldest_active_age_seconds",
        "extend-test",
        "workflow",
        "status",
    )
    assert any(status == "needs_review" and age >= 600 for (_, status), age in ages.items())
    sim.world.finish(waiting[0].id, "REJECTED")
    assert exporter.collect_all()[0].ok
    assert "rejected" in {s for (_, s) in finished(exporter, "extend-test")}


def test_extend_without_the_version_header_gets_a_clear_error(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("extend", seed=64)
    exporter = exporter_factory([source_for(sim, "extend", api_version="2020-01-01")])
    report = exporter.collect_all()[0]
    assert not report.ok
    assert report.error is not None
    assert "400" in report.error
    assert "version" in report.error


def test_cortex_picks_up_a_workflow_created_while_running_and_skips_disabled_ones(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("cortex", seed=65)
    sim.world.add_runs(20)
    exporter = exporter_factory(
        [source_for(sim, "cortex", discovery_interval="0s")], clock=sim.world.now
    )
    assert exporter.collect_all()[0].ok

    sim.world.add_workflow("Late intake")
    sim.world.add_runs(6, workflow="Late intake")
    sim.world.advance(3600)
    assert exporter.collect_all()[0].ok

    truth = sim.world.truth()
    assert finished(exporter, "cortex-test") == truth.finished
    assert active(exporter, "cortex-test") == truth.active
    assert any(workflow == "Late intake" for workflow, _ in finished(exporter, "cortex-test"))
    paths = {r.path for r in sim.requests}
    assert not any("wf-disabled" in p or "wf-deleted" in p for p in paths)


def test_cortex_learns_that_pages_count_from_one(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("cortex", seed=66, workflows=1)
    sim.world.add_runs(35)
    exporter = exporter_factory([source_for(sim, "cortex", page_size=10)])
    assert exporter.collect_all()[0].ok
    pages = [r.query["page"] for r in sim.requests if r.path.endswith("/runs")]
    assert pages == ["1", "2", "3", "4"], pages
    assert (
        sum(finished(exporter, "cortex-test").values())
        + sum(active(exporter, "cortex-test").values())
        == sim.world.truth().runs
    )


def test_cortex_free_text_errors_go_to_logs_never_to_labels(
    simulator: SimFactory, exporter_factory: ExporterFactory, captured_logs: io.StringIO
) -> None:
    sim = simulator("cortex", seed=67, arrival_rate_per_min=0)
    runs = sim.world.add_runs(4)
    for run in runs:
        sim.world.finish(run.id, "FAILED", error_code="SECRET_SAUCE_ERR")
    exporter = exporter_factory([source_for(sim, "cortex")], clock=sim.world.now)
    assert exporter.collect_all()[0].ok

    codes = {code for _, code in errors(exporter, "cortex-test")}
    assert codes == {"unspecified"}
    messages = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    failed = [m for m in messages if m.get("event") == "run failed"]
    assert len(failed) == 4
    assert all("secret sauce err" in m["message"] for m in failed)


def _default_source(sim: Any, provider: str) -> dict[str, Any]:
    source = source_for(sim, provider)
    source.pop("rate_limit")  # the provider's own default
    return source


def test_default_rate_limits_never_meet_a_429(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    extend = simulator("extend", seed=68, enforce_rate_limit=True)
    # 500 a minute is 50 in 6 s: the same rate, in a window a short test can fill.
    cortex = simulator("cortex", seed=69, enforce_rate_limit=True, rate_limit_window_scale=0.1)
    extend.world.add_runs(120)
    cortex.world.add_runs(150)
    exporter = exporter_factory(
        [
            {**_default_source(extend, "extend"), "page_size": 5},
            {**_default_source(cortex, "cortex"), "page_size": 5, "discovery_interval": "0s"},
        ]
    )
    for _ in range(2):
        assert all(report.ok for report in exporter.collect_all())

    assert len(extend.requests) > 40
    assert len(cortex.requests) > 50
    assert extend.stats()["rate_limited"] == 0
    assert cortex.stats()["rate_limited"] == 0
    retries = by_labels(exporter, "workflow_exporter_api_retries_total", "extend-test", "reason")
    assert retries["rate_limited",] == 0


def test_the_simulators_do_enforce_the_documented_limits(simulator: SimFactory) -> None:
    extend = simulator("extend", seed=70, enforce_rate_limit=True)
    headers = {"Authorization": f"Bearer {extend.api_key}", "x-extend-api-version": "2026-02-09"}
    # Requests as fast as one connection goes (a loaded machine may need more than 15 to pass
    # 10 per second); the first refusal is the one inspected.
    with httpx.Client(headers=headers) as client:
        answers = (client.get(f"{extend.base_url}/workflow_runs") for _ in range(200))
        limited = next((a for a in answers if a.status_code == 429), None)
    assert limited is not None, "200 requests at full speed never met the 10 rps limit"
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["code"] == "RATE_LIMIT_EXCEEDED"


def test_a_failed_run_that_vanishes_while_waiting_for_its_detail_is_counted_and_logged(
    simulator: SimFactory, exporter_factory: ExporterFactory, captured_logs: io.StringIO
) -> None:
    sim = simulator("extend", seed=68, arrival_rate_per_min=0)
    runs = sim.world.add_runs(2)
    for run in runs:
        sim.world.finish(run.id, "FAILED", error_code="OCR_TIMEOUT")
    # One detail lookup per cycle: the second failure waits for the next cycle's.
    exporter = exporter_factory(
        [{**source_for(sim, "extend"), "lookup_budget": 1}], clock=sim.world.now
    )
    assert exporter.collect_all()[0].ok
    parked = [a.id for a in exporter.store.active("extend-test").values() if a.awaiting_detail]
    assert len(parked) == 1
    sim.world.delete(parked[0])

    assert exporter.collect_all()[0].ok
    assert sum(errors(exporter, "extend-test").values()) == 2
    logged = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    failed = {m["run_id"] for m in logged if m.get("event") == "run failed"}
    assert failed == {run.id for run in runs}
