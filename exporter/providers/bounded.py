"""The network backend under every source's HTTP client: each socket operation bounded by the
request's deadline, and a blocked read that looks up every `STOP_POLL` seconds to see whether the
process is stopping (so a slow API never holds shutdown)."""

from __future__ import annotations

import functools
import ssl
import threading
import time
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx

# When the request under way must be answered in full (time.monotonic()); None: no bound.
request_ends: ContextVar[float | None] = ContextVar("request_ends", default=None)
# How often a blocked read looks up from the socket to see whether the process is stopping.
STOP_POLL = 0.5


class _DeadlineExpired(httpcore.ReadTimeout):
    pass


def bounded_timeout(timeout: float | None) -> float | None:
    """The socket timeout for one operation: the per-operation timeout, never past the end of
    the request. Raises when the end has already passed."""
    ends = request_ends.get()
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
            wait = bounded_timeout(STOP_POLL)
            try:
                return self._inner.read(max_bytes, wait)
            except httpcore.ReadTimeout:
                if quiet_until is not None and time.monotonic() >= quiet_until:
                    raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, bounded_timeout(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, bounded_timeout(timeout))
        return _BoundedStream(inner, self._stop)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class BoundedBackend(httpcore.NetworkBackend):
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
            host, port, bounded_timeout(timeout), local_address, socket_options
        )
        return _BoundedStream(stream, self._stop)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(path, bounded_timeout(timeout), socket_options)
        return _BoundedStream(stream, self._stop)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """One certificate store for every source: each client loading its own costs about 20 ms
    and a megabyte, which a thousand sources feel."""
    return httpx.create_ssl_context()


def install_backend(client: httpx.Client, backend: httpcore.NetworkBackend) -> None:
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
