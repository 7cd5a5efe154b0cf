"""A cursor that goes round: the walk ends within a handful of requests, keeps what it read and
says why (pure trail, then Extend's scan against its simulator)."""

from __future__ import annotations

from exporter.providers.cursors import CursorTrail
from exporter.providers.pages import Page
from exporter.simulator import SIMULATORS
from tests.conftest import ExporterFactory, SimFactory, source_for
from tests.series import active, by_labels, finished


def _page(ids: str, cursor: str | None) -> Page[str]:
    items = list(ids)
    return Page(items, len(items), ids=tuple(items), cursor=cursor)


def test_a_token_already_followed_ends_the_walk() -> None:
    trail = CursorTrail()
    assert trail.stop_reason(_page("ab", "A")) is None
    assert trail.stop_reason(_page("cd", "B")) is None
    reason = trail.stop_reason(_page("ef", "A"))
    assert reason is not None
    assert reason[0] == "cursor_cycle"
    assert "page 2" in reason[1]


def test_a_cursor_that_stands_still_ends_the_walk_at_its_second_page() -> None:
    trail = CursorTrail()
    assert trail.stop_reason(_page("ab", "A")) is None
    reason = trail.stop_reason(_page("cd", "A"))
    assert reason is not None
    assert reason[0] == "cursor_cycle"


def test_a_page_repeating_the_ids_of_the_one_before_ends_the_walk() -> None:
    trail = CursorTrail()
    assert trail.stop_reason(_page("ab", "A")) is None
    reason = trail.stop_reason(_page("ab", "B"))
    assert reason is not None
    assert reason[0] == "page_repeated"


def test_new_tokens_and_new_pages_walk_on_and_a_last_page_ends_nothing() -> None:
    trail = CursorTrail()
    for n in range(50):
        assert trail.stop_reason(_page(f"{n}", f"T{n}")) is None
    assert trail.stop_reason(_page("", None)) is None  # empty pages repeat nothing
    assert trail.stop_reason(_page("", None)) is None


def test_extend_scan_over_a_cycling_cursor_ends_within_a_handful_of_requests_and_counts_all(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator(
        "extend",
        seed=64,
        arrival_rate_per_min=0,
        variant=SIMULATORS["extend"].variants["cursor_cycle"],
    )
    sim.world.add_runs(47)
    sim.world.advance(600)
    exporter = exporter_factory([source_for(sim, "extend", page_size=10)], clock=sim.world.now)

    sim.clear_requests()
    assert exporter.collect_all()[0].ok

    listed = [r for r in sim.requests if sim.is_list(r)]
    # Five pages hold the 47 runs; the fifth leads back to the first page's token: no sixth.
    assert len(listed) == 5, len(listed)
    truth = sim.world.truth()
    assert finished(exporter, "extend-test") == truth.finished
    assert active(exporter, "extend-test") == truth.active
    inconsistent = by_labels(
        exporter, "workflow_exporter_scan_inconsistencies_total", "extend-test", "reason"
    )
    assert inconsistent == {("cursor_cycle",): 1}
