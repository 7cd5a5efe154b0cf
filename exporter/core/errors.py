"""The exporter's one exception tree; callers catch the level they mean.

ExporterError
├── ConfigError            the configuration cannot be used (every problem, one line each)
├── StateError             the state file cannot be used (the message says what to do)
├── StateWriteError        a write to the state file failed (disk full, read-only, I/O)
├── Cancelled              the process is shutting down (a control-flow signal)
└── SourceError            one source's collection failed; the others go on
    ├── PaginationRunaway  a walk that did not end within max_pages
    ├── PageRefused        a page number below the list's first page (learning it)
    └── ApiError           a request failed for good (after retries); safe to log
        ├── HttpStatusError
        ├── TransportError
        ├── PayloadError   the answer is not what the API documents
        │   └── ResponseTooLarge  a body past max_response_bytes, counted decompressed
        └── DeadlineError  no complete answer within request_deadline
"""

from __future__ import annotations


class ExporterError(Exception):
    """Anything the exporter raises on purpose."""


class ConfigError(ExporterError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class StateError(ExporterError):
    """The state file cannot be used. The message says what to do; the file is never reset."""


class StateWriteError(ExporterError):
    """A write to the state file failed (disk full, read-only, an I/O error): its transaction
    was rolled back whole, so nothing of it was kept, and the work is done again once the
    state takes writes (a cycle's cursor was not moved either)."""

    def __init__(self, cause: BaseException) -> None:
        self.detail = str(cause).strip() or type(cause).__name__
        super().__init__(f"state not writable: {self.detail}")


class Cancelled(ExporterError):  # noqa: N818 - a control-flow signal, not an error
    """Raised inside a collection when the process is shutting down."""


class SourceError(ExporterError):
    """One source's collection cannot go on this cycle; what it read so far is kept."""


class PaginationRunaway(SourceError):  # noqa: N818 - names the condition
    def __init__(self, pages: int) -> None:
        super().__init__(f"pagination did not end after {pages} pages (max_pages)")


class PageRefused(SourceError):  # noqa: N818 - names the condition
    """The API refused a page number (HTTP 400 or 422): it lies below the first page."""


class ApiError(SourceError):
    """A request to a provider failed for good (after retries). Safe to log: no secrets inside."""

    def __init__(self, source: str, endpoint: str, message: str) -> None:
        super().__init__(f"source {source!r}, {endpoint}: {message}")
        self.source = source
        self.endpoint = endpoint


class HttpStatusError(ApiError):
    def __init__(self, source: str, endpoint: str, status: int, detail: str) -> None:
        super().__init__(source, endpoint, f"HTTP {status}{': ' + detail if detail else ''}")
        self.status = status


class TransportError(ApiError):
    pass


class PayloadError(ApiError):
    """The response arrived but is not what the API documents (not JSON, wrong shape)."""


class ResponseTooLarge(PayloadError):  # noqa: N818 - names the condition
    """A body larger than `max_response_bytes` once decompressed: cut off as it arrived."""


class DeadlineError(ApiError):
    """No complete answer within `request_deadline`. Not retried: a server that drips once
    drips again, and each retry would hold the source for another whole deadline."""
