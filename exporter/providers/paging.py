"""Page-number pagination, learned from what the pages say (pure: tested without a network).

The docs of the page-numbered APIs leave open whether pages count from 0 or 1, whether the list is
newest- or oldest-first, and whether the page size asked for is the one served. A `PagedList`
learns each from the answers, remembers it in the source's `ListShape`, and says what it learned
(`ShapeEvents.learned`) or what does not add up (`ShapeEvents.inconsistency`):

- first page: page 0 is asked once; a refusal, an echoed page number of 1, an empty page 0 with
  items in the totals, or a page 0 that repeats page 1 show a list counting from 1. A page 0 that
  differs from page 1 shows one counting from 0. One empty page alone decides nothing.
- page size: a page that is not the last one by the totals holds exactly one page's worth of
  items, whatever size the API echoes; later requests ask for that size, so a silent cap never
  skips items.
- order: adjacent items' timestamps; until they show an order, a walk does not stop at its floor.
  An oldest-first list with totals is read from its last page backwards, so a cycle costs pages in
  proportion to new runs, not to history (`exporter.providers.backwalk`).
- totals: a walk that reads a list to its end compares the distinct items it saw with the count
  the API reports; fewer is an inconsistency.

Totals are believed only once they are checked against the items: see `pagetotals`.

Over 300 lines with no named split: learning the list's shape (first page, size, order) and
walking it read the same pages in the same loop; the totals checks already live in `pagetotals`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Protocol

from exporter.core.errors import PageRefused, PaginationRunaway
from exporter.providers.backwalk import walk_backwards
from exporter.providers.pages import (
    Order,
    Page,
    T,
    Walk,
    page_total,
    reached_floor,
    same_items,
)
from exporter.providers.pagetotals import (
    fullest_last_page,
    more_by_totals,
    totals_problem,
)

# The providers import the page and the floor test from here, with the list that walks them.
__all__ = [
    "Fetch",
    "ListShape",
    "Order",
    "Page",
    "PagedList",
    "ShapeEvents",
    "T",
    "fullest_last_page",
    "reached_floor",
    "totals_problem",
]


@dataclass(slots=True)
class ListShape:
    """What one source's page-numbered lists turned out to be; a setting fixes a fact instead.

    Shared by every list of the source (they are one API), except the per-list totals.
    """

    order: Order | None = None
    first_page: int | None = None
    page_size: int | None = None  # items the API serves per page, once known
    order_fixed: bool = False
    totals: dict[str, int] = field(default_factory=dict)  # list key -> items last reported
    growth: dict[str, int] = field(default_factory=dict)  # list key -> items added last cycle


class ShapeEvents(Protocol):
    def learned(self, fact: str, value: str, detail: str) -> None: ...
    def inconsistency(self, reason: str, detail: str) -> None: ...


Fetch = Callable[[int, int], Page[T]]  # (page number, page size) -> page


class PagedList(Generic[T]):
    """One page-numbered list of one source; `pages(floor)` is one walk through it."""

    def __init__(
        self,
        fetch: Fetch[T],
        shape: ListShape,
        events: ShapeEvents,
        *,
        key: str,
        page_size: int,
        max_pages: int,
        time_of: Callable[[T], datetime] | None = None,
    ) -> None:
        self._fetch_page = fetch
        self.shape = shape
        self.events = events
        self.key = key
        self.requested_size = page_size
        self.max_pages = max_pages
        self.time_of = time_of
        self._reads = 0

    @property
    def size(self) -> int:
        return self.shape.page_size or self.requested_size

    def pages(self, floor: datetime | None) -> Iterator[Page[T]]:
        """Pages from newest to oldest items down to `floor` (None: the whole list).

        May yield items older than the floor from the last page read, and the same item twice
        when the list shifts while it is read; the caller dedupes by id.
        """
        self._reads = 0
        walk = Walk()
        read: dict[int, Page[T]] = {}
        first = self._first_page(read)
        if first is None:  # an empty list teaches nothing
            for page in read.values():
                walk.add(page, self.times(page))
                yield page
            return
        known_total = self.shape.totals.get(self.key)
        if (
            floor is not None
            and not read
            and self.shape.order is Order.OLDEST_FIRST
            and known_total is not None
        ):
            # Steady state of an oldest-first list: straight to where the new items are.
            expected = known_total + self.shape.growth.get(self.key, 0)
            size = fullest_last_page(expected, self.size)
            if (yield from walk_backwards(self, first, first - 1, expected, floor, walk, size)):
                self.shape.growth[self.key] = max(0, self.shape.totals[self.key] - known_total)
                return
            # The totals failed their check on the way: read forward from the first page.
            walk = Walk(distrusted=True)
        yield from self._forward(first, read, floor, walk)

    def _forward(
        self, first: int, read: dict[int, Page[T]], floor: datetime | None, walk: Walk
    ) -> Iterator[Page[T]]:
        number = first
        while True:
            page = read.pop(number) if number in read else self.fetch(number)
            index = number - first
            self.check_page_totals(page, index, walk.smallest_page, walk)
            walk.add(page, self.times(page))
            self._learn_order(walk)
            yield page
            if walk.short_before and page.received:
                # A short page without totals was followed by more: it was a capped one.
                self.learn_page_size(walk.short_before, index - 1, more=True)
            walk.short_before = 0
            if self._ends_here(page, index, walk):
                self._check_totals(walk)
                return
            self.learn_page_size(page.received, index, more=walk.believed(page) is not None)
            newest_first = self.shape.order is Order.NEWEST_FIRST
            if floor is not None and newest_first and reached_floor(self.times(page), floor):
                return
            if floor is not None and self.shape.order is Order.OLDEST_FIRST:
                total = page.total_items if not walk.distrusted else None
                if total is not None and (
                    yield from walk_backwards(self, first, number, total, floor, walk, self.size)
                ):
                    return
                # No totals, or they failed on the way back: on forward, by items alone.
            number += 1

    # Learning the first page ------------------------------------------------------------------

    def _first_page(self, read: dict[int, Page[T]]) -> int | None:
        shape = self.shape
        if shape.first_page is not None:
            return shape.first_page
        try:
            zero = self.fetch(0)
        except PageRefused:
            return self._decide_first_page(1, "page 0 was refused")
        if zero.number == 1:
            read[1] = zero
            return self._decide_first_page(1, "page 0 was answered as page 1")
        if zero.received == 0:
            total = page_total(zero)
            if total is not None and total > 0 and self._reachable(zero):
                return self._decide_first_page(1, f"page 0 was empty of {total} items")
            # An empty page 0 with no total, or one that proves nothing (0, negative or absurd:
            # see the module docstring): page 1 tells.
            one = self.fetch(1)
            if one.received == 0:
                read[0] = zero
                return None
            read[1] = one
            return self._decide_first_page(1, "page 0 was empty, page 1 was not")
        one = self.fetch(1)
        if same_items(zero, one):
            read[1] = one
            return self._decide_first_page(1, "page 0 repeats page 1")
        if not zero.ids and not one.ids:
            # Nothing valid to compare (every record invalid): read as 1, decide another time.
            read[1] = one
            return 1
        read[0], read[1] = zero, one
        return self._decide_first_page(0, "page 0 and page 1 hold different items")

    def _decide_first_page(self, first: int, why: str) -> int:
        self.shape.first_page = first
        self.events.learned("first_page", str(first), why)
        return first

    # Learning the page size and the order -----------------------------------------------------

    def learn_page_size(self, received: int, index: int, *, more: bool) -> None:
        """A page that is not the last holds one page's worth of items, whatever the API echoes."""
        if not more or received in (0, self.size):
            return
        self.shape.page_size = received
        self.events.learned(
            "page_size",
            str(received),
            f"asked for {self.requested_size} per page, page {index} held {received} "
            "with more to come",
        )

    def _learn_order(self, walk: Walk) -> None:
        order = walk.order()
        shape = self.shape
        if order is None or order is shape.order:
            return
        if shape.order_fixed:
            if not walk.contradiction_reported:
                walk.contradiction_reported = True
                self.events.inconsistency(
                    "order_contradicts_setting",
                    f"list_order is {shape.order} but the timestamps read {order}",
                )
            return
        shape.order = order
        self.events.learned("list_order", order.value, f"from {walk.unequal_pairs} timestamps")

    # Where a walk ends --------------------------------------------------------------------------

    def _ends_here(self, page: Page[T], index: int, walk: Walk) -> bool:
        if page.received == 0:
            return True
        if walk.repeated:
            self.events.inconsistency(
                "page_repeated", f"page {index} repeats the page before it: the list ends there"
            )
            return True
        if walk.believed(page) is not None:
            # The totals decide; a short page is the last one only when they agree.
            return not more_by_totals(page, walk)
        if page.received < self.size:
            # No totals and a short page: the last one, or a silent cap. The next page tells.
            walk.short_before = page.received
        return False

    def _check_totals(self, walk: Walk) -> None:
        if walk.distrusted:
            # Said already; and a total that failed is no shortcut for the next walk.
            self.shape.totals.pop(self.key, None)
            return
        reported = [t for t in (walk.first_items, walk.last_items) if t is not None]
        if not reported:
            return
        self.shape.totals[self.key] = reported[-1]
        seen = len(walk.ids) + walk.invalid
        if seen < min(reported):
            self.events.inconsistency(
                "fewer_than_total",
                f"read {seen} distinct items to the end of the list ({walk.pages} pages), "
                f"the API reports {min(reported)}",
            )

    # Checking totals ----------------------------------------------------------------------------

    def check_page_totals(self, page: Page[T], index: int, smallest: int, walk: Walk) -> bool:
        """Whether the walk stops believing totals at this page; the first failure of a walk is
        reported. `smallest`: the fewest items each page before this one holds (read backwards,
        with a cap perhaps not learned yet: no more than this page holds)."""
        if walk.distrusted:
            return False
        problem = totals_problem(
            page, index=index, smallest_before=smallest, size=self.size, max_pages=self.max_pages
        )
        if problem is None:
            return False
        reason, detail = problem
        walk.distrusted = True
        how = (
            "read forward from its first page instead of backwards"
            if self.shape.order is Order.OLDEST_FIRST
            else "read until an empty page"
        )
        self.events.inconsistency(
            reason, f"list {self.key!r}: {detail}; totals ignored for this walk, the list is {how}"
        )
        return True

    def _reachable(self, page: Page[T]) -> bool:
        """Whether an empty page's totals pass their checks (nothing to compare them with but
        their sign and their reach)."""
        problem = totals_problem(
            page, index=0, smallest_before=0, size=self.size, max_pages=self.max_pages
        )
        return problem is None

    # Fetching -----------------------------------------------------------------------------------

    def fetch(self, number: int, size: int | None = None) -> Page[T]:
        """One page read by this walk (the backward walk reads through here too), counted
        against `max_pages`."""
        if self._reads >= self.max_pages:
            raise PaginationRunaway(self.max_pages)
        self._reads += 1
        return self._fetch_page(number, size or self.size)

    def times(self, page: Page[T]) -> list[datetime]:
        """The timestamps a walk orders the page's items by (none without `time_of`)."""
        if self.time_of is None:
            return []
        return [self.time_of(item) for item in page.items]
