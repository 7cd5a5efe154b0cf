"""The backward walk of an oldest-first list with totals: from its last page back to the floor,
so a cycle reads pages in proportion to the new items, not to the list's history. It checks every
page's totals on the way, and gives up on them (the list is read forward instead) when they fail."""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime
from typing import TYPE_CHECKING

from exporter.providers.pages import Page, T, Walk, reached_floor
from exporter.providers.pagetotals import fullest_last_page, more_after, pages_for

if TYPE_CHECKING:
    from exporter.providers.paging import PagedList


def walk_backwards(
    paged: PagedList[T],
    first: int,
    read_up_to: int,
    total: int,
    floor: datetime,
    walk: Walk,
    size: int,
) -> Generator[Page[T], None, bool]:
    """From the last page back to the floor, or to the pages already read, `size` items a
    page. False when a page on the way reports totals that fail their check: the caller
    reads forward instead (pages already yielded stay yielded)."""
    for _ in range(3):
        outcome = yield from _walk_back_at(paged, first, read_up_to, total, floor, walk, size)
        if isinstance(outcome, bool):
            return outcome
        # The API serves fewer than asked: again with the size it serves, from the top.
        size, total, read_up_to = outcome
        size = fullest_last_page(total, size)
    return True


def _walk_back_at(
    paged: PagedList[T],
    first: int,
    read_up_to: int,
    total: int,
    floor: datetime,
    walk: Walk,
    size: int,
) -> Generator[Page[T], None, tuple[int, int, int] | bool]:
    """One backward walk; returns (size served, total, pages read) when the first page it
    reads shows a silent cap, before yielding anything; else whether the totals held."""
    last = first + max(0, pages_for(total, size) - 1)
    if last <= read_up_to:
        return True
    page = paged.fetch(last, size)
    if paged.check_page_totals(page, last - first, min(size, page.received), walk):
        return False
    for _ in range(3):
        # The list shrank since its total was read: the last page is nearer.
        if page.received or page.total_items is None:
            break
        actual = first + max(0, pages_for(page.total_items, size) - 1)
        if actual >= last or actual <= read_up_to:
            break
        last = actual
        page = paged.fetch(last, size)
        if paged.check_page_totals(page, last - first, min(size, page.received), walk):
            return False
    reported = page.total_items
    if (
        reported is not None
        and 0 < page.received < size
        and (last - first) * size + page.received != reported
    ):
        # Not where the last page of `size` would end: the API served fewer than asked.
        paged.learn_page_size(page.received, last - first, more=True)
        return page.received, reported, first - 1
    walk.add(page, paged.times(page), continues=False)
    yield page
    lowest, lowest_page = last, page
    newest = last
    while page.received and more_after(page, newest - first, size):
        # The list grew since its total was read: newer pages follow.
        newest += 1
        page = paged.fetch(newest, size)
        distrusted = paged.check_page_totals(page, newest - first, min(size, page.received), walk)
        walk.add(page, paged.times(page))
        yield page
        if distrusted:
            return False
    if page.total_items is not None:
        paged.shape.totals[paged.key] = page.total_items
    number, page = lowest, lowest_page
    while number - 1 > read_up_to and not reached_floor(paged.times(page)[::-1], floor):
        number -= 1
        page = paged.fetch(number, size)
        walk.add(page, paged.times(page), continues=False)
        yield page
    return True
