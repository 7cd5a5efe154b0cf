"""Page-number pagination as a pure function of what each page says."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from exporter.providers.paging import (
    Page,
    PaginationRunaway,
    is_last_page,
    reached_floor,
    walk_pages,
)

FLOOR = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _scripted(pages: Sequence[Page[int]]) -> tuple[Callable[[int], Page[int]], list[int]]:
    """A fetch function answering the given pages in order; records the page numbers asked."""
    asked: list[int] = []

    def fetch(number: int) -> Page[int]:
        asked.append(number)
        return pages[len(asked) - 1]

    return fetch, asked


def _full(
    count: int, start: int = 0, *, size: int | None = None, total_pages: int | None = None
) -> Page[int]:
    """`count` consecutive items from `start`, with what the API reports about the page."""
    return Page(items=list(range(start, start + count)), size=size, total_pages=total_pages)


# is_last_page ----------------------------------------------------------------------------


def test_empty_page_is_last() -> None:
    assert is_last_page(Page(items=[]), pages_read=1, requested_size=10)
    assert is_last_page(Page(items=[], size=10, total_pages=50), pages_read=1, requested_size=10)


def test_short_page_against_the_requested_size_is_last() -> None:
    assert is_last_page(Page(items=[1, 2, 3]), pages_read=1, requested_size=10)


def test_full_page_without_totals_is_not_last() -> None:
    assert not is_last_page(Page(items=list(range(10))), pages_read=1, requested_size=10)


def test_short_page_is_judged_against_the_size_the_api_reports() -> None:
    # The API silently capped the page at 50 of the 100 asked for: 50 items is a full page.
    capped = Page(items=list(range(50)), size=50)
    assert not is_last_page(capped, pages_read=1, requested_size=100)
    assert is_last_page(Page(items=list(range(49)), size=50), pages_read=1, requested_size=100)


def test_reported_size_of_zero_falls_back_to_the_requested_size() -> None:
    assert is_last_page(Page(items=[1, 2], size=0), pages_read=1, requested_size=10)
    assert not is_last_page(Page(items=list(range(10)), size=0), pages_read=1, requested_size=10)


def test_reaching_total_pages_is_last_even_when_the_page_is_full() -> None:
    page = Page(items=list(range(10)), size=10, total_pages=3)
    assert not is_last_page(page, pages_read=2, requested_size=10)
    assert is_last_page(page, pages_read=3, requested_size=10)
    assert is_last_page(page, pages_read=4, requested_size=10)


# walk_pages ------------------------------------------------------------------------------


def test_walk_stops_on_an_empty_page() -> None:
    fetch, asked = _scripted([_full(5), _full(5, 5), Page(items=[])])
    pages = list(walk_pages(fetch, first_page=1, page_size=5, max_pages=100))
    assert asked == [1, 2, 3]
    assert [list(p.items) for p in pages] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], []]


def test_walk_stops_on_a_short_page() -> None:
    fetch, asked = _scripted([_full(5), _full(2, 5)])
    pages = list(walk_pages(fetch, first_page=0, page_size=5, max_pages=100))
    assert asked == [0, 1]
    assert len(pages) == 2


def test_walk_continues_through_pages_the_api_capped() -> None:
    fetch, asked = _scripted([_full(3, 0, size=3), _full(3, 3, size=3), _full(1, 6, size=3)])
    list(walk_pages(fetch, first_page=1, page_size=100, max_pages=100))
    assert asked == [1, 2, 3]


def test_walk_stops_when_total_pages_is_reached() -> None:
    fetch, asked = _scripted([_full(5, 0, total_pages=2), _full(5, 5, total_pages=2)])
    list(walk_pages(fetch, first_page=1, page_size=5, max_pages=100))
    assert asked == [1, 2]


def test_walk_counts_total_pages_from_the_first_page_whatever_its_number() -> None:
    fetch, asked = _scripted([_full(5, 0, total_pages=2), _full(5, 5, total_pages=2)])
    list(walk_pages(fetch, first_page=0, page_size=5, max_pages=100))
    assert asked == [0, 1]


def test_walk_stops_when_keep_going_says_so() -> None:
    fetch, asked = _scripted([_full(5), _full(5, 5), _full(5, 10)])
    pages = list(
        walk_pages(
            fetch,
            first_page=1,
            page_size=5,
            max_pages=100,
            keep_going=lambda page: max(page.items) < 5,
        )
    )
    assert asked == [1, 2]
    assert len(pages) == 2


def test_walk_is_lazy() -> None:
    fetch, asked = _scripted([_full(5), _full(5, 5)])
    walk = walk_pages(fetch, first_page=1, page_size=5, max_pages=100)
    assert asked == []
    next(walk)
    assert asked == [1]


def test_walk_raises_runaway_after_max_pages() -> None:
    fetch, asked = _scripted([_full(5, 5 * n) for n in range(10)])
    pages: list[Page[int]] = []
    with pytest.raises(PaginationRunaway, match=r"after 3 pages \(max_pages\)"):
        pages.extend(walk_pages(fetch, first_page=1, page_size=5, max_pages=3))
    assert asked == [1, 2, 3]
    assert len(pages) == 3


def test_walk_ending_exactly_at_max_pages_is_no_runaway() -> None:
    fetch, asked = _scripted([_full(5), _full(5, 5), _full(1, 10)])
    pages = list(walk_pages(fetch, first_page=1, page_size=5, max_pages=3))
    assert len(pages) == 3
    assert asked == [1, 2, 3]


# reached_floor ---------------------------------------------------------------------------


def _times(*seconds: float) -> list[datetime]:
    return [FLOOR + timedelta(seconds=s) for s in seconds]


def test_an_ordered_page_reaching_below_the_floor_is_the_last_one() -> None:
    assert reached_floor(_times(-1, -5, -60), FLOOR)
    # In order, and its oldest item is below the floor: every later page is older still.
    assert reached_floor(_times(10, 5, -60), FLOOR)
    assert not reached_floor(_times(10, 5, 0), FLOOR)


def test_a_page_out_of_order_walks_on_until_a_whole_page_lies_below_the_floor() -> None:
    # The last item is below the floor, but the page is not sorted: the list may hide newer
    # items further on.
    assert not reached_floor(_times(-1, 3, -60), FLOOR)
    assert reached_floor(_times(-5, -1, -60), FLOOR)


def test_item_exactly_at_the_floor_keeps_the_walk_going() -> None:
    # Later pages may hold more items at the very same time.
    assert not reached_floor(_times(10, 0), FLOOR)


def test_empty_page_does_not_count_as_below_the_floor() -> None:
    assert not reached_floor([], FLOOR)


# Pages with records the provider could not parse -----------------------------------------


def test_page_with_skipped_invalid_records_is_judged_by_what_was_received() -> None:
    # Ten items on the wire, one invalid and skipped: still a full page.
    assert not is_last_page(Page(items=list(range(9)), received=10), 1, requested_size=10)
    assert is_last_page(Page(items=list(range(8)), received=9), 1, requested_size=10)


def test_page_whose_every_record_was_invalid_is_not_the_end() -> None:
    assert not is_last_page(Page(items=[], received=10), 1, requested_size=10)
    assert is_last_page(Page(items=[], received=0), 1, requested_size=10)


def test_walk_continues_past_a_page_of_invalid_records() -> None:
    fetch, asked = _scripted([Page(items=[], received=5), _full(2, 5)])
    list(walk_pages(fetch, first_page=1, page_size=5, max_pages=100))
    assert asked == [1, 2]
