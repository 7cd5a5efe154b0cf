"""One HTTP client per source: timeouts, retries with backoff, Retry-After, a client-side rate
limit.

It reports what it does through an `ApiObserver` so that this module never imports
prometheus_client. Error messages name the source, endpoint and status; they never carry headers,
so an API key cannot leak through an exception.
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpcore
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


class TokenBucket:
    """Client-side rate limit: `rate` tokens per second (fractional allowed), bursts of `burst`."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        # No burst by default: requests are paced evenly, so no window of any length sees more
        # than rate * length + 1 of them (a provider's per-second limit counts that way).
        self.capacity = burst if burst is not None else 1.0
        self._tokens = self.capacity
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Takes one token; returns how long the caller must wait before using it."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    # A Retry-After longer than this is not waited out inside one collection: the cycle fails
    # and the next one tries again, so one source never holds its job thread for minutes.
    retry_after_max: float = 60.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter exponential backoff (AWS architecture blog): spreads synchronized clients."""
        ceiling = min(self.backoff_max, self.backoff_base * (2**attempt))
        return rng.uniform(0, ceiling)


@dataclass(frozen=True, slots=True)
class JsonResponse:
    body: Any
    headers: Mapping[str, str]


RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# When the request under way must be answered in full (time.monotonic()); None: no bound.
_request_ends: ContextVar[float | None] = ContextVar("request_ends", default=None)
# How often a blocked read looks up from the socket to see whether the process is stopping.
STOP_POLL = 0.5


class _DeadlineExpired(httpcore.ReadTimeout):
    pass


def _bounded(timeout: float | None) -> float | None:
    """The socket timeout for one operation: the per-operation timeout, never past the end of
    the request. Raises when the end has already passed."""
    ends = _request_ends.get()
    if ends is None:
        return timeout
    left = ends - time.monotonic()
    if left <= 0:
        raise _DeadlineExpired("request_deadline reached")
    return left if timeout is None else min(timeout, left)


class _BoundedStream(httpcore.NetworkStream):
    """Every socket operation bounded by the end of the request, and reads cut into short waits
    so that a stop is noticed: httpcore's own timeouts bound each wait for a byte, so a peer
    sending one byte a second (even within the status line and headers) would hold a request
    for as long as it liked."""

    def __init__(self, inner: httpcore.NetworkStream, stop: threading.Event) -> None:
        self._inner = inner
        self._stop = stop

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        quiet_until = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._stop.is_set():
                raise httpcore.ReadError("the process is stopping")
            wait = _bounded(STOP_POLL)
            try:
                return self._inner.read(max_bytes, wait)
            except httpcore.ReadTimeout:
                if quiet_until is not None and time.monotonic() >= quiet_until:
                    raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, _bounded(timeout))
        return _BoundedStream(inner, self._stop)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _BoundedBackend(httpcore.NetworkBackend):
    def __init__(self, stop: threading.Event) -> None:
        self._inner = httpcore.SyncBackend()
        self._stop = stop

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        # A connect is one blocking call that a stop cannot cut short: the process's own bound
        # on shutting down (exporter.commands.run) covers a black-holed host.
        stream = self._inner.connect_tcp(
            host, port, _bounded(timeout), local_address, socket_options
        )
        return _BoundedStream(stream, self._stop)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(path, _bounded(timeout), socket_options)
        return _BoundedStream(stream, self._stop)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


@functools.cache
def _shared_tls_context() -> ssl.SSLContext:
    """One certificate store for every source: each client loading its own costs about 20 ms
    and a megabyte, which a thousand sources feel."""
    return httpx.create_ssl_context()


def _install_backend(client: httpx.Client, backend: httpcore.NetworkBackend) -> None:
    """httpx builds its connection pools (the default one and one per proxy from the
    environment) without a way to pass httpcore's `network_backend`; it is set on each pool
    here, before any connection exists."""
    transports = [client._transport, *client._mounts.values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        if isinstance(pool, httpcore.ConnectionPool):  # proxies are pools too
            if not hasattr(pool, "_network_backend"):
                raise RuntimeError("this httpcore version keeps no _network_backend")
            pool._network_backend = backend


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
            verify=_shared_tls_context(),
        )
        if transport is None:
            _install_backend(self._client, _BoundedBackend(self._stop))

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
        token = _request_ends.set(ends)
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
            _request_ends.reset(token)
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
