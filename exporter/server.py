"""HTTP endpoints: /metrics, /healthz, /readyz and a landing page with per-source status."""

from __future__ import annotations

import contextlib
import gc
import gzip
import queue
import resource
import select
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporter.exposition import encoder_for, gzip_wanted
from exporter.landing import SourceStatus, render, shipped_file
from exporter.logs import get_logger
from exporter.webconfig import BasicAuth, Verdict, WebConfig, ssl_context


class Exposable(Protocol):
    """What /metrics renders: a registry, or one wrapped (exporter.staticlabels)."""

    def collect(self) -> Iterable[Metric]: ...
    def restricted_registry(self, names: Iterable[str]) -> Collector: ...


@dataclass(frozen=True, slots=True)
class ServerHooks:
    registry: Exposable
    ready: Callable[[], bool]
    sources: Callable[[], Sequence[SourceStatus]]
    # `POST /-/reload`, when enabled: returns None on success, else the reason it failed.
    reload: Callable[[], str | None] | None = None
    # Moves whenever what /metrics shows may have changed (a cycle, a reload); None: only the
    # age of a rendering bounds how long it is shared.
    generation: Callable[[], int] | None = None
    # Why the process is not healthy (see exporter.health); empty: it is. None: alive is enough.
    health: Callable[[], Sequence[str]] | None = None


def parse_listen_address(address: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` (all interfaces) or `[::1]:PORT`."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--web.listen-address {address!r}: expected HOST:PORT")
    host = host.strip("[]")
    return host or "0.0.0.0", int(port)  # noqa: S104 - the documented meaning of ":PORT"


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one client may hold of the server (flags `--web.*`, defaults in the README)."""

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


class _Reader:
    """The request side of a connection: its own buffer, so what is left after a request is
    known, and a deadline for the whole request rather than for each wait for a byte (a client
    sending a header byte every few seconds would otherwise hold a worker for ever)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self.deadline = 0.0

    def pending(self) -> bool:
        if self._buffer:
            return True
        if isinstance(self._sock, ssl.SSLSocket) and self._sock.pending():
            return True
        readable, _, _ = select.select([self._sock], [], [], 0)
        return bool(readable)

    def _fill(self) -> bool:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request not complete within the read timeout")
        self._sock.settimeout(left)
        chunk = self._sock.recv(65536)
        self._buffer += chunk
        return bool(chunk)

    def readline(self, limit: int = -1) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0 and (limit < 0 or end < limit):
                return self._take(end + 1)
            if 0 <= limit <= len(self._buffer):
                return self._take(limit)
            if not self._fill():
                return self._take(len(self._buffer))

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            if not self._fill():
                break
        return self._take(len(self._buffer) if size < 0 else min(size, len(self._buffer)))

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def close(self) -> None:
        return None


class _Connection:
    def __init__(self, sock: socket.socket, address: Any) -> None:
        self.sock = sock
        self.address = address
        self.reader = _Reader(sock)
        self.wrapped = False


log = get_logger("exporter.server")
_TEXT = {"Content-Type": "text/plain; charset=utf-8"}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def __init__(self, connection: _Connection, server: _Server) -> None:
        self._connection = connection
        super().__init__(connection.sock, connection.address, server)

    def setup(self) -> None:
        super().setup()
        self.rfile.close()
        self.rfile = self._connection.reader  # type: ignore[assignment]
        self.connection.settimeout(self.server.limits.read_timeout)

    def handle(self) -> None:
        """Requests while they are already there; a connection waiting for its next request
        goes back to the server's idle set instead of holding this thread."""
        reader = self._connection.reader
        while True:
            reader.deadline = time.monotonic() + self.server.limits.read_timeout
            self.close_connection = True
            try:
                self.handle_one_request()
            except TimeoutError:
                self.close_connection = True
                return
            if self.close_connection or not reader.pending():
                return

    def _authorized(self) -> bool:
        auth = self.server.auth
        if auth is None:
            return True
        verdict = auth.check(self.headers.get("Authorization"), str(self.client_address[0]))
        if verdict is Verdict.ALLOWED:
            return True
        if verdict is Verdict.LIMITED:
            self._send(
                429,
                b"too many failed attempts\n",
                {"Content-Type": "text/plain; charset=utf-8", "Retry-After": "1"},
            )
            return False
        self._send(
            401,
            b"unauthorized\n",
            {
                "Content-Type": "text/plain; charset=utf-8",
                "WWW-Authenticate": 'Basic realm="workflow-runs-exporter"',
            },
        )
        return False

    def do_POST(self) -> None:
        # The body is never read: whatever follows must not be taken for the next request.
        self.close_connection = True
        if not self._authorized():
            return
        path = self.path.split("?", 1)[0]
        reload = self.server.hooks.reload
        if path == "/-/reload" and reload is not None:
            problem = reload()
            if problem is None:
                self._send(200, b"reloaded\n", {"Content-Type": "text/plain; charset=utf-8"})
            else:
                body = f"reload failed: {problem}\n".encode()
                self._send(400, body, {"Content-Type": "text/plain; charset=utf-8"})
        else:
            self._send(404, b"not found\n", {"Content-Type": "text/plain; charset=utf-8"})

    def do_GET(self) -> None:
        if not self._authorized():
            return
        path, _, query = self.path.partition("?")
        hooks = self.server.hooks
        if path == "/metrics":
            gzipped = gzip_wanted(self.headers.get("Accept-Encoding", ""))
            # As client_python's own handler: `?name[]=a&name[]=b` keeps only those series.
            names = parse_qs(query).get("name[]")
            try:
                content_type, body = self.server.metrics.get(
                    self.headers.get("Accept", ""), gzipped, names
                )
            except Exception:
                # A scrape that cannot be rendered says so, loudly, instead of hanging up.
                log.exception("rendering /metrics failed")
                self._send(500, b"rendering /metrics failed; see the log\n", _TEXT)
                return
            headers = {"Content-Type": content_type}
            if gzipped:
                headers["Content-Encoding"] = "gzip"
            self._send(200, body, headers)
        elif path == "/healthz":
            problems = hooks.health() if hooks.health is not None else ()
            if problems:
                reasons = "".join(f"unhealthy: {problem}\n" for problem in problems)
                self._send(503, reasons.encode(), _TEXT)
            else:
                self._send(200, b"ok\n", _TEXT)
        elif path == "/readyz":
            ready = hooks.ready()
            self._send(
                200 if ready else 503,
                b"ready\n" if ready else b"not ready: a source has not been collected yet\n",
                {"Content-Type": "text/plain; charset=utf-8"},
            )
        elif path == "/":
            body = render(hooks.sources()).encode()
            self._send(200, body, {"Content-Type": "text/html; charset=utf-8"})
        elif (shipped := shipped_file(path)) is not None:
            self._send(200, shipped[0], {"Content-Type": shipped[1]})
        else:
            self._send(404, b"not found\n", {"Content-Type": "text/plain; charset=utf-8"})

    def _send(self, code: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(code)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return  # scrapes every few seconds would drown the logs


# The OpenMetrics content type repeats the `version=` a client asks for, so clients could
# otherwise make the server keep one rendering per made-up version; scrapers use two or three.
_SHARED_FORMATS = 8


class RenderedMetrics:
    """/metrics rendered once and shared: by the concurrent scrapes (one renders, the others
    wait for it) and by the scrapes that follow, until the state's generation changes or
    `max_age` passes (the exporter's own metrics and the age gauges move without a cycle).
    Gzip is computed once per render too. A scrape asking for some series only (`name[]`), or
    for a format past the first few, is rendered on its own and not counted in `renders`."""

    def __init__(
        self,
        registry: Exposable,
        generation: Callable[[], int] | None = None,
        max_age: float = 1.0,
    ) -> None:
        self._registry = registry
        self._generation = generation or (lambda: 0)
        self._max_age = max_age
        self._entries: dict[str, _Rendered] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self.renders = 0

    def get(
        self, accept: str, gzipped: bool, names: Sequence[str] | None = None
    ) -> tuple[str, bytes]:
        """The body for a scrape; `names` (its `name[]` parameters) keeps only those series."""
        encoder, content_type = encoder_for(accept)
        if names:
            # Rendered for this request alone: caching by name set would let clients choose how
            # many renderings the exporter keeps.
            body = encoder(self._registry.restricted_registry(names))
            return content_type, gzip.compress(body, compresslevel=1) if gzipped else body
        with self._locks_lock:
            lock = self._locks.get(content_type)
            if lock is None and len(self._locks) < _SHARED_FORMATS:
                lock = self._locks[content_type] = threading.Lock()
        if lock is None:
            body = encoder(self._registry)
            return content_type, gzip.compress(body, compresslevel=1) if gzipped else body
        with lock:
            entry = self._entries.get(content_type)
            generation = self._generation()
            now = time.monotonic()
            if entry is None or entry.generation != generation or now - entry.at > self._max_age:
                entry = _Rendered(generation, now, encoder(self._registry))
                self._entries[content_type] = entry
                self.renders += 1
            if not gzipped:
                return content_type, entry.body
            if entry.gzipped is None:
                entry.gzipped = gzip.compress(entry.body, compresslevel=1)
            return content_type, entry.gzipped


@dataclass(slots=True)
class _Rendered:
    generation: int
    at: float
    body: bytes
    gzipped: bytes | None = None


class _Server(ThreadingHTTPServer):
    """Connections wait for their requests in one selector, not each in a thread: a client that
    opens sockets and sends nothing costs a file descriptor until `read_timeout`, never a
    thread. A connection with data goes to one of `workers` threads, which serves what is there
    and hands it back."""

    daemon_threads = True
    allow_reuse_address = True
    # Connections the kernel holds before they are accepted: a burst of scrapes and probes is
    # not refused while the loop is busy.
    request_queue_size = 1024

    def __init__(
        self,
        address: tuple[str, int],
        hooks: ServerHooks,
        ssl_context: ssl.SSLContext | None = None,
        auth: BasicAuth | None = None,
        limits: ServerLimits | None = None,
        handler: type[_Handler] = _Handler,
    ) -> None:
        self.hooks = hooks
        self.handler = handler  # another endpoint set (the webhook listener) on the same loop
        self.ssl_context = ssl_context
        self.auth = auth
        self.limits = limits or ServerLimits()
        self.metrics = RenderedMetrics(
            hooks.registry, hooks.generation, self.limits.metrics_max_age
        )
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        # Before the bind: a refused bind (the port taken) closes the server, waker included, and
        # the caller gets the OSError.
        self._waker, self._wake_end = socket.socketpair()
        self._waker.setblocking(False)
        self._wake_end.setblocking(False)
        super().__init__(address, handler)
        self._ready: queue.SimpleQueue[_Connection | None] = queue.SimpleQueue()
        self._returned: queue.SimpleQueue[_Connection] = queue.SimpleQueue()
        # Connections waiting for a request, by their socket, with when they expire; in the
        # order they started waiting, so the first is the one idle longest.
        self._idle: dict[socket.socket, tuple[_Connection, float]] = {}
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
                self.shutdown_request(sock)
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
                self.shutdown_request(oldest)
                continue
            self._wait_for_request(selector, _Connection(sock, address), self.limits.read_timeout)

    def _wait_for_request(
        self, selector: selectors.BaseSelector, connection: _Connection, timeout: float
    ) -> None:
        while len(self._idle) >= self.limits.max_connections:
            oldest = next(iter(self._idle))
            selector.unregister(oldest)
            del self._idle[oldest]
            self.shutdown_request(oldest)
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
            self.shutdown_request(sock)

    def _work(self) -> None:
        while True:
            connection = self._ready.get()
            if connection is None:
                return
            keep = False
            # A client's trouble (a reset, a bad request line) ends its connection, nothing more.
            with contextlib.suppress(Exception):
                keep = self._serve(connection)
            if keep and not self._stopping.is_set():
                self._returned.put(connection)
                with contextlib.suppress(OSError):
                    self._waker.send(b"\0")
            else:
                self.shutdown_request(connection.sock)

    def _serve(self, connection: _Connection) -> bool:
        connection.sock.settimeout(self.limits.read_timeout)
        if self.ssl_context is not None and not connection.wrapped:
            # The TLS handshake runs here, in a worker, bounded like a request.
            try:
                connection.sock = self.ssl_context.wrap_socket(connection.sock, server_side=True)
            except (ssl.SSLError, OSError):
                return False  # plain HTTP on the TLS port, no client certificate, ...: refused
            connection.reader = _Reader(connection.sock)
            connection.wrapped = True
        handler = self.handler(connection, self)
        return not handler.close_connection

    def shutdown(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._waker.send(b"\0")
        self._stopped.wait()

    def server_close(self) -> None:
        super().server_close()
        self._waker.close()
        self._wake_end.close()


class Listener:
    """A server on the hardened loop, served from a thread of its own: /metrics, or another
    listener built on the same loop (the webhooks')."""

    def __init__(self, httpd: _Server, *, tls: bool, thread_name: str) -> None:
        self.tls = tls
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name=thread_name, daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    def url(self, path: str = "/") -> str:
        host = self.host if self.host not in ("0.0.0.0", "::") else "127.0.0.1"  # noqa: S104
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{path}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class MetricsServer(Listener):
    def __init__(
        self,
        listen_address: str,
        hooks: ServerHooks,
        web_config: WebConfig | None = None,
        limits: ServerLimits | None = None,
    ) -> None:
        tls = web_config.tls_server_config if web_config else None
        users = web_config.basic_auth_users if web_config else {}
        httpd = _Server(
            parse_listen_address(listen_address),
            hooks,
            ssl_context=ssl_context(tls) if tls else None,
            auth=BasicAuth(users) if users else None,
            limits=limits,
        )
        super().__init__(httpd, tls=tls is not None, thread_name="http")

    @property
    def metrics(self) -> RenderedMetrics:
        return self._httpd.metrics

    @property
    def auth(self) -> BasicAuth | None:
        return self._httpd.auth

    def start(self) -> None:
        settle_heap()
        raise_fd_limit()
        super().start()


def raise_fd_limit() -> None:
    """The soft limit on open files up to the hard one: every connection the server holds, idle
    ones included, is a file descriptor, and the usual soft limit of 1024 is soon reached."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass


_settled = threading.Event()


def settle_heap() -> None:
    """Moves every object alive now out of the cyclic garbage collector's reach, once per process.

    Serving starts once start-up is done: modules, models and the state loaded stay for the
    life of the process, yet each full collection would walk them all again, and a scrape that
    triggers one pauses for it (tens of milliseconds: most of a large scrape's p99). Objects
    freed by reference counting are still freed; only cycles among them would stay, which is why
    this happens once (a process starting several servers, a test run, does not freeze again).
    """
    if not _settled.is_set():
        _settled.set()
        gc.freeze()
