"""Page-number pagination, as a pure function of what each page says (tested without a network).

APIs disagree on whether they report totals, cap the page size silently, or answer a page past the
end with an empty list; the walk stops on whichever signal comes first, so it needs none of them
in particular.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    # What the API says, where it says it.
    size: int | None = None
    total_pages: int | None = None
    # Items on the wire, valid or not: a page with a skipped invalid record is not a short page.
    received: int | None = None

    @property
    def length(self) -> int:
        return len(self.items) if self.received is None else self.received


class PaginationRunaway(Exception):  # noqa: N818 - names the condition
    def __init__(self, pages: int) -> None:
        super().__init__(f"pagination did not end after {pages} pages (max_pages)")


def is_last_page(page: Page[T], pages_read: int, requested_size: int) -> bool:
    """True when no further page can hold items: empty, short, or the page count is reached."""
    if page.length == 0:
        return True
    if page.total_pages is not None and pages_read >= page.total_pages:
        return True
    effective_size = page.size if page.size else requested_size
    return page.length < effective_size


def walk_pages(
    fetch: Callable[[int], Page[T]],
    *,
    first_page: int,
    page_size: int,
    max_pages: int,
    keep_going: Callable[[Page[T]], bool] = lambda _page: True,
) -> Iterator[Page[T]]:
    """Fetches pages first_page, first_page+1, ... until the last one or `keep_going` says stop."""
    number = first_page
    pages_read = 0
    while True:
        if pages_read >= max_pages:
            raise PaginationRunaway(max_pages)
        page = fetch(number)
        pages_read += 1
        yield page
        if is_last_page(page, pages_read, page_size) or not keep_going(page):
            return
        number += 1


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
