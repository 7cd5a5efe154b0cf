"""What a page-numbered list's reported totals are worth, and what they say of the pages.

Totals are believed only once they are checked against the items, on every page that reports
them (`totals_problem`); the docs promise nothing about them, and a wrong one would end a walk
early (a total below the items: the rest is never read) or send it to a page no walk can reach
(an absurd total). A page's totals are checked against what that page proves the list holds at
the moment it answers: a page at position `i` holding `r` items shows at least
`i x (smallest page read before it) + r` items and `i + 1` pages (a lower bound that stays true
when the list grows or shrinks between requests), so:

- a negative total is `total_negative`;
- a total below those items or pages is `total_below_items`;
- a total beyond what `max_pages` pages of the size served can reach is `total_unreachable`.

The first failing check of a walk is reported once (`ShapeEvents.inconsistency`), and from then
on the walk ignores totals: it ends on an empty page, and a short page is followed by one more
read (the rule for lists without totals). No page number is computed from a total that has not
passed these checks: an oldest-first list whose totals fail is read forward from its first page,
bounded by `max_pages`, instead of from its last page backwards, and a total that failed is not
remembered for the next walk's shortcut. A page-0 probe believes an empty page's total only when
it is positive and reachable: an empty page 0 reporting 0 items proves nothing, page 1 is read.
"""

from __future__ import annotations

from exporter.providers.pages import (
    Page,
    T,
    Walk,
)


def fullest_last_page(total: int, largest: int) -> int:
    """The page size, from half the largest up, whose last page holds the most items.

    An oldest-first list's newest items sit on its last page, which holds `total mod size` of
    them: a nearly empty last page would cost a second request for what a newest-first list
    serves in one. Pages stay aligned within a walk, since the walk asks every page at one size.
    """
    best, best_fill = largest, 0
    for size in range(largest, (largest + 1) // 2 - 1, -1):
        fill = total - size * ((total - 1) // size) if total > 0 else 0
        if fill > best_fill:
            best, best_fill = size, fill
        if fill >= largest:
            break
    return best


def totals_problem(
    page: Page[T], *, index: int, smallest_before: int, size: int, max_pages: int
) -> tuple[str, str] | None:
    """Why a page's totals cannot be believed, as (reason, detail); None when they pass.

    `index`: the page's position from the first page; `smallest_before`: the fewest items a page
    before it held (each page before held at least that many when this one was answered, since
    pages are slices of one list: a lower bound that holds while the list changes).
    """
    # The count the walk would go by: items where reported, else pages (`page_total`).
    reported = [
        (name, value)
        for name, value in (("items", page.total_items), ("pages", page.total_pages))
        if value is not None
    ][:1]
    for name, value in reported:
        if value < 0:
            return "total_negative", f"page {index} reports {value} {name} in all"
    proven = {
        "items": index * smallest_before + page.received if page.received else 0,
        "pages": index + 1 if page.received else 0,
    }
    reach = {"items": max_pages * size, "pages": max_pages}
    for name, value in reported:
        if value < proven[name]:
            return (
                "total_below_items",
                f"page {index} holds {page.received} items, which shows at least "
                f"{proven[name]} {name}, but it reports {value} {name} in all",
            )
        if value > reach[name]:
            return (
                "total_unreachable",
                f"page {index} reports {value} {name} in all, beyond the {reach[name]} that "
                f"max_pages ({max_pages}) pages of {size} can reach",
            )
    return None


def pages_for(total: int, size: int) -> int:
    """Pages of `size` that hold `total` items, in integers (a float would overflow)."""
    return -(-total // size)


def more_by_totals(page: Page[T], walk: Walk) -> bool:
    """Whether the totals say items lie past what a forward walk has received so far."""
    if page.total_items is not None:
        return walk.received < page.total_items
    if page.total_pages is not None:
        return walk.pages < page.total_pages
    return False


def more_after(page: Page[T], index: int, size: int) -> bool:
    """Whether the totals say items lie past page `index` (counted from the first page) of a list
    served `size` items a page."""
    if page.total_items is not None:
        return index * size + page.received < page.total_items
    if page.total_pages is not None:
        return index + 1 < page.total_pages
    return False
