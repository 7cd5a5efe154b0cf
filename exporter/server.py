"""HTTP endpoints: /metrics, /healthz, /readyz and a landing page with per-source status."""

from __future__ import annotations

import gc
import gzip
import html
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, choose_encoder

from exporter import __version__
from exporter.exposition import generate_text
from exporter.webconfig import BasicAuth, WebConfig, ssl_context


@dataclass(frozen=True, slots=True)
class SourceStatus:
    name: str
    provider: str
    up: bool | None  # None: not collected yet
    last_error: str | None
    last_collection: float | None
    active: int
    counted_last_cycle: int


@dataclass(frozen=True, slots=True)
class ServerHooks:
    registry: CollectorRegistry
    ready: Callable[[], bool]
    sources: Callable[[], Sequence[SourceStatus]]
    # `POST /-/reload`, when enabled: returns None on success, else the reason it failed.
    reload: Callable[[], str | None] | None = None


def parse_listen_address(address: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` (all interfaces) or `[::1]:PORT`."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--web.listen-address {address!r}: expected HOST:PORT")
    host = host.strip("[]")
    return host or "0.0.0.0", int(port)  # noqa: S104 - the documented meaning of ":PORT"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _authorized(self) -> bool:
        auth = self.server.auth
        if auth is None or auth.check(self.headers.get("Authorization")):
            return True
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
        path = self.path.split("?", 1)[0]
        hooks = self.server.hooks
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            # The classic text format (what Prometheus asks for by default) takes the fast path.
            text = content_type == CONTENT_TYPE_LATEST
            body = generate_text(hooks.registry) if text else encoder(hooks.registry)
            headers = {"Content-Type": content_type}
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                body = gzip.compress(body, compresslevel=1)
                headers["Content-Encoding"] = "gzip"
            self._send(200, body, headers)
        elif path == "/healthz":
            self._send(200, b"ok\n", {"Content-Type": "text/plain; charset=utf-8"})
        elif path == "/readyz":
            ready = hooks.ready()
            self._send(
                200 if ready else 503,
                b"ready\n" if ready else b"not ready: a source has not been collected yet\n",
                {"Content-Type": "text/plain; charset=utf-8"},
            )
        elif path == "/":
            body = _landing_page(hooks.sources()).encode()
            self._send(200, body, {"Content-Type": "text/html; charset=utf-8"})
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        hooks: ServerHooks,
        ssl_context: ssl.SSLContext | None = None,
        auth: BasicAuth | None = None,
    ) -> None:
        self.hooks = hooks
        self.ssl_context = ssl_context
        self.auth = auth
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the connection's own thread: a client that stalls it
        # holds up nobody else.
        if self.ssl_context is not None:
            request.settimeout(10)
            try:
                request = self.ssl_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return  # plain HTTP on the TLS port, no client certificate, ...: refused
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client hanging up mid-response is not the server's problem


class MetricsServer:
    def __init__(
        self, listen_address: str, hooks: ServerHooks, web_config: WebConfig | None = None
    ) -> None:
        tls = web_config.tls_server_config if web_config else None
        users = web_config.basic_auth_users if web_config else {}
        self.tls = tls is not None
        self._httpd = _Server(
            parse_listen_address(listen_address),
            hooks,
            ssl_context=ssl_context(tls) if tls else None,
            auth=BasicAuth(users) if users else None,
        )
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="http", daemon=True)

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
        settle_heap()
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


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


def _landing_page(sources: Sequence[SourceStatus]) -> str:
    rows = []
    now = time.time()
    for s in sources:
        state = "pending" if s.up is None else ("up" if s.up else "down")
        ago = f"{now - s.last_collection:.0f}s ago" if s.last_collection else "never"
        rows.append(
            "<tr>"
            f"<td>{html.escape(s.name)}</td><td>{html.escape(s.provider)}</td>"
            f'<td class="{state}">{state}</td><td>{ago}</td><td>{s.active}</td>'
            f"<td>{html.escape(s.last_error or '')}</td>"
            "</tr>"
        )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>workflow-runs-exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.3em .8em;text-align:left}}
.up{{color:#070}}.down{{color:#b00}}.pending{{color:#777}}</style></head>
<body><h1>workflow-runs-exporter {html.escape(__version__)}</h1>
<p><a href="/metrics">/metrics</a> · <a href="/healthz">/healthz</a> ·
<a href="/readyz">/readyz</a></p>
<table><tr><th>source</th><th>provider</th><th>state</th><th>last collection</th>
<th>active runs</th><th>last error</th></tr>
{"".join(rows)}
</table></body></html>
"""
