"""What `check` says about a source: how the API answered, and advice when it did not."""

from __future__ import annotations

from collections.abc import Mapping

from exporter.errors import (
    ApiError,
    DeadlineError,
    HttpStatusError,
    PaginationRunaway,
    PayloadError,
    TransportError,
)

REGIONS = {
    "extend": "Extend has api.extend.ai, api.us2.extend.app and api.eu1.extend.ai",
}


def advice(provider: str, failure: BaseException | None, settings: Mapping[str, object]) -> str:
    """One line on what to try, from the way the request failed."""
    if failure is None:
        return ""
    if isinstance(failure, HttpStatusError):
        text = str(failure).lower()
        if failure.status in (401, 403):
            hint = "the API key was refused: check that it is current and belongs to this API"
            if provider == "extend":
                hint += "; organisation-scoped keys also need workspace_id"
            return hint
        if failure.status == 400 and "version" in text:
            return (
                f"the API version was refused: api_version {settings.get('api_version')!r} is "
                "not accepted for this key; set the version your account uses"
            )
        if failure.status == 404:
            region = REGIONS.get(provider, "")
            hint = "the endpoint does not exist: check base_url"
            if provider == "cortex":
                hint += " and app_id"
            return f"{hint}{'; ' + region if region else ''}"
        if failure.status == 429:
            return "rate limited: lower rate_limit or lengthen interval"
        if failure.status >= 500:
            return "the provider answered with a server error: retry later or ask its status page"
        return "the request was refused: check base_url and the source's settings"
    if isinstance(failure, TransportError):
        region = REGIONS.get(provider, "")
        return (
            "cannot reach the API: check base_url (host, region), DNS, proxy and network policy"
            + (f"; {region}" if region else "")
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
