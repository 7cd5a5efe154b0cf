"""What a page-numbered list's pages say, and what one walk through such a list has seen of it:
its items' order, ids and reported totals (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from itertools import pairwise
from typing import Generic, TypeVar

T = TypeVar("T")


class Order(StrEnum):
    NEWEST_FIRST = "newest_first"
    OLDEST_FIRST = "oldest_first"
    UNORDERED = "unordered"


# Ascending and descending neighbours both seen: the list counts as sorted only when one
# direction holds at least this share of the unequal pairs of a walk of at least MIN_PAIRS pairs
# (ties broken arbitrarily, a sort key that is not quite the timestamp).
ORDER_MAJORITY = 0.9
MIN_PAIRS_FOR_MAJORITY = 10


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    # Items on the wire, valid or not: a page with a skipped invalid record is not a short page.
    received: int
    # What the API says, where it says it.
    number: int | None = None
    total_items: int | None = None
    total_pages: int | None = None
    # Ids of the valid items, for telling pages apart (repeats, aliases, totals).
    ids: tuple[str, ...] = ()
    # A cursor-paged list's token for the next page (None: the last page).
    cursor: str | None = None


@dataclass(slots=True)
class Walk:
    """What one walk has seen so far."""

    ids: set[str] = field(default_factory=set)
    invalid: int = 0
    pages: int = 0
    received: int = 0  # items on the pages read forward from the first
    ascending: int = 0
    descending: int = 0
    first_items: int | None = None  # the API's item count, on the first and the latest page
    last_items: int | None = None
    repeated: bool = False
    # The walk's totals failed their check (see the module docstring): it goes by items.
    distrusted: bool = False
    # The fewest items a page read forward held (None: no page yet); with a page's position it
    # bounds how many items the list holds from below.
    smallest_read: int | None = None
    short_before: int = 0  # a short page without totals, until the next page shows what it was
    contradiction_reported: bool = False
    _last_ids: tuple[str, ...] = ()
    _last_time: datetime | None = None

    def add(self, page: Page[T], times: Sequence[datetime], *, continues: bool = True) -> None:
        """`continues`: the page follows the one before it in list order (a forward read)."""
        self.pages += 1
        self.repeated = bool(page.ids) and page.ids == self._last_ids
        self._last_ids = page.ids
        self.ids.update(page.ids)
        self.invalid += max(0, page.received - len(page.items))
        if continues:
            self.received += page.received
            if self.smallest_read is None or page.received < self.smallest_read:
                self.smallest_read = page.received
        if page.total_items is not None:
            if self.first_items is None:
                self.first_items = page.total_items
            self.last_items = page.total_items
        before = [self._last_time] if continues and self._last_time is not None else []
        for a, b in pairwise([*before, *times]):
            if a > b:
                self.descending += 1
            elif a < b:
                self.ascending += 1
        if times:
            self._last_time = times[-1]

    @property
    def smallest_page(self) -> int:
        return self.smallest_read or 0

    def believed(self, page: Page[T]) -> int | None:
        """The page's total, where the walk believes totals."""
        return None if self.distrusted else page_total(page)

    @property
    def unequal_pairs(self) -> int:
        return self.ascending + self.descending

    def order(self) -> Order | None:
        up, down = self.ascending, self.descending
        if not up and not down:
            return None
        if not up:
            return Order.NEWEST_FIRST
        if not down:
            return Order.OLDEST_FIRST
        if up + down < MIN_PAIRS_FOR_MAJORITY:
            return None
        if down >= ORDER_MAJORITY * (up + down):
            return Order.NEWEST_FIRST
        if up >= ORDER_MAJORITY * (up + down):
            return Order.OLDEST_FIRST
        return Order.UNORDERED


def same_items(a: Page[T], b: Page[T]) -> bool:
    return bool(a.ids) and bool(b.ids) and a.ids[0] == b.ids[0]


def reached_floor(cursor_times: Sequence[datetime], floor: datetime) -> bool:
    """A newest-first walk can stop once a page reaches below the floor.

    A page that is itself in order vouches for the list's order: once its oldest item lies below
    the floor, every later item does too, so the page that crosses the floor is the last one read.
    A page out of order shows the list is not strictly sorted (ties broken arbitrarily, a sort key
    that is not quite `cursor_time`): then the walk goes on until a whole page lies below the
    floor. Disorder across a page boundary is what the overlap below the watermark absorbs.
    """
    if not cursor_times:
        return False
    in_order = all(a >= b for a, b in pairwise(cursor_times))
    return (cursor_times[-1] if in_order else max(cursor_times)) < floor


def page_total(page: Page[T]) -> int | None:
    """The count a walk goes by: items where reported, else pages."""
    return page.total_items if page.total_items is not None else page.total_pages
