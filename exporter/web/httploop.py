"""The loop both listeners run on (/metrics and the webhooks'): connections wait for their
requests in one selector, not each in a thread, and a connection with data goes to one of a
bounded set of workers, which serves the requests already there and hands it back.

A client that opens sockets and sends nothing costs a file descriptor until the read timeout,
never a thread; a request must arrive whole within the read timeout (a client sending a header
byte every few seconds would otherwise hold a worker for ever). The HTTP itself is
`exporter.web.httpframing`'s; what a request gets is its listener's `Endpoints`.
"""

from __future__ import annotations

import contextlib
import queue
import resource
import selectors
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from exporter.core.logs import get_logger
from exporter.web.httpframing import (
    BodySource,
    FramingError,
    HttpConnection,
    Request,
    Response,
    text_response,
)

log = get_logger("exporter.server")


def parse_listen_address(address: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` (all interfaces) or `[::1]:PORT`."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--web.listen-address {address!r}: expected HOST:PORT")
    host = host.strip("[]")
    return host or "0.0.0.0", int(port)  # noqa: S104 - the documented meaning of ":PORT"


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one client may hold of the server (flags `--web.*`, defaults in docs/security.md)."""

    # A request's line and headers must arrive within this (a connection's first request too).
    read_timeout: float = 5.0
    # A kept-alive connection with no request this long is closed.
    idle_timeout: float = 30.0
    # Open connections at most; past it the longest idle one is closed.
    max_connections: int = 2048
    # Requests served at once (threads); ready connections queue for them.
    workers: int = 16
    # A rendered /metrics is shared by the scrapes of this long, unless the state changed.
    metrics_max_age: float = 1.0


class Endpoints(Protocol):
    """What a listener serves: an answer for each request that was read. The body, where one
    is wanted, is read through `body`; one left unread closes the connection after the answer."""

    def answer(self, request: Request, body: BodySource) -> Response: ...


class ConnectionLoop:
    # Connections the kernel holds before they are accepted: a burst of scrapes and probes is
    # not refused while the loop is busy.
    request_queue_size = 1024

    def __init__(
        self,
        address: tuple[str, int],
        endpoints: Endpoints,
        ssl_context: ssl.SSLContext | None = None,
        limits: ServerLimits | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.ssl_context = ssl_context
        self.limits = limits or ServerLimits()
        # Before the bind: a refused bind (the port taken) closes the server, waker included, and
        # the caller gets the OSError.
        self._waker, self._wake_end = socket.socketpair()
        self._waker.setblocking(False)
        self._wake_end.setblocking(False)
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind(address)
            self.socket.listen(self.request_queue_size)
        except OSError:
            self.server_close()
            raise
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        self._ready: queue.SimpleQueue[HttpConnection | None] = queue.SimpleQueue()
        self._returned: queue.SimpleQueue[HttpConnection] = queue.SimpleQueue()
        # Connections waiting for a request, by their socket, with when they expire; in the
        # order they started waiting, so the first is the one idle longest.
        self._idle: dict[socket.socket, tuple[HttpConnection, float]] = {}
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._workers = [
            threading.Thread(target=self._work, name=f"http-{n}", daemon=True)
            for n in range(self.limits.workers)
        ]

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        for worker in self._workers:
            worker.start()
        self.socket.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(self.socket, selectors.EVENT_READ, "listen")
        selector.register(self._wake_end, selectors.EVENT_READ, "wake")
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                timeout = min(
                    [poll_interval, *(expires - now for _, expires in self._idle.values())]
                )
                for key, _ in selector.select(max(0.0, timeout)):
                    if key.data == "listen":
                        self._accept(selector)
                    elif key.data == "wake":
                        with contextlib.suppress(OSError):
                            self._wake_end.recv(4096)
                    else:
                        connection, _ = self._idle.pop(key.fileobj)  # type: ignore[call-overload]
                        selector.unregister(key.fileobj)
                        self._ready.put(connection)
                self._take_back(selector)
                self._expire(selector, time.monotonic())
        finally:
            for sock, _ in list(self._idle.items()):
                selector.unregister(sock)
                _close(sock)
            self._idle.clear()
            selector.close()
            for _ in self._workers:
                self._ready.put(None)
            self._stopped.set()

    def _accept(self, selector: selectors.BaseSelector) -> None:
        while True:
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # Out of file descriptors: the connection idle longest makes room.
                if not self._idle:
                    time.sleep(0.05)
                    return
                oldest = next(iter(self._idle))
                selector.unregister(oldest)
                del self._idle[oldest]
                _close(oldest)
                continue
            connection = HttpConnection(sock, address)
            self._wait_for_request(selector, connection, self.limits.read_timeout)

    def _wait_for_request(
        self, selector: selectors.BaseSelector, connection: HttpConnection, timeout: float
    ) -> None:
        while len(self._idle) >= self.limits.max_connections:
            oldest = next(iter(self._idle))
            selector.unregister(oldest)
            del self._idle[oldest]
            _close(oldest)
        connection.sock.setblocking(False)
        self._idle[connection.sock] = (connection, time.monotonic() + timeout)
        selector.register(connection.sock, selectors.EVENT_READ, "connection")

    def _take_back(self, selector: selectors.BaseSelector) -> None:
        while True:
            try:
                connection = self._returned.get_nowait()
            except queue.Empty:
                return
            self._wait_for_request(selector, connection, self.limits.idle_timeout)

    def _expire(self, selector: selectors.BaseSelector, now: float) -> None:
        expired = [sock for sock, (_, expires) in self._idle.items() if expires <= now]
        for sock in expired:
            selector.unregister(sock)
            del self._idle[sock]
            _close(sock)

    def _work(self) -> None:
        while True:
            connection = self._ready.get()
            if connection is None:
                return
            keep = False
            # A client's trouble (a reset, a timeout, a request cut short) ends its connection,
            # nothing more.
            with contextlib.suppress(Exception):
                keep = self._serve(connection)
            if keep and not self._stopping.is_set():
                self._returned.put(connection)
                with contextlib.suppress(OSError):
                    self._waker.send(b"\0")
            else:
                _close(connection.sock)

    def _serve(self, connection: HttpConnection) -> bool:
        """The requests there are on `connection`; whether it stays open for more."""
        timeout = self.limits.read_timeout
        connection.sock.settimeout(timeout)
        if self.ssl_context is not None and not connection.wrapped:
            # The TLS handshake runs here, in a worker, bounded like a request.
            try:
                connection.wrap(self.ssl_context)
            except (ssl.SSLError, OSError):
                return False  # plain HTTP on the TLS port, no client certificate, ...: refused
        while True:
            try:
                request = connection.next_request(time.monotonic() + timeout)
                if request is None:
                    return False
                response = self._answer(request, connection)
            except FramingError as refused:
                log.debug("request refused", client=connection.client, reason=refused.reason)
                connection.refuse(refused, timeout=timeout)
                return False
            if not connection.respond(response, timeout=timeout) or response.close:
                return False
            if not connection.has_pending():
                return True

    def _answer(self, request: Request, connection: HttpConnection) -> Response:
        try:
            return self.endpoints.answer(request, connection)
        except (FramingError, OSError):
            raise  # the request's own trouble (a body cut short, too large): no answer owed
        except Exception:
            # A bug says so (log, 500) instead of hanging up unanswered.
            log.exception("answering a request failed", method=request.method, path=request.path)
            return text_response(500, "internal error; see the log", close=True)

    def shutdown(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._waker.send(b"\0")
        self._stopped.wait()

    def server_close(self) -> None:
        self.socket.close()
        self._waker.close()
        self._wake_end.close()


def _close(sock: socket.socket) -> None:
    # As socketserver does: tell the peer first, then let the descriptor go.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
    sock.close()


class Listener:
    """A `ConnectionLoop` served from a thread of its own."""

    def __init__(self, loop: ConnectionLoop, *, tls: bool, thread_name: str) -> None:
        self.tls = tls
        self._loop = loop
        self._thread = threading.Thread(target=loop.serve_forever, name=thread_name, daemon=True)

    @property
    def port(self) -> int:
        return int(self._loop.server_address[1])

    @property
    def host(self) -> str:
        return str(self._loop.server_address[0])

    def url(self, path: str = "/") -> str:
        host = self.host if self.host not in ("0.0.0.0", "::") else "127.0.0.1"  # noqa: S104
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{path}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._loop.shutdown()
        self._loop.server_close()


def raise_fd_limit() -> None:
    """The soft limit on open files up to the hard one: every connection the server holds, idle
    ones included, is a file descriptor, and the usual soft limit of 1024 is soon reached."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
