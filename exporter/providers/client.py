"""One HTTP client per source: a request, its timeouts, its retries and its decoded answer. When
to retry and how long to wait are `exporter.providers.retry`'s; the socket bounds,
`exporter.providers.bounded`'s.

It reports what it does through an `ApiObserver` so that this module never imports
prometheus_client. Error messages name the source, endpoint and status; they never carry headers,
so an API key cannot leak through an exception.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import pydantic_core

from exporter import __version__
from exporter.core.errors import (
    ApiError,
    Cancelled,
    DeadlineError,
    HttpStatusError,
    PayloadError,
    ResponseTooLarge,
    TransportError,
)
from exporter.core.logs import redact
from exporter.providers.bodylimit import ACCEPTED_ENCODINGS, BodyError, BodyTooLarge, BoundedBody
from exporter.providers.bounded import (
    BoundedBackend,
    install_backend,
    request_ends,
    shared_tls_context,
)
from exporter.providers.retry import RETRYABLE_STATUSES, RetryPolicy, TokenBucket, parse_retry_after

# The app builds a client with its retry policy and rate limit, importing all three from here.
__all__ = ["ApiClient", "ApiObserver", "JsonResponse", "NullObserver", "RetryPolicy", "TokenBucket"]


class ApiObserver(Protocol):
    def request(self, endpoint: str, code: str, seconds: float) -> None: ...
    def retry(self, reason: str) -> None: ...
    def response_headers(self, endpoint: str, headers: Mapping[str, str]) -> None: ...


class NullObserver:
    def request(self, endpoint: str, code: str, seconds: float) -> None:
        return None

    def response_headers(self, endpoint: str, headers: Mapping[str, str]) -> None:
        return None

    def retry(self, reason: str) -> None:
        return None


@dataclass(frozen=True, slots=True)
class JsonResponse:
    body: Any
    headers: Mapping[str, str]


class ApiClient:
    def __init__(
        self,
        *,
        source: str,
        base_url: str,
        headers: Mapping[str, str],
        timeout: float,
        retry: RetryPolicy,
        observer: ApiObserver | None = None,
        rate_limiter: TokenBucket | None = None,
        stop: threading.Event | None = None,
        max_response_bytes: int = 8 * 1024 * 1024,
        deadline: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.source = source
        self._retry = retry
        self._observer = observer or NullObserver()
        self._limiter = rate_limiter
        self._stop = stop or threading.Event()
        self._max_bytes = max_response_bytes
        # The read timeout bounds each wait for bytes; only a deadline bounds a slow drip. It
        # holds from the connect to the last byte of the body, headers included.
        self._deadline = deadline
        self._rng = random.Random()
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={
                "User-Agent": f"workflow-runs-exporter/{__version__}",
                # Named, not httpx's default: that grows with the decoders installed, and each
                # coding the client takes must be one exporter.providers.bodylimit inflates to a
                # bound.
                "Accept-Encoding": ACCEPTED_ENCODINGS,
                **headers,
            },
            timeout=timeout,
            # Redirects are never followed: a redirect to another host would carry the key along.
            follow_redirects=False,
            transport=transport,
            verify=shared_tls_context(),
        )
        if transport is None:
            install_backend(self._client, BoundedBackend(self._stop))

    def close(self) -> None:
        self._client.close()

    def set_headers(self, headers: Mapping[str, str]) -> None:
        """Replaces authentication headers (key rotation) for the requests that follow."""
        self._client.headers.update(headers)

    def get_json(
        self,
        path: str,
        *,
        endpoint: str,
        params: Mapping[str, str | int] | None = None,
        decode: Callable[[bytes], Any] | None = None,
    ) -> JsonResponse:
        """GET and decode JSON, retrying what is worth retrying. Raises ApiError subclasses.

        `decode`, when given, is tried on the body first (a typed model read straight from the
        bytes, say); where it raises ValueError the body is decoded as plain JSON instead."""
        attempt = 0
        while True:
            self._wait_for_rate_limit()
            try:
                response = self._send(path, endpoint, params)
            except TransportError:
                if attempt >= self._retry.max_retries:
                    raise
                self._observer.retry("transport")
                self._sleep(self._retry.backoff(attempt, self._rng))
                attempt += 1
                continue
            status, content, headers = response
            if status == 200:
                try:
                    return JsonResponse(self._decode(content, endpoint, decode), headers)
                except PayloadError:
                    # A cut or garbled body is usually a transient fault on the way: retry it.
                    if attempt >= self._retry.max_retries:
                        raise
                    self._observer.retry("bad_payload")
                    self._sleep(self._retry.backoff(attempt, self._rng))
                    attempt += 1
                    continue
            if status not in RETRYABLE_STATUSES or attempt >= self._retry.max_retries:
                raise HttpStatusError(self.source, endpoint, status, _error_detail(content))
            reason = "rate_limited" if status == 429 else "server_error"
            self._observer.retry(reason)
            delay = parse_retry_after(headers.get("retry-after"))
            if delay is not None and delay > self._retry.retry_after_max:
                raise HttpStatusError(
                    self.source, endpoint, status, f"Retry-After {delay:.0f}s exceeds the limit"
                )
            if delay is None:
                delay = self._retry.backoff(attempt, self._rng)
            self._sleep(delay)
            attempt += 1

    def _send(
        self, path: str, endpoint: str, params: Mapping[str, str | int] | None
    ) -> tuple[int, bytes, Mapping[str, str]]:
        started = time.perf_counter()
        ends = None if self._deadline is None else time.monotonic() + self._deadline
        token = request_ends.set(ends)
        try:
            with self._client.stream("GET", path, params=params) as response:
                try:
                    content = self._read_bounded(response, endpoint, ends)
                except ApiError as exc:
                    # Answered, if too slowly or not readably: reported like any other request,
                    # but a body cut off at the limit as what it was, not as its status.
                    code = "too_large" if isinstance(exc, ResponseTooLarge) else None
                    elapsed = time.perf_counter() - started
                    self._observer.request(endpoint, code or str(response.status_code), elapsed)
                    raise
        except httpx.HTTPError as exc:
            self._observer.request(endpoint, "error", time.perf_counter() - started)
            if self._stop.is_set():
                raise Cancelled from None
            if ends is not None and time.monotonic() >= ends:
                raise self._deadline_error(endpoint) from None
            if isinstance(exc, httpx.TimeoutException):
                raise TransportError(
                    self.source, endpoint, f"timed out ({type(exc).__name__})"
                ) from None
            raise TransportError(self.source, endpoint, _transport_detail(exc)) from None
        finally:
            request_ends.reset(token)
        self._observer.request(endpoint, str(response.status_code), time.perf_counter() - started)
        self._observer.response_headers(endpoint, response.headers)
        return response.status_code, content, response.headers

    def _deadline_error(self, endpoint: str) -> DeadlineError:
        return DeadlineError(
            self.source,
            endpoint,
            f"no complete response within request_deadline ({self._deadline:g}s)",
        )

    def _read_bounded(self, response: httpx.Response, endpoint: str, ends: float | None) -> bytes:
        """The body, decompressed here as it arrives (never by httpx, which inflates a whole
        network chunk at once): memory stays within max_response_bytes however far a
        compressed body would inflate (exporter.providers.bodylimit)."""
        try:
            body = BoundedBody(response.headers.get("content-encoding"), self._max_bytes)
            for chunk in response.iter_raw():
                if ends is not None and time.monotonic() > ends:
                    raise self._deadline_error(endpoint)
                body.feed(chunk)
            return body.finish()
        except BodyTooLarge as exc:
            raise ResponseTooLarge(self.source, endpoint, str(exc)) from None
        except BodyError as exc:
            raise PayloadError(self.source, endpoint, str(exc)) from None

    def _decode(
        self, content: bytes, endpoint: str, decode: Callable[[bytes], Any] | None = None
    ) -> Any:
        if decode is not None:
            with contextlib.suppress(Exception):  # any failure of the fast path: read plainly
                return decode(content)
        try:
            # pydantic-core's parser (already here for the wire models) is about twice as fast
            # as json's on large pages; what it refuses (a lone surrogate escape, say) json is
            # asked next, so the bodies accepted are exactly json's.
            return pydantic_core.from_json(content)
        except ValueError:
            pass
        try:
            return json.loads(content)
        except RecursionError:
            raise PayloadError(
                self.source, endpoint, "response nests deeper than the JSON reader's limit"
            ) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise PayloadError(
                self.source, endpoint, f"response is not valid JSON ({exc.__class__.__name__})"
            ) from None

    def _wait_for_rate_limit(self) -> None:
        if self._limiter is not None:
            self._sleep(self._limiter.reserve())

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and self._stop.wait(seconds):
            raise Cancelled
        if self._stop.is_set():
            raise Cancelled


def _error_detail(content: bytes) -> str:
    """A short, bounded description of an error body: the provider's code and message if any."""
    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return ""
    parts: list[str] = []
    node = body.get("error", body) if isinstance(body, dict) else None
    if isinstance(node, dict):
        for key in ("code", "message", "detail"):
            value = node.get(key)
            if isinstance(value, str | int) and str(value).strip():
                parts.append(str(value))
    elif isinstance(node, str):
        parts.append(node)
    # A provider may echo the key it rejected ("invalid key sk-..."): never carry that along.
    return redact(" ".join(parts))[:200]


def _transport_detail(exc: httpx.HTTPError) -> str:
    # httpx messages can contain the URL; that holds no secrets (keys travel in headers) but
    # keep the text short and stable for logs.
    text = str(exc) or type(exc).__name__
    # Masked before it is cut: a cut key would otherwise no longer be recognised.
    return redact(f"{type(exc).__name__}: {text}")[:200]
