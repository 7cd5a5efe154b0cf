"""The scan-cost policy on its own: tables of tracked runs, floors and densities, no network."""

from __future__ import annotations

from datetime import datetime

import pytest

from exporter.core.model import RunStatus
from exporter.core.scancost import deepen_floor, list_density, listing_pays, runs_in_window
from exporter.core.tracking import ActiveRun
from tests.core_runs import T0, at, make_run


def tracked(count: int) -> dict[str, ActiveRun]:
    return {
        f"run-{i}": ActiveRun(f"run-{i}", "Invoices", RunStatus.RUNNING, T0, T0)
        for i in range(count)
    }


@pytest.mark.parametrize(
    ("active", "seen", "in_chunks", "page_size", "pays"),
    [
        pytest.param(0, 0, 0, 100, False, id="nothing tracked"),
        pytest.param(10, 10, 0, 100, False, id="the scan saw them all"),
        pytest.param(10, 9, 0, 100, False, id="one missed: one lookup, no dearer than a page"),
        pytest.param(10, 8, 0, 100, True, id="two missed: a page beats two lookups"),
        pytest.param(10, 5, 5, 100, False, id="runs seen in committed chunks count as seen"),
        pytest.param(250, 247, 0, 100, False, id="three missed, three pages"),
        pytest.param(250, 246, 0, 100, True, id="four missed, three pages"),
        pytest.param(10, 0, 0, 1, False, id="as many pages as runs: lookups cost the same"),
    ],
)
def test_an_active_listing_pays_when_it_saves_lookups(
    active: int, seen: int, in_chunks: int, page_size: int, pays: bool
) -> None:
    runs = tracked(active)
    ids = list(runs)
    seen_ids = set(ids[:seen])
    chunk_ids = set(ids[seen : seen + in_chunks])
    assert listing_pays(runs, seen_ids, chunk_ids, page_size) is pays


FLOOR = at(0)
WINDOW = at(-3600)


@pytest.mark.parametrize(
    ("active_seconds", "density", "page_size", "deepened_to"),
    [
        pytest.param([-10], None, 100, 0, id="no density estimate yet: never deeper"),
        pytest.param([], 1.0, 100, 0, id="nothing tracked"),
        pytest.param([5, 30], 1.0, 100, 0, id="tracked runs above the floor need no deepening"),
        pytest.param([-10], 1.0, 100, -10, id="a tenth of a page saves a lookup"),
        pytest.param([-1000], 1.0, 100, 0, id="ten pages cost more than one lookup"),
        pytest.param([-10, -20, -5000], 1.0, 100, -20, id="down to the deepest run that pays"),
        pytest.param([-4000], 0.001, 100, 0, id="never below the rescan window"),
        pytest.param([-200, -100], 1.0, 100, 0, id="two pages for two runs: break-even stays"),
        pytest.param([-200, -100], 0.5, 100, -200, id="one page for two runs"),
    ],
)
def test_the_floor_deepens_as_far_as_pages_are_cheaper_than_lookups(
    active_seconds: list[float], density: float | None, page_size: int, deepened_to: float
) -> None:
    floor = deepen_floor(
        FLOOR,
        [at(s) for s in active_seconds],
        density=density,
        page_size=page_size,
        window_start=WINDOW,
    )
    assert floor == at(deepened_to)


@pytest.mark.parametrize(
    ("in_window", "newest", "density"),
    [
        pytest.param(10, None, None, id="an empty scan says nothing"),
        pytest.param(10, FLOOR, None, id="no span of list time"),
        pytest.param(0, at(60), None, id="no runs in the window"),
        pytest.param(60, at(60), 1.0, id="one run a second"),
        pytest.param(30, at(120), 0.25, id="one run every four seconds"),
    ],
)
def test_list_density_is_runs_per_second_of_list_time(
    in_window: int, newest: datetime | None, density: float | None
) -> None:
    assert list_density(in_window, FLOOR, newest) == density


@pytest.mark.parametrize(
    ("cursor_seconds", "count"),
    [
        pytest.param([], 0, id="none"),
        pytest.param([-1, 0, 1], 2, id="the floor itself is inside"),
        pytest.param([-60, -1], 0, id="all below"),
    ],
)
def test_runs_in_window_counts_those_at_or_above_the_floor(
    cursor_seconds: list[float], count: int
) -> None:
    seen = {f"run-{i}": make_run(f"run-{i}", cursor=s) for i, s in enumerate(cursor_seconds)}
    assert runs_in_window(seen, FLOOR) == count
