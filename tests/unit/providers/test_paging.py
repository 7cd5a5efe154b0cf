"""Page-number pagination, learned from what the pages say: a pure walk over scripted lists."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from exporter.core.errors import PageRefused, PaginationRunaway
from exporter.providers.pages import Order, Page, reached_floor
from exporter.providers.paging import ListShape, PagedList

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Item:
    id: str
    at: datetime


@dataclass
class FakeList:
    """A page-numbered list answering the ways the docs allow."""

    count: int
    base: int = 1
    order: str = "newest_first"
    cap: int | None = None  # serve at most this many, echo the size asked for
    page_zero: str = "error"  # a 1-based list asked for page 0: error | as_first | empty
    totals: bool = True
    echo: bool = True
    asked: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.items = [Item(f"r{i}", T0 + timedelta(seconds=i)) for i in range(self.count)]

    def add(self, n: int) -> None:
        start = int(self.items[-1].id[1:]) + 1 if self.items else 0
        self.items += [Item(f"r{i}", T0 + timedelta(seconds=i)) for i in range(start, start + n)]

    def listed(self) -> list[Item]:
        return self.items[::-1] if self.order == "newest_first" else list(self.items)

    def fetch(self, number: int, size: int) -> Page[Item]:
        self.asked.append(number)
        served = min(size, self.cap) if self.cap else size
        echoed = number
        if self.base == 1 and number == 0:
            if self.page_zero == "error":
                raise PageRefused("page 0")
            if self.page_zero == "as_first":
                number = echoed = 1
        index = number - self.base
        rows = self.listed()
        chunk = rows[index * served : (index + 1) * served] if index >= 0 else []
        return Page(
            items=chunk,
            received=len(chunk),
            number=echoed if self.echo else None,
            total_items=len(rows) if self.totals else None,
            ids=tuple(item.id for item in chunk),
        )


class Recorder:
    def __init__(self) -> None:
        self.facts: dict[str, str] = {}
        self.inconsistencies: list[str] = []

    def learned(self, fact: str, value: str, detail: str) -> None:
        self.facts[fact] = value

    def inconsistency(self, reason: str, detail: str) -> None:
        self.inconsistencies.append(reason)


def _walker(
    fake: FakeList, shape: ListShape | None = None, page_size: int = 10
) -> tuple[PagedList[Item], Recorder]:
    events = Recorder()
    walker = PagedList(
        fake.fetch,
        shape or ListShape(),
        events,
        key="runs",
        page_size=page_size,
        # Enough pages to reach 5000 items at the smallest size served (4): totals beyond what
        # max_pages can reach are not believed.
        max_pages=2000,
        time_of=lambda item: item.at,
    )
    return walker, events


def _read(walker: PagedList[Item], floor: datetime | None = None) -> set[str]:
    return {item.id for page in walker.pages(floor) for item in page.items}


VARIANTS = [
    dict(zip(("base", "order", "cap", "page_zero", "totals"), combo, strict=True))
    for combo in itertools.product(
        (0, 1),
        ("newest_first", "oldest_first"),
        (None, 4),
        ("error", "as_first", "empty"),
        (True, False),
    )
    if not (combo[0] == 0 and combo[3] != "error")  # page_zero only matters when 1-based
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v.values())))
@pytest.mark.parametrize("count", [0, 1, 9, 10, 11, 37])
def test_a_full_walk_reads_every_item_whatever_the_list_answers(
    variant: dict[str, object], count: int
) -> None:
    fake = FakeList(count, **variant)  # type: ignore[arg-type]
    walker, events = _walker(fake)

    assert _read(walker) == {item.id for item in fake.items}
    assert not events.inconsistencies


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v.values())))
def test_a_walk_to_a_floor_reads_every_item_at_or_above_it_and_learns_the_shape(
    variant: dict[str, object],
) -> None:
    fake = FakeList(95, **variant)  # type: ignore[arg-type]
    walker, events = _walker(fake)
    floor = T0 + timedelta(seconds=60)

    read = _read(walker, floor)

    assert {item.id for item in fake.items if item.at >= floor} <= read
    shape = walker.shape
    assert shape.first_page == fake.base
    assert shape.order is Order(str(fake.order))
    if fake.cap:
        assert shape.page_size == fake.cap
        assert events.facts["page_size"] == str(fake.cap)
    assert not events.inconsistencies


@pytest.mark.parametrize("order", ["newest_first", "oldest_first"])
@pytest.mark.parametrize("cap", [None, 4])
def test_steady_state_reads_pages_in_proportion_to_new_items_not_to_history(
    order: str, cap: int | None
) -> None:
    fake = FakeList(5000, order=order, cap=cap)
    walker, _ = _walker(fake)
    _read(walker, T0 + timedelta(seconds=4990))  # learning
    costs = []
    for _cycle in range(5):
        newest = fake.items[-1].at
        fake.add(15)
        fake.asked.clear()
        read = _read(walker, newest)
        assert {item.id for item in fake.items[-15:]} <= read
        costs.append(len(fake.asked))
    size = cap or 10
    # 15 new items: two pages' worth, plus one page that crosses the floor at most.
    assert max(costs) <= -(-15 // size) + 2, costs


def test_oldest_first_steady_state_costs_the_same_as_newest_first() -> None:
    costs = {}
    for order in ("newest_first", "oldest_first"):
        fake = FakeList(20_000, order=order)
        walker, _ = _walker(fake, page_size=100)
        _read(walker, T0 + timedelta(seconds=19_990))
        total = 0
        for _ in range(10):
            newest = fake.items[-1].at
            fake.add(30)
            fake.asked.clear()
            _read(walker, newest)
            total += len(fake.asked)
        costs[order] = total
    assert costs["oldest_first"] <= costs["newest_first"] * 1.1, costs


def test_an_oldest_first_list_that_shrank_is_read_from_its_new_last_page() -> None:
    fake = FakeList(100, order="oldest_first")
    walker, _ = _walker(fake)
    _read(walker, T0 + timedelta(seconds=95))
    del fake.items[:30]  # the platform's retention removed the oldest
    fake.add(3)
    read = _read(walker, T0 + timedelta(seconds=99))
    assert {"r100", "r101", "r102"} <= read


def test_first_page_is_not_decided_from_one_empty_page() -> None:
    fake = FakeList(0, base=0)
    walker, events = _walker(fake)
    assert _read(walker) == set()
    assert walker.shape.first_page is None
    assert "first_page" not in events.facts
    fake.add(25)
    assert len(_read(walker)) == 25
    assert walker.shape.first_page == 0


def test_a_page_zero_that_repeats_page_one_means_the_list_counts_from_one() -> None:
    fake = FakeList(30, base=1, page_zero="as_first", echo=False)
    walker, events = _walker(fake)
    assert len(_read(walker)) == 30
    assert events.facts["first_page"] == "1"


def test_a_short_page_ends_the_walk_only_when_the_totals_agree() -> None:
    fake = FakeList(40, cap=4)
    walker, _ = _walker(fake)
    assert len(_read(walker)) == 40
    assert walker.shape.page_size == 4


def test_a_list_without_totals_that_caps_its_pages_is_read_to_the_end() -> None:
    fake = FakeList(40, cap=4, totals=False)
    walker, events = _walker(fake)
    assert len(_read(walker)) == 40
    assert events.facts["page_size"] == "4"


def test_later_walks_ask_for_the_size_the_api_serves() -> None:
    sizes: list[int] = []
    fake = FakeList(40, cap=4)

    def fetch(number: int, size: int) -> Page[Item]:
        sizes.append(size)
        return fake.fetch(number, size)

    walker = PagedList(fetch, ListShape(), Recorder(), key="k", page_size=10, max_pages=100)
    list(walker.pages(None))
    sizes.clear()
    list(walker.pages(None))
    assert set(sizes) == {4}


def test_fewer_items_than_the_api_reports_is_an_inconsistency() -> None:
    fake = FakeList(30)

    def lying(number: int, size: int) -> Page[Item]:
        page = fake.fetch(number, size)
        return Page(page.items, page.received, page.number, 45, ids=page.ids)

    walker = PagedList(lying, ListShape(), Recorder(), key="k", page_size=10, max_pages=100)
    assert len({i.id for p in walker.pages(None) for i in p.items}) == 30
    assert walker.events.inconsistencies == ["fewer_than_total"]  # type: ignore[attr-defined]


def test_a_page_repeated_by_the_api_ends_the_walk_loudly() -> None:
    fake = FakeList(30, totals=False, echo=False)

    def clamped(number: int, size: int) -> Page[Item]:
        return fake.fetch(min(number, 3), size)  # past the end: the last page again

    events = Recorder()
    walker = PagedList(clamped, ListShape(), events, key="k", page_size=10, max_pages=100)
    assert len({i.id for p in walker.pages(None) for i in p.items}) == 30
    assert events.inconsistencies == ["page_repeated"]


def test_a_fixed_order_the_timestamps_contradict_is_reported() -> None:
    fake = FakeList(30, order="oldest_first")
    events = Recorder()
    shape = ListShape(order=Order.NEWEST_FIRST, order_fixed=True, first_page=1)
    walker = PagedList(
        fake.fetch, shape, events, key="k", page_size=10, max_pages=100, time_of=lambda i: i.at
    )
    list(walker.pages(None))
    assert events.inconsistencies == ["order_contradicts_setting"]
    assert shape.order is Order.NEWEST_FIRST


def test_until_the_order_is_known_a_walk_does_not_stop_at_its_floor() -> None:
    fake = FakeList(30, order="oldest_first")
    walker, _ = _walker(fake)
    # The first page lies wholly below the floor; newer items follow on later pages.
    assert {"r29"} <= _read(walker, T0 + timedelta(seconds=29))


def test_an_unordered_list_is_read_whole_and_said_so() -> None:
    fake = FakeList(40)
    random.Random(1).shuffle(fake.items)
    walker, events = _walker(fake)
    assert len(_read(walker, T0 + timedelta(seconds=39))) == 40
    assert events.facts["list_order"] == "unordered"


def test_walk_raises_runaway_after_max_pages() -> None:
    fake = FakeList(100, base=1)
    walker = PagedList(
        fake.fetch, ListShape(first_page=1), Recorder(), key="k", page_size=5, max_pages=3
    )
    with pytest.raises(PaginationRunaway, match=r"after 3 pages \(max_pages\)"):
        list(walker.pages(None))


def test_a_page_of_invalid_records_is_not_the_end() -> None:
    fake = FakeList(30)

    def broken_first(number: int, size: int) -> Page[Item]:
        page = fake.fetch(number, size)
        if number == 1:
            return Page([], page.received, page.number, page.total_items)
        return page

    walker = PagedList(
        broken_first, ListShape(first_page=1), Recorder(), key="k", page_size=10, max_pages=100
    )
    assert len({i.id for p in walker.pages(None) for i in p.items}) == 20


# reached_floor ---------------------------------------------------------------------------


def _times(*seconds: float) -> list[datetime]:
    return [T0 + timedelta(seconds=s) for s in seconds]


def test_an_ordered_page_reaching_below_the_floor_is_the_last_one() -> None:
    assert reached_floor(_times(-1, -5, -60), T0)
    assert reached_floor(_times(10, 5, -60), T0)
    assert not reached_floor(_times(10, 5, 0), T0)


def test_a_page_out_of_order_walks_on_until_a_whole_page_lies_below_the_floor() -> None:
    assert not reached_floor(_times(-1, 3, -60), T0)
    assert reached_floor(_times(-5, -1, -60), T0)


def test_empty_page_does_not_count_as_below_the_floor() -> None:
    assert not reached_floor([], T0)


def test_a_cap_first_seen_while_reading_backwards_is_learned_and_nothing_skipped() -> None:
    fake = FakeList(3, order="oldest_first", cap=4)
    walker, events = _walker(fake)
    _read(walker, T0)  # too few items to show the cap
    assert walker.shape.order is Order.OLDEST_FIRST
    fake.add(20)
    assert {f"r{i}" for i in range(3, 23)} <= _read(walker, T0 + timedelta(seconds=2))
    assert events.facts["page_size"] == "4"
