"""Cursor pagination, checked as it is followed (pure: tested without a network).

The docs promise that a cursor leads on until it is absent; nothing promises that it never leads
back. A token the walk has already been given, or a page holding exactly the ids of the page
before it, would send a walk round the same pages until `max_pages`: the walk ends there instead,
keeps what it read, and the reason is counted (`cursor_cycle`, `page_repeated`). Memory is one
token per page read, which `max_pages` bounds.
"""

from __future__ import annotations

from typing import Any

from exporter.providers.pages import Page


class CursorTrail:
    """The tokens and the last page's ids of one cursor walk."""

    def __init__(self) -> None:
        self._tokens: set[str] = set()
        self._last_ids: tuple[str, ...] = ()
        self._pages = 0

    def stop_reason(self, page: Page[Any]) -> tuple[str, str] | None:
        """(reason, detail) when this page shows the walk going round; else None, and the page's
        token is remembered."""
        self._pages += 1
        index = self._pages - 1
        if page.ids and page.ids == self._last_ids:
            return (
                "page_repeated",
                f"page {index} repeats the ids of the page before it: the list ends there",
            )
        self._last_ids = page.ids
        token = page.cursor
        if token is None:
            return None
        if token in self._tokens:
            return (
                "cursor_cycle",
                f"page {index} gives a next-page token already followed in this walk "
                f"({len(self._tokens)} tokens): the list ends there",
            )
        self._tokens.add(token)
        return None
