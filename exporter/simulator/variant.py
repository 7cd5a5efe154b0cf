"""How a simulated API answers what its provider's docs leave open: the `ApiVariant` knobs, and the
pure helpers that turn them into totals, numbers, timestamps and page windows."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from exporter.simulator.records import RunIds

PageZero = Literal["error", "as_first", "empty"]
# What a page-numbered list reports as its totals: the truth, nothing (0) while it lists items,
# a negative count (-1), or an absurd one.
Totals = Literal["true", "low", "negative", "absurd"]
ABSURD_TOTAL = 10**18
# A number no float holds and no API should send: what `huge_numbers` puts in numeric fields.
HUGE = 10**400


@dataclass(frozen=True)
class ApiVariant:
    """How a simulated API answers the questions its provider's docs leave open."""

    # List order by creation time (page-numbered lists only).
    order: Literal["newest_first", "oldest_first"] = "newest_first"
    # None: the simulator's usual numbering (1); 0: pages count from 0.
    first_page: int | None = None
    # How a 1-based list answers page=0; None: the simulator's usual (`page_zero_default`).
    page_zero: PageZero | None = None
    # At most this many items a page, while the answer echoes the size asked for; totals stay
    # true and page counts follow the cap.
    page_cap: int | None = None
    # date_only: run timestamps as "YYYY-MM-DD"; no_offset: ISO without Z or offset (UTC values).
    timestamps: Literal["full", "date_only", "no_offset"] = "full"
    omit_started_at: bool = False  # runs come without a `started_at` key at all
    rejected: bool = False  # some runs end rejected and carry an error like failed ones
    stale_updated_at: bool = False  # changes never bump updatedAt: it stays the creation time
    # Every fifth run is a nested run of the run created before it, shown in that run's first
    # step (Plextera's `nestedRuns`); `unlisted`: the top-level list does not show it.
    nested_runs: Literal["none", "listed", "unlisted"] = "none"
    # The totals a page-numbered list reports (items and pages alike); the items stay true.
    totals: Totals = "true"
    # A cursor-paged list whose last page, instead of no token, gives the token the first page
    # gave (it wraps around): every item is listed once, then the cursor goes round.
    cursor_cycle: bool = False
    # Numeric fields hold absurd values (10^400, negatives, NaN and Infinity as numbers and as
    # strings), spread over the runs by `absurd_number`, and the page numbers too.
    huge_numbers: bool = False
    # How the single-run endpoint answers where a client guesses its path: `absent` 404s every
    # id (the real one lives elsewhere or nowhere), `refused` answers 405.
    lookups: Literal["served", "absent", "refused"] = "served"
    # One run in twenty is dated an hour ahead (a platform node whose clock runs fast).
    clock_ahead: bool = False
    # How runs are numbered (`world.RunIds`): unique in the app, per workflow (Cortex: a run is
    # addressed under its workflow), or in pairs that differ only in a control character.
    run_ids: RunIds = "global"


def reported_totals(variant: ApiVariant, items: int, pages: int) -> tuple[int, int]:
    """(items, pages) as the variant's list reports them, for a list truly holding `items` on
    `pages` pages."""
    if variant.totals == "low":
        return 0, 0
    if variant.totals == "negative":
        return -1, -1
    if variant.totals == "absurd":
        return ABSURD_TOTAL, ABSURD_TOTAL
    return items, pages


def absurd_number(run_id: str, slot: int) -> Any | None:
    """The absurd value a `huge_numbers` API puts in numeric field `slot` of a run, or None for
    the true one: each run gets a different mix, so some fields stay true on every page."""
    values: tuple[Any, ...] = (HUGE, -7, float("nan"), "NaN", float("inf"), "Infinity", None)
    return values[(sum(map(ord, run_id)) + slot) % len(values)]


def render_time(value: datetime | None, variant: ApiVariant) -> str | None:
    """A run timestamp as the variant's API writes it (the world's times are all UTC)."""
    if value is None:
        return None
    if variant.timestamps == "date_only":
        return value.astimezone(UTC).date().isoformat()
    if variant.timestamps == "no_offset":
        return value.astimezone(UTC).replace(tzinfo=None).isoformat()
    return value.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class PageWindow:
    """The slice of a list one page request gets, and the page number the answer echoes."""

    page: int
    start: int
    stop: int
    per_page: int  # what a full page holds: the cap when it is below the size asked for

    def pages(self, total: int) -> int:
        return math.ceil(total / self.per_page)


def page_window(
    variant: ApiVariant, first: int, page_zero_default: PageZero, page: int, size: int
) -> PageWindow | None:
    """Which items page `page` of `size` gets under `variant`, whose lists start at page `first`;
    None: the API refuses that page number (the provider answers with its own error)."""
    per_page = min(size, variant.page_cap) if variant.page_cap else size
    if page < first:
        zero = variant.page_zero or page_zero_default
        if first <= 0 or zero == "error" or (zero == "empty" and page < 0):
            return None
        if zero == "empty":
            return PageWindow(page, 0, 0, per_page)
        page = first
    start = (page - first) * per_page
    return PageWindow(page, start, start + per_page, per_page)
