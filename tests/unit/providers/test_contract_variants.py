"""The contract, against every way each API may answer what its docs leave open.

Every simulator declares the variants its provider might answer with (list order, first page,
a silent page-size cap, date-only or offset-less timestamps, missing fields, statuses, a cursor
that misses changes, totals that lie, a cursor that goes round, absurd numbers); each provider
must count exactly against each, say what it learned, be loud where the answers do not add up,
and keep each cycle's requests within a small multiple of what reading its lists whole costs.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from exporter.app import Exporter
from exporter.simulator import SIMULATORS, SimulatorServer
from exporter.simulator.exchange import Request
from exporter.simulator.variant import ApiVariant
from tests.conftest import PROVIDERS, ExporterFactory, SimFactory, source_for
from tests.loopback import run_check
from tests.series import active, by_labels, errors, errors_by_workflow, finished, samples

CASES = [(p, name) for p in PROVIDERS for name in sorted(SIMULATORS[p].variants)]
CYCLE = timedelta(minutes=2)


def _variant(provider: str, name: str) -> ApiVariant:
    return SIMULATORS[provider].variants[name]


class SteppedClock:
    """The exporter's clock: the simulated world's, plus time that passes while the world is
    held still (a quiet spell the exporter lives through)."""

    def __init__(self, sim: SimulatorServer) -> None:
        self.sim = sim
        self.extra = timedelta(0)

    def __call__(self) -> datetime:
        return self.sim.world.now() + self.extra


PAGE_SIZE = 100
# Per variant, the named reasons the exporter must count (be loud) when the answers do not add
# up; counts stay exact under every one of them.
LOUD: dict[str, set[str]] = {
    "nested_unlisted": {"nested_run_unlisted"},
    "clock_ahead": {"clock_ahead"},
    "totals_low": {"total_below_items"},
    "totals_negative": {"total_negative"},
    "totals_absurd": {"total_unreachable"},
    # The cursor wraps around after the last page: every run was listed once before it does.
    "cursor_cycle": {"cursor_cycle"},
}


def _lists_per_cycle(sim: SimulatorServer) -> int:
    """The runs lists a cycle reads: Cortex lists per workflow, Plextera lists its active runs
    too."""
    return {"cortex": len(sim.world.workflows), "plextera": 2}.get(sim.provider, 1)


def _whole_read(sim: SimulatorServer) -> int:
    """Requests that read every list of the world whole, page by page, with the empty page that
    ends a list: what a cycle costs at most when nothing is known of the list."""
    per_page = min(PAGE_SIZE, sim.variant.page_cap or PAGE_SIZE)
    with sim.world.lock:
        listed = len(sim.world.runs)
    return _lists_per_cycle(sim) * (-(-listed // per_page) + 1)


def _list_requests(sim: SimulatorServer, requests: list[Request]) -> int:
    return sum(1 for request in requests if sim.is_list(request))


def _run(
    provider: str,
    name: str,
    simulator: SimFactory,
    exporter_factory: ExporterFactory,
    *,
    seed: int = 21,
    **settings: Any,
) -> tuple[SimulatorServer, Exporter, SteppedClock]:
    sim = simulator(provider, seed=seed, workflows=3, variant=_variant(provider, name))
    sim.world.add_runs(30)
    sim.world.advance(900)  # some history: finished, failed, running, waiting
    clock = SteppedClock(sim)
    # Audits every few cycles: in a world where every guess holds they find nothing.
    settings.setdefault("audit_interval", "6m")
    source = source_for(sim, provider, page_size=PAGE_SIZE, recheck_after="3m", **settings)
    exporter = exporter_factory([source], clock=clock)

    def cycle() -> None:
        before = len(sim.requests)
        report = exporter.collect_all()[0]
        assert report.ok, report.error
        # Bounded whatever the API answers: lying totals, a cursor going round (without the
        # checks: pages up to max_pages, 10,000 requests a cycle).
        spent = _list_requests(sim, sim.requests[before:])
        assert spent <= 2 * _whole_read(sim), (spent, _whole_read(sim))

    for _ in range(8):
        cycle()
        sim.world.advance(CYCLE.total_seconds())  # runs move on, new ones arrive
    # A quiet spell: the world stands still while the exporter keeps polling.
    for _ in range(3):
        clock.extra += CYCLE
        cycle()
    return sim, exporter, clock


def _facts(exporter: Exporter, source: str) -> dict[str, str]:
    rows = [
        labels
        for labels, value in samples(exporter.registry, "workflow_exporter_source_info")
        if labels["source"] == source and value == 1
    ]
    assert len(rows) == 1, rows
    return rows[0]


def _expected_facts(provider: str, variant: ApiVariant) -> dict[str, str]:
    paged = provider != "extend"
    expected = {
        "list_order": variant.order if paged else "newest_first",
        "first_page": str(variant.first_page if variant.first_page is not None else 1)
        if paged
        else "none",
        "timestamps": {"full": "offset"}.get(variant.timestamps, variant.timestamps),
    }
    if variant.page_cap:
        expected["page_size"] = str(variant.page_cap)
    if variant.timestamps == "date_only":
        # Runs of one day all read the same: the order shows only once the list spans two days.
        del expected["list_order"]
    return expected


@pytest.mark.parametrize(("provider", "name"), CASES)
def test_counts_equal_ground_truth_and_the_shape_is_learned(
    provider: str, name: str, simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim, exporter, _ = _run(provider, name, simulator, exporter_factory)
    source = f"{provider}-test"
    truth = sim.world.truth()

    variant = _variant(provider, name)
    assert finished(exporter, source) == truth.finished
    assert active(exporter, source) == truth.active
    facts = _facts(exporter, source)
    if variant.lookups != "served" and provider == "extend":
        # Failure reasons come only from the single-run endpoint: without it, failed runs count
        # with the code `unspecified`, each said on its own counter.
        assert facts["lookups"] == "unsupported"
        assert errors_by_workflow(errors(exporter, source)) == errors_by_workflow(truth.errors)
        assert {code for _, code in errors(exporter, source)} == {"unspecified"}
        unavailable = by_labels(
            exporter, "workflow_exporter_failure_details_unavailable_total", source, "source"
        )
        assert sum(unavailable.values()) > 0
    else:
        assert errors(exporter, source) == truth.errors
    if variant.lookups != "served":
        # Shown absent where the cycle needed a lookup; never believed where it did not.
        assert facts["lookups"] in ("unsupported", "unverified")
    else:
        assert facts["lookups"] in ("supported", "unverified")

    for fact, value in _expected_facts(provider, _variant(provider, name)).items():
        assert facts[fact] == value, (fact, facts)
    inconsistent = by_labels(
        exporter, "workflow_exporter_scan_inconsistencies_total", source, "reason"
    )
    audits = by_labels(exporter, "workflow_exporter_audits_total", source, "result")
    assert audits[("completed",)] >= 1, audits
    late = by_labels(exporter, "workflow_exporter_runs_found_late_total", source, "reason")
    assert not late, late
    if _variant(provider, name).stale_updated_at:
        # Counts caught up through lookups, and the missed changes were said out loud.
        assert inconsistent[("change_without_update",)] > 0
    else:
        # Nested runs the list never shows are not counted (the truth leaves them out), but said;
        # runs dated ahead are counted all the same, and said (each once); totals that lie are
        # not believed, and said; a cursor going round ends, and is said.
        assert {reason for (reason,) in inconsistent} == LOUD.get(name, set()), inconsistent
    invalid = by_labels(exporter, "workflow_exporter_invalid_records_total", source, "reason")
    if _variant(provider, name).huge_numbers:
        # Absurd numbers lose their field, counted, never their run (the counts above).
        assert set(invalid) == {("field",)}, invalid
    else:
        assert not invalid, invalid


@pytest.mark.parametrize(("provider", "name"), CASES)
def test_no_active_run_looks_older_or_younger_than_it_is_by_more_than_a_cycle(
    provider: str, name: str, simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator(provider, seed=23, workflows=2, variant=_variant(provider, name))
    clock = SteppedClock(sim)
    exporter = exporter_factory([source_for(sim, provider, page_size=100)], clock=clock)
    step = timedelta(minutes=1)
    for _ in range(12):  # runs arrive while the exporter polls
        assert exporter.collect_all()[0].ok
        sim.world.advance(step.total_seconds())
    assert exporter.collect_all()[0].ok

    now = sim.world.now()
    truth: dict[tuple[str, str], float] = {}
    with sim.world.lock:
        for run in sim.world.runs.values():
            status = sim.vocabulary.canonical(run.native_status)
            # A run no list shows (a nested run the top level leaves out) is nobody's to age.
            if status.terminal or run.finished_at is not None or run.hidden:
                continue
            key = (run.workflow.name, status.value)
            truth[key] = max(truth.get(key, 0.0), (now - run.created_at).total_seconds())
    ages = {
        (labels["workflow"], labels["status"]): value
        for labels, value in samples(exporter.registry, "workflow_runs_oldest_active_age_seconds")
        if labels["source"] == f"{provider}-test"
    }
    assert truth, "the world has active runs"
    for key, age in truth.items():
        assert abs(ages[key] - age) <= step.total_seconds(), (key, ages[key], age)


@pytest.mark.parametrize(("provider", "name"), CASES)
def test_check_prints_what_it_learned(
    provider: str, name: str, simulator: SimFactory, tmp_path: Path
) -> None:

    sim = simulator(provider, seed=25, workflows=2, variant=_variant(provider, name))
    sim.world.add_runs(60)
    sim.world.advance(600)
    done = run_check(tmp_path, [source_for(sim, provider, page_size=100)])
    assert done.returncode == 0, done.stdout + done.stderr
    learned = next(line for line in done.stdout.splitlines() if "list:" in line)
    for fact, value in _expected_facts(provider, _variant(provider, name)).items():
        assert f"{fact} {value}" in learned, learned
    # What does not add up is shown, with its reason.
    for reason in LOUD.get(name, set()):
        assert f"inconsistent: {reason}: " in done.stdout, done.stdout


def test_a_cortex_workflow_created_while_running_counts_with_the_runs_it_had_before(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("cortex", seed=27, workflows=2)
    sim.world.add_runs(10)
    exporter = exporter_factory([source_for(sim, "cortex")], clock=sim.world.now)
    assert exporter.collect_all()[0].ok
    sim.world.advance(20 * 60)
    assert exporter.collect_all()[0].ok

    late = sim.world.add_workflow("Late intake")
    with sim.world.lock:
        for run in sim.world.add_runs(4, workflow=late.name):
            # Imported with history: created before the last cycle, deeper than the overlap.
            run.created_at = run.updated_at = sim.world.now() - timedelta(minutes=30)
            sim.world.finish(run.id, sim.native_for("failed"))
        sim.world.touch()
    assert exporter.collect_all()[0].ok

    truth = sim.world.truth()
    assert finished(exporter, "cortex-test") == truth.finished
    assert errors(exporter, "cortex-test")[(late.name, "unspecified")] == 4
