"""What `check` says about a source: how the API answered, and advice when it did not."""

from __future__ import annotations

from collections.abc import Callable

from exporter.core.errors import (
    ApiError,
    DeadlineError,
    HttpStatusError,
    PaginationRunaway,
    PayloadError,
    TransportError,
)


def advice(failure: BaseException | None, hint: Callable[[str], str] = lambda _s: "") -> str:
    """One line on what to try, from the way the request failed; `hint` gives what the
    source's API adds in a situation (its provider's `hint`)."""
    if failure is None:
        return ""
    if isinstance(failure, HttpStatusError):
        text = str(failure).lower()
        if failure.status in (401, 403):
            return _with(
                "the API key was refused: check that it is current and belongs to this API",
                hint("auth_refused"),
            )
        if failure.status == 400 and "version" in text:
            return _with("the API version was refused", hint("version_refused"))
        if failure.status == 404:
            return _with("the endpoint does not exist: check base_url", hint("not_found"))
        if failure.status == 429:
            return "rate limited: lower rate_limit or lengthen interval"
        if failure.status >= 500:
            return "the provider answered with a server error: retry later or ask its status page"
        return "the request was refused: check base_url and the source's settings"
    if isinstance(failure, TransportError):
        return _with(
            "cannot reach the API: check base_url (host, region), DNS, proxy and network policy",
            hint("unreachable"),
        )
    if isinstance(failure, DeadlineError):
        return (
            "the API answered too slowly: check the network path (a proxy holding the answer?) "
            "or raise request_deadline"
        )
    if isinstance(failure, PayloadError):
        return "the answer is not what the API documents: check that base_url is the API root"
    if isinstance(failure, PaginationRunaway):
        return (
            "the list did not end within max_pages: the API may ignore the page parameter or "
            "repeat pages past the end; check base_url, first_page and page_size, or raise "
            "max_pages for a very long list"
        )
    if isinstance(failure, ApiError):
        return "the API failed: see the error"
    return "unexpected failure: see the error and the logs"


def _with(advice: str, hint: str) -> str:
    return f"{advice}; {hint}" if hint else advice
