"""HTTP endpoints: /metrics, /healthz, /readyz and a landing page with per-source status.

`GET` and `HEAD` (the same answer without its body) on each page, `POST /-/reload` when enabled;
another method on a page is a 405 naming the ones allowed. With basic auth on, every request is
checked before anything else is said about it. Served on `exporter.web.httploop`'s loop.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import parse_qs

from prometheus_client.metrics_core import Metric

from exporter.config.webconfig import BasicAuth, Verdict, WebConfig, ssl_context
from exporter.core.heap import settle_start_up
from exporter.core.logs import get_logger
from exporter.exposition.formats import WrittenFamily, collected, format_for, gzip_wanted
from exporter.web.httpframing import BodySource, Request, Response, text_response
from exporter.web.httploop import (
    ConnectionLoop,
    Listener,
    ServerLimits,
    parse_listen_address,
    raise_fd_limit,
)
from exporter.web.landing import SourceStatus, render, shipped_file

__all__ = [
    "Exposable",
    "MetricsEndpoints",
    "MetricsServer",
    "RenderedMetrics",
    "ServerHooks",
    # The limits the `--web.*` flags set are the loop's, given here with the server they bound.
    "ServerLimits",
]

log = get_logger("exporter.server")

_PAGE_METHODS = ("GET", "HEAD")


class Exposable(Protocol):
    """What /metrics renders: a registry, or one whose families come written with each source's
    static labels (exporter.exposition.staticlabels)."""

    def collect(self) -> Iterable[Metric]: ...


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
    # Why the process is not healthy (see exporter.web.health); empty: it is. None: alive is enough.
    health: Callable[[], Sequence[str]] | None = None


class RenderedMetrics:
    """/metrics rendered once and shared: by the concurrent scrapes (one renders, the others
    wait for it) and by the scrapes that follow, until the state's generation changes or
    `max_age` passes (the exporter's own metrics and the age gauges move without a cycle).

    A rendering collects the families once (`collections`); each format is written from them
    when first asked for (`renders`: at most two a rendering), and gzipped once. A scrape asking
    for some series only (`name[]`) is written from the same families for itself alone, and not
    counted in `renders`: caching by name set would let clients choose how many bodies the
    exporter keeps."""

    def __init__(
        self,
        registry: Exposable,
        generation: Callable[[], int] | None = None,
        max_age: float = 1.0,
    ) -> None:
        self._registry = registry
        self._generation = generation or (lambda: 0)
        self._max_age = max_age
        self._current: _Rendering | None = None
        self._lock = threading.Lock()
        self.collections = 0
        self.renders = 0

    def get(
        self, accept: str, gzipped: bool, names: Sequence[str] | None = None
    ) -> tuple[str, bytes]:
        """The content type and body for a scrape; `names` (its `name[]` parameters) keeps only
        those series."""
        text_format = format_for(accept)
        content_type = text_format.content_type
        with self._lock:
            rendering = self._rendering()
            if not names:
                body = rendering.bodies.get(content_type)
                if body is None:
                    body = rendering.bodies[content_type] = text_format.write(rendering.families)
                    self.renders += 1
                if not gzipped:
                    return content_type, body
                packed = rendering.gzipped.get(content_type)
                if packed is None:
                    packed = rendering.gzipped[content_type] = gzip.compress(body, compresslevel=1)
                return content_type, packed
        kept = [
            family
            for whole in rendering.families
            if (family := whole.restricted(names)) is not None
        ]
        body = text_format.write(kept)
        return content_type, gzip.compress(body, compresslevel=1) if gzipped else body

    def _rendering(self) -> _Rendering:
        """The current rendering, collected again when stale (the caller holds the lock)."""
        current = self._current
        generation = self._generation()
        now = time.monotonic()
        if current is None or current.generation != generation or now - current.at > self._max_age:
            current = self._current = _Rendering(generation, now, collected(self._registry))
            self.collections += 1
        return current


@dataclass(slots=True)
class _Rendering:
    generation: int
    at: float
    families: list[WrittenFamily]
    # Per content type: the body written, and gzipped.
    bodies: dict[str, bytes] = field(default_factory=dict)
    gzipped: dict[str, bytes] = field(default_factory=dict)


class MetricsEndpoints:
    """The answers of the /metrics listener."""

    def __init__(
        self, hooks: ServerHooks, metrics: RenderedMetrics, auth: BasicAuth | None
    ) -> None:
        self._hooks = hooks
        self._metrics = metrics
        self._auth = auth
        self._pages: dict[str, Callable[[Request], Response]] = {
            "/metrics": self._scrape,
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/": self._landing,
        }

    def answer(self, request: Request, body: BodySource) -> Response:
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        path = request.path
        reload = self._hooks.reload
        if path == "/-/reload" and reload is not None:
            if request.method != "POST":
                return _not_allowed("POST")
            if request.has_body:
                return text_response(400, "POST /-/reload takes no body")
            problem = reload()
            if problem is not None:
                return text_response(400, f"reload failed: {problem}")
            return text_response(200, "reloaded")
        page = self._pages.get(path)
        if page is not None:
            return page(request) if request.method in _PAGE_METHODS else _not_allowed()
        shipped = shipped_file(path)
        if shipped is None:
            return text_response(404, "not found")
        if request.method not in _PAGE_METHODS:
            return _not_allowed()
        return Response(200, shipped[0], (("Content-Type", shipped[1]),))

    def _unauthorized(self, request: Request) -> Response | None:
        if self._auth is None:
            return None
        verdict = self._auth.check(request.headers.get("authorization"), request.client)
        if verdict is Verdict.ALLOWED:
            return None
        if verdict is Verdict.LIMITED:
            return text_response(429, "too many failed attempts", {"Retry-After": "1"})
        return text_response(
            401,
            "unauthorized",
            {"WWW-Authenticate": 'Basic realm="workflow-runs-exporter"'},
        )

    def _scrape(self, request: Request) -> Response:
        gzipped = gzip_wanted(request.headers.get("accept-encoding", ""))
        # As client_python's own handler: `?name[]=a&name[]=b` keeps only those series.
        names = parse_qs(request.query).get("name[]")
        try:
            content_type, body = self._metrics.get(
                request.headers.get("accept", ""), gzipped, names
            )
        except Exception:
            # A scrape that cannot be rendered says so, loudly, instead of hanging up.
            log.exception("rendering /metrics failed")
            return text_response(500, "rendering /metrics failed; see the log")
        headers = [("Content-Type", content_type)]
        if gzipped:
            headers.append(("Content-Encoding", "gzip"))
        return Response(200, body, tuple(headers))

    def _healthz(self, request: Request) -> Response:
        health = self._hooks.health
        problems = health() if health is not None else ()
        if problems:
            return text_response(503, "\n".join(f"unhealthy: {p}" for p in problems))
        return text_response(200, "ok")

    def _readyz(self, request: Request) -> Response:
        if self._hooks.ready():
            return text_response(200, "ready")
        return text_response(503, "not ready: a source has not been collected yet")

    def _landing(self, request: Request) -> Response:
        body = render(self._hooks.sources()).encode()
        return Response(200, body, (("Content-Type", "text/html; charset=utf-8"),))


def _not_allowed(*methods: str) -> Response:
    allowed = methods or _PAGE_METHODS
    return text_response(405, "method not allowed", {"Allow": ", ".join(allowed)})


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
        limits = limits or ServerLimits()
        self.metrics = RenderedMetrics(hooks.registry, hooks.generation, limits.metrics_max_age)
        self.auth = BasicAuth(users) if users else None
        loop = ConnectionLoop(
            parse_listen_address(listen_address),
            MetricsEndpoints(hooks, self.metrics, self.auth),
            ssl_context=ssl_context(tls) if tls else None,
            limits=limits,
        )
        super().__init__(loop, tls=tls is not None, thread_name="http")

    def start(self) -> None:
        settle_start_up()
        raise_fd_limit()
        super().start()
