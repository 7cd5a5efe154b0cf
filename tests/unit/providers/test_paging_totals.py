"""Totals the docs never promise: believed only when the items bear them out (a pure walk over
scripted lists whose totals undercount, go negative or overcount absurdly)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest

from exporter.providers.pages import Order, Page
from exporter.providers.pagetotals import totals_problem
from exporter.providers.paging import ListShape, PagedList
from tests.unit.providers.test_paging import T0, FakeList, Item, Recorder

# What each lie reports as the total, and the reason it must be said with.
LIES: dict[str, tuple[Callable[[int], int], str]] = {
    "low": (lambda real: 0, "total_below_items"),
    "negative": (lambda real: -1, "total_negative"),
    "absurd": (lambda real: 10**18, "total_unreachable"),
}
MAX_PAGES = 50


@dataclass
class LyingList(FakeList):
    """A FakeList whose every page reports the same wrong total (items and pages alike)."""

    lie: str = "low"
    lying: bool = True

    def fetch(self, number: int, size: int) -> Page[Item]:
        page = super().fetch(number, size)
        if not self.lying:
            return page
        told = LIES[self.lie][0](len(self.items))
        return Page(page.items, page.received, page.number, told, told, ids=page.ids)


def _walker(fake: FakeList, shape: ListShape | None = None) -> tuple[PagedList[Item], Recorder]:
    events = Recorder()
    walker = PagedList(
        fake.fetch,
        shape or ListShape(),
        events,
        key="runs",
        page_size=10,
        max_pages=MAX_PAGES,
        time_of=lambda item: item.at,
    )
    return walker, events


def _read(walker: PagedList[Item], floor_seconds: float | None = None) -> set[str]:
    floor = None if floor_seconds is None else T0 + timedelta(seconds=floor_seconds)
    return {item.id for page in walker.pages(floor) for item in page.items}


SHAPES = [
    {"base": base, "order": order, "page_zero": zero}
    for base in (0, 1)
    for order in ("newest_first", "oldest_first")
    for zero in (("error",) if base == 0 else ("error", "as_first", "empty"))
]


@pytest.mark.parametrize("lie", sorted(LIES))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda v: "-".join(map(str, v.values())))
@pytest.mark.parametrize("count", [1, 9, 10, 11, 37])
def test_a_full_walk_under_lying_totals_reads_every_item_and_names_the_lie(
    lie: str, shape: dict[str, object], count: int
) -> None:
    fake = LyingList(count, lie=lie, **shape)  # type: ignore[arg-type]
    walker, events = _walker(fake)

    assert _read(walker) == {item.id for item in fake.items}
    # Said once per walk, with its reason, and nothing else.
    assert events.inconsistencies == [LIES[lie][1]]
    assert "runs" not in walker.shape.totals  # a lie is no shortcut for the next walk


@pytest.mark.parametrize("lie", sorted(LIES))
@pytest.mark.parametrize("order", ["newest_first", "oldest_first"])
def test_a_walk_to_a_floor_under_lying_totals_misses_nothing_and_stays_within_reach(
    lie: str, order: str
) -> None:
    fake = LyingList(95, lie=lie, order=order)
    walker, events = _walker(fake)
    for cycle in range(4):
        newest = fake.items[-1].at
        fake.add(7)
        fake.asked.clear()
        read = _read(walker, (newest - T0).total_seconds())
        assert {item.id for item in fake.items[-7:]} <= read, cycle
        # No page number computed from the lie: at most the empty page after the last one (the
        # list counts from 1).
        assert max(fake.asked) <= len(fake.items) // 10 + 2, fake.asked
        assert len(fake.asked) <= len(fake.items) // 10 + 3, fake.asked
    assert set(events.inconsistencies) == {LIES[lie][1]}
    assert walker.shape.order is Order(order)


def test_an_oldest_first_list_whose_totals_turn_absurd_is_read_forward_from_its_first_page() -> (
    None
):
    fake = LyingList(95, lie="absurd", order="oldest_first", lying=False)
    walker, events = _walker(fake)
    _read(walker, 90)  # learning, with true totals: the shortcut is remembered
    assert walker.shape.totals["runs"] == 95
    fake.lying = True
    fake.add(12)
    fake.asked.clear()

    read = _read(walker, 94)

    assert {f"r{i}" for i in range(95, 107)} <= read
    assert events.inconsistencies == ["total_unreachable"]
    # From page 1 forward to the empty page after the last (107 items: pages 1 to 11).
    assert fake.asked[-12:] == list(range(1, 13)), fake.asked
    assert max(fake.asked) == 12


def test_true_totals_raise_nothing_and_keep_the_backwards_shortcut() -> None:
    fake = LyingList(95, order="oldest_first", lying=False)
    walker, events = _walker(fake)
    _read(walker, 90)
    fake.add(3)
    fake.asked.clear()
    assert {"r95", "r96", "r97"} <= _read(walker, 94)
    assert len(fake.asked) <= 2
    assert not events.inconsistencies


def test_an_empty_page_zero_reporting_no_items_proves_nothing_about_the_first_page() -> None:
    fake = LyingList(25, base=1, page_zero="empty", lie="low")
    walker, events = _walker(fake)
    assert len(_read(walker)) == 25
    assert walker.shape.first_page == 1
    assert events.inconsistencies == ["total_below_items"]


def _page(received: int, total: int | None, pages: int | None = None) -> Page[str]:
    items = [f"i{n}" for n in range(received)]
    return Page(items, received, total_items=total, total_pages=pages, ids=tuple(items))


@pytest.mark.parametrize(
    ("page", "index", "smallest", "reason"),
    [
        (_page(10, 30), 0, 0, None),
        (_page(10, 30), 2, 10, None),  # exactly the items three full pages hold
        (_page(10, 29), 2, 10, "total_below_items"),
        (_page(4, 29), 2, 4, None),  # a capped list: earlier pages held 4 each
        (_page(0, 0), 3, 10, None),  # an empty page proves no item
        (_page(10, -1), 0, 0, "total_negative"),
        (_page(10, None, -1), 0, 0, "total_negative"),
        (_page(10, None, 2), 2, 10, "total_below_items"),
        (_page(10, 10 * MAX_PAGES), 0, 0, None),
        (_page(10, 10 * MAX_PAGES + 1), 0, 0, "total_unreachable"),
        (_page(10, None, MAX_PAGES + 1), 0, 0, "total_unreachable"),
        (_page(10, 10**400), 0, 0, "total_unreachable"),
    ],
)
def test_totals_are_checked_against_what_the_page_proves(
    page: Page[str], index: int, smallest: int, reason: str | None
) -> None:
    problem = totals_problem(
        page, index=index, smallest_before=smallest, size=10, max_pages=MAX_PAGES
    )
    assert (problem[0] if problem else None) == reason
    if problem:
        assert str(index) in problem[1]
