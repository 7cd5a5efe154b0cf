"""HTTP plumbing every simulator shares: auth, fault injection, page shifting, a request log,
control endpoints under `/_sim/`, and an optional real-time driver. A provider's simulator
subclasses `SimulatorServer` and only speaks its wire format (`route`, `render`, errors).
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
import socket
import threading
import time
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, urlsplit

from exporter.core.model import RunStatus
from exporter.simulator.distrust import dated_ahead, listed_time
from exporter.simulator.webhooks import WebhookFaults, WebhookSender
from exporter.simulator.world import RunIds, SimRun, Vocabulary, World

FAULT_KINDS = (
    "status",
    "delay",
    "malformed_json",
    "truncated",
    "reset",
    "drip",
    "endless",
    "gzip_bomb",
)
# Faults answered by the connection handler itself rather than with a response.
STREAM_FAULTS = ("reset", "drip", "endless", "gzip_bomb")
# Faults that spoil the body of whatever answer the request would otherwise get.
BODY_FAULTS = ("malformed_json", "truncated")
# How far the clock moves before page-shifting arrivals: they must sort strictly before every run
# already listed (a tie on createdAt would be broken by id and land anywhere in the list).
ARRIVAL_SPACING_SECONDS = 0.001

PageZero = Literal["error", "as_first", "empty"]
# What a page-numbered list reports as its totals: the truth, nothing (0) while it lists items,
# a negative count (-1), or an absurd one.
Totals = Literal["true", "low", "negative", "absurd"]
ABSURD_TOTAL = 10**18
# A number no float holds and no API should send: what `huge_numbers` puts in numeric fields.
HUGE = 10**400


@dataclass(frozen=True)
class ApiVariant:
    """How a simulated API answers the questions its provider's docs leave open."""

    # List order by creation time (page-numbered lists only).
    order: Literal["newest_first", "oldest_first"] = "newest_first"
    # None: the simulator's usual numbering (1); 0: pages count from 0.
    first_page: int | None = None
    # How a 1-based list answers page=0; None: the simulator's usual (`page_zero_default`).
    page_zero: PageZero | None = None
    # At most this many items a page, while the answer echoes the size asked for; totals stay
    # true and page counts follow the cap.
    page_cap: int | None = None
    # date_only: run timestamps as "YYYY-MM-DD"; no_offset: ISO without Z or offset (UTC values).
    timestamps: Literal["full", "date_only", "no_offset"] = "full"
    omit_started_at: bool = False  # runs come without a `started_at` key at all
    rejected: bool = False  # some runs end rejected and carry an error like failed ones
    stale_updated_at: bool = False  # changes never bump updatedAt: it stays the creation time
    # Every fifth run is a nested run of the run created before it, shown in that run's first
    # step (Plextera's `nestedRuns`); `unlisted`: the top-level list does not show it.
    nested_runs: Literal["none", "listed", "unlisted"] = "none"
    # The totals a page-numbered list reports (items and pages alike); the items stay true.
    totals: Totals = "true"
    # A cursor-paged list whose last page, instead of no token, gives the token the first page
    # gave (it wraps around): every item is listed once, then the cursor goes round.
    cursor_cycle: bool = False
    # Numeric fields hold absurd values (10^400, negatives, NaN and Infinity as numbers and as
    # strings), spread over the runs by `absurd_number`, and the page numbers too.
    huge_numbers: bool = False
    # How the single-run endpoint answers where a client guesses its path: `absent` 404s every
    # id (the real one lives elsewhere or nowhere), `refused` answers 405.
    lookups: Literal["served", "absent", "refused"] = "served"
    # One run in twenty is dated an hour ahead (a platform node whose clock runs fast).
    clock_ahead: bool = False
    # How runs are numbered (`world.RunIds`): unique in the app, per workflow (Cortex: a run is
    # addressed under its workflow), or in pairs that differ only in a control character.
    run_ids: RunIds = "global"


def reported_totals(variant: ApiVariant, items: int, pages: int) -> tuple[int, int]:
    """(items, pages) as the variant's list reports them, for a list truly holding `items` on
    `pages` pages."""
    if variant.totals == "low":
        return 0, 0
    if variant.totals == "negative":
        return -1, -1
    if variant.totals == "absurd":
        return ABSURD_TOTAL, ABSURD_TOTAL
    return items, pages


def absurd_number(run_id: str, slot: int) -> Any | None:
    """The absurd value a `huge_numbers` API puts in numeric field `slot` of a run, or None for
    the true one: each run gets a different mix, so some fields stay true on every page."""
    values: tuple[Any, ...] = (HUGE, -7, float("nan"), "NaN", float("inf"), "Infinity", None)
    return values[(sum(map(ord, run_id)) + slot) % len(values)]


def render_time(value: datetime | None, variant: ApiVariant) -> str | None:
    """A run timestamp as the variant's API writes it (the world's times are all UTC)."""
    if value is None:
        return None
    if variant.timestamps == "date_only":
        return value.astimezone(UTC).date().isoformat()
    if variant.timestamps == "no_offset":
        return value.astimezone(UTC).replace(tzinfo=None).isoformat()
    return value.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class PageWindow:
    """The slice of a list one page request gets, and the page number the answer echoes."""

    page: int
    start: int
    stop: int
    per_page: int  # what a full page holds: the cap when it is below the size asked for

    def pages(self, total: int) -> int:
        return math.ceil(total / self.per_page)


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the provider's prefix
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class Response:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    kind: str
    params: dict[str, Any]


class FaultPlan:
    """Faults queued for the next API requests, applied in order, counted when applied."""

    def __init__(self) -> None:
        self._queue: list[Fault] = []
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()

    def inject(self, kind: str, count: int = 1, **params: Any) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r} (one of {', '.join(FAULT_KINDS)})")
        with self._lock:
            self._queue.extend(Fault(kind, dict(params)) for _ in range(count))

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def take(self) -> Fault | None:
        with self._lock:
            if not self._queue:
                return None
            fault = self._queue.pop(0)
            self.injected[fault.kind] += 1
            return fault

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)


class RateLimit:
    """The provider's documented limit: at most `limit` requests in any `per` seconds."""

    def __init__(self, limit: int, per: float) -> None:
        self.limit = limit
        self.per = per
        self._times: list[float] = []
        self._lock = threading.Lock()
        self.rejected = 0

    def admit(self) -> float | None:
        """None if the request may pass, else the seconds until it would."""
        now = time.monotonic()
        with self._lock:
            self._times = [t for t in self._times if now - t < self.per]
            if len(self._times) < self.limit:
                self._times.append(now)
                return None
            self.rejected += 1
            return self.per - (now - self._times[0])


class SimulatorServer:
    provider: ClassVar[str]
    # The class's is the provider's usual vocabulary; an instance's may differ by its variant.
    vocabulary: Vocabulary
    # The ways this provider's API might answer what its docs leave open, by name.
    variants: ClassVar[Mapping[str, ApiVariant]] = {}
    # How a 1-based list answers page=0 unless the variant says otherwise.
    page_zero_default: ClassVar[PageZero] = "error"
    path_prefix: ClassVar[str] = ""
    unknown_status_value: ClassVar[str] = "MYSTERY_STATE"
    # The timestamp a client pages by: the field a "missing field" fault removes.
    cursor_field: ClassVar[str] = "created_at"
    # What `endpoint_of` calls a single-run request (the `lookups` variant answers those).
    run_endpoint: ClassVar[str] = ""
    # (requests, per seconds) the API documents, enforced with 429 unless disabled.
    documented_rate_limit: ClassVar[tuple[int, float] | None] = None

    def __init__(
        self,
        *,
        seed: int = 1,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        workflows: int = 4,
        arrival_rate_per_min: float = 6.0,
        history_seconds: float = 0.0,
        enforce_rate_limit: bool = True,
        rate_limit_window_scale: float = 1.0,
        variant: ApiVariant | None = None,
    ) -> None:
        """`history_seconds`: the world starts that long ago and has lived up to now."""
        self.api_key = api_key or f"sim-{self.provider}-{secrets.token_hex(12)}"
        self.variant = variant or ApiVariant()
        self.vocabulary = self.vocabulary_for(self.variant)
        self.world = World(
            self.vocabulary,
            seed=seed,
            workflows=workflows,
            arrival_rate_per_min=arrival_rate_per_min,
            start=datetime.now(tz=UTC) - timedelta(seconds=history_seconds),
            nested_every=0 if self.variant.nested_runs == "none" else 5,
            nested_hidden=self.variant.nested_runs == "unlisted",
            run_ids=self.variant.run_ids,
        )
        if history_seconds:
            self.world.advance(history_seconds)
        self.faults = FaultPlan()
        # A scaled window keeps the documented rate but lets a short test fill the window.
        limit = self.documented_rate_limit
        self.rate_limit = (
            RateLimit(
                max(1, round(limit[0] * rate_limit_window_scale)),
                limit[1] * rate_limit_window_scale,
            )
            if limit and enforce_rate_limit
            else None
        )
        self.arrivals_per_list_request = 0
        # Runs deleted before each list request: unfinished ones, so the truth stays exact.
        self.deletions_per_list_request = 0
        # Simulated seconds that pass with each list request: runs change while a client pages.
        self.advance_per_list_request = 0.0
        self.last_runs_page: tuple[Any, dict[str, str]] | None = None
        self._bad_records = 0
        self._broken = 0
        self._requests: list[Request] = []
        self._lock = threading.Lock()
        self._httpd = _Server((host, port), self)
        # stop() waits for the serve loop to notice, which it does once per poll interval: short,
        # so a test suite that starts hundreds of simulators does not wait half a second on each.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._driver: threading.Thread | None = None
        self._driver_stop = threading.Event()
        self.webhooks: WebhookSender | None = None

    # Lifecycle --------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What the exporter's `base_url` setting should be."""
        return self.root_url + self.path_prefix

    def start(self) -> SimulatorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stop_driver()
        if self.webhooks is not None:
            self.webhooks.stop()
        # shutdown() waits for serve_forever(), which never ran if the server was not started.
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start_driver(self, speed: float = 1.0, tick: float = 1.0) -> None:
        """Advances the world in real time (`speed` simulated seconds per real second)."""

        def drive() -> None:
            while not self._driver_stop.wait(tick):
                self.world.advance(tick * speed)

        self.stop_driver()  # one driver at a time, or the world would run at twice the speed
        self._driver_stop.clear()
        self._driver = threading.Thread(target=drive, daemon=True, name=f"{self.provider}-driver")
        self._driver.start()

    def stop_driver(self) -> None:
        self._driver_stop.set()
        if self._driver is not None:
            self._driver.join()
            self._driver = None

    # Webhooks ---------------------------------------------------------------------------------

    def send_webhooks(
        self, url: str, secret: str, faults: WebhookFaults | None = None, seed: int = 1
    ) -> WebhookSender:
        """Signs and sends an event to `url` as each run finishes (providers that have them)."""
        sender = WebhookSender(url, secret, self.webhook_event, self.webhook_headers, faults, seed)
        with self.world.lock:
            if self.webhooks is not None:
                self.world.finish_listeners.remove(self.webhooks.run_finished)
                self.webhooks.stop()
            self.webhooks = sender
            self.world.finish_listeners.append(sender.run_finished)
        return sender

    def webhook_event(self, run: SimRun, event_id: str) -> tuple[str, dict[str, Any]] | None:
        """(event type, body) for a run that finished; None: this API sends no webhooks."""
        return None

    def webhook_headers(self, raw: bytes, timestamp: int, secret: bytes) -> dict[str, str]:
        raise NotImplementedError(f"{self.provider} sends no webhooks")

    # Variants ---------------------------------------------------------------------------------

    @classmethod
    def vocabulary_for(cls, variant: ApiVariant) -> Vocabulary:
        """The vocabulary an instance with this variant speaks."""
        return cls.vocabulary

    @property
    def first_page(self) -> int:
        return 1 if self.variant.first_page is None else self.variant.first_page

    def stamp(self, value: datetime | None) -> str | None:
        """A run timestamp as this API writes it."""
        return render_time(value, self.variant)

    def number(self, value: Any, run_id: str, slot: int) -> Any:
        """A run's numeric field `slot` as this API writes it (absurd under `huge_numbers`)."""
        if not self.variant.huge_numbers:
            return value
        absurd = absurd_number(run_id, slot)
        return value if absurd is None else absurd

    def listed_runs(self) -> list[SimRun]:
        """Every run, in the order this API's page-numbered lists give them (the world's cached
        list itself when ascending: read it, never change it)."""
        ascending = self.world.sorted_ascending("created")[0]
        if self.world.nested_hidden:
            ascending = [run for run in ascending if not run.hidden]
        if self.variant.clock_ahead:
            # Sorted by the time the API shows, as a real list would: the fast node's runs first.
            ascending = sorted(ascending, key=listed_time)
        return ascending if self.variant.order == "oldest_first" else ascending[::-1]

    def page_window(self, page: int, size: int) -> PageWindow | None:
        """Which items page `page` of `size` gets under this variant; None: the API refuses that
        page number (the provider answers with its own error)."""
        variant = self.variant
        per_page = min(size, variant.page_cap) if variant.page_cap else size
        first = self.first_page
        if page < first:
            zero = variant.page_zero or self.page_zero_default
            if first <= 0 or zero == "error" or (zero == "empty" and page < 0):
                return None
            if zero == "empty":
                return PageWindow(page, 0, 0, per_page)
            page = first
        start = (page - first) * per_page
        return PageWindow(page, start, start + per_page, per_page)

    # Knobs ------------------------------------------------------------------------------------

    def unknown_status(self, n: int) -> list[SimRun]:
        """Gives n runs a native status the provider's table does not know."""
        with self.world.lock:
            candidates = self.world.runs_newest_first()
            chosen = self.world.rng.sample(candidates, min(n, len(candidates)))
            now = self.world.now()
            for run in chosen:
                run.native_status = self.unknown_status_value
                run.updated_at = now
            self.world.touch()
            return chosen

    def bad_record(self, n: int = 1) -> None:
        """The next n list responses each carry one item with a broken field."""
        with self._lock:
            self._bad_records += n

    def source_settings(self) -> dict[str, Any]:
        """Provider-specific settings a source needs to talk to this simulator."""
        return {}

    def clear_bad_records(self) -> None:
        with self._lock:
            self._bad_records = 0

    def native_for(self, canonical: str) -> str:
        status = RunStatus(canonical)
        for native, mapped in self.vocabulary.table.items():
            if mapped is status:
                return native
        raise ValueError(f"{self.provider} has no native status for {canonical}")

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            endpoints = Counter(f"{r.method} {self.endpoint_of(r)}" for r in self._requests)
        return {
            "requests": dict(endpoints),
            "faults": dict(self.faults.injected),
            "rate_limited": self.rate_limit.rejected if self.rate_limit else 0,
        }

    # What a provider implements -----------------------------------------------------------------

    def authorized(self, headers: Mapping[str, str]) -> bool:
        raise NotImplementedError

    def route(self, request: Request) -> Response:
        raise NotImplementedError

    def error(self, status: int, code: str, message: str) -> Response:
        raise NotImplementedError

    def is_list(self, request: Request) -> bool:
        """List requests shift pages (arrivals) and carry bad records."""
        raise NotImplementedError

    def list_items(self, body: Any) -> list[dict[str, Any]] | None:
        raise NotImplementedError

    def rate_limited(self, wait: float) -> Response:
        response = self.error(429, "RATE_LIMIT_EXCEEDED", "rate limit exceeded")
        response.headers["Retry-After"] = str(max(1, round(wait + 0.5)))
        return response

    def check_request(self, request: Request) -> Response | None:
        """A provider's own request requirements beyond the key (e.g. a version header)."""
        return None

    def break_record(self, item: dict[str, Any]) -> None:
        item["id"] = None

    def endpoint_of(self, request: Request) -> str:
        return request.path

    def finalize(self, request: Request, response: Response) -> Response:
        """Last touch on every API answer, errors and spoiled bodies included (e.g. headers the
        provider sends on every response)."""
        return response

    # Request handling ---------------------------------------------------------------------------

    def handle(self, request: Request) -> Response | Fault:
        with self._lock:
            self._requests.append(request)
        fault = self.faults.take()
        if fault is not None and fault.kind in STREAM_FAULTS:
            return fault
        response = self._answer(request, fault)
        if fault is not None and fault.kind in BODY_FAULTS:
            # Whatever the answer would have been (even a 401), the taken fault spoils it: a fault
            # counted in `injected` is always one the client saw.
            response = fault_response(fault, response)
        response = self.finalize(request, response)
        if response.status == 200 and self.variant.clock_ahead:
            response.body = dated_ahead(response.body)
        if response.status == 200 and self.is_list(request):
            # A real answer of the runs list, for tests that decode recorded pages.
            self.last_runs_page = (response.body, dict(response.headers))
        return response

    def _answer(self, request: Request, fault: Fault | None) -> Response:
        if fault is not None and fault.kind == "status":
            code = int(fault.params.get("code", 500))
            response = self.error(code, _code_name(code), f"injected fault {code}")
            if "retry_after" in fault.params:
                response.headers["Retry-After"] = str(fault.params["retry_after"])
            return response
        if fault is not None and fault.kind == "delay":
            time.sleep(float(fault.params.get("seconds", 1.0)))
        if self.rate_limit is not None:
            wait = self.rate_limit.admit()
            if wait is not None:
                return self.rate_limited(wait)
        if not self.authorized(request.headers):
            return self.error(401, "UNAUTHORIZED", "invalid or missing API key")
        problem = self.check_request(request)
        if problem is not None:
            return problem
        if self.variant.lookups != "served" and self.endpoint_of(request) == self.run_endpoint:
            if self.variant.lookups == "refused":
                return self.error(405, "METHOD_NOT_ALLOWED", "Method Not Allowed")
            return self.error(404, "NOT_FOUND", "Not Found")
        is_list = self.is_list(request)
        if is_list:
            self._shift_pages()
        response = self.route(request)
        if is_list and response.status == 200:
            self._maybe_break(response.body)
        return response

    def _shift_pages(self) -> None:
        if self.advance_per_list_request:
            self.world.advance(self.advance_per_list_request)
        if self.arrivals_per_list_request:
            self.world.advance(ARRIVAL_SPACING_SECONDS)
            self.world.add_runs(self.arrivals_per_list_request)
        for _ in range(self.deletions_per_list_request):
            self.world.delete_active()

    def _maybe_break(self, body: Any) -> None:
        items = self.list_items(body)
        if not items:
            return
        with self._lock:
            if self._bad_records <= 0:
                return
            self._bad_records -= 1
            self._broken += 1
            mode = self._broken % 3
        item = items[len(items) // 2]
        if mode == 0:
            self.break_record(item)  # a value of the wrong shape
        elif mode == 1:
            item["id"] = None  # a null where a value is required
        else:
            item.pop(self.cursor_field, None)  # a required field missing

    def control(self, method: str, path: str, payload: Any) -> Response:
        """Test tooling on loopback: no auth, no faults, not in the request log."""
        try:
            return self._control(method, path, payload if isinstance(payload, dict) else {})
        except (KeyError, TypeError, ValueError) as exc:
            # A malformed control request is the caller's bug: say so instead of hanging up.
            return Response(400, {"detail": f"bad control request: {exc!r}"})

    def _control(self, method: str, path: str, payload: dict[str, Any]) -> Response:
        if method == "GET" and path == "/_sim/truth":
            return Response(body=self.world.truth().as_json())
        if method == "GET" and path == "/_sim/stats":
            return Response(body=self.stats())
        if method == "POST" and path == "/_sim/advance":
            self.world.advance(float(payload.get("seconds", 1)))
            return Response(body={"now": self.world.now().isoformat()})
        if method == "POST" and path == "/_sim/faults":
            params = dict(payload)
            kind = params.pop("kind")
            count = int(params.pop("count", 1))
            if kind == "unknown_status":
                self.unknown_status(count)
            elif kind == "bad_record":
                self.bad_record(count)
            else:
                self.faults.inject(kind, count, **params)
            return Response(body={"pending": self.faults.pending})
        if method == "POST" and path == "/_sim/runs":
            runs = self.world.add_runs(
                int(payload.get("n", 1)),
                workflow=payload.get("workflow"),
                native_status=payload.get("native_status"),
            )
            return Response(body={"ids": [r.id for r in runs]})
        if method == "POST" and path == "/_sim/workflows":
            workflow = self.world.add_workflow(str(payload["name"]))
            return Response(body={"id": workflow.id, "name": workflow.name})
        return Response(404, {"detail": "unknown control endpoint"})


def fault_response(fault: Fault, response: Response) -> Response:
    if fault.kind == "malformed_json":
        return Response(200, b"{'data': [oops", {"Content-Type": "application/json"})
    raw = json.dumps(response.body).encode()
    return Response(200, raw[: max(1, len(raw) // 2)], {"Content-Type": "application/json"})


def _code_name(status: int) -> str:
    return {
        400: "INVALID_REQUEST",
        401: "UNAUTHORIZED",
        404: "NOT_FOUND",
        429: "RATE_LIMITED",
        500: "INTERNAL",
        502: "BAD_GATEWAY",
        503: "UNAVAILABLE",
    }.get(status, "ERROR")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        sim = self.server.simulator
        parts = urlsplit(self.path)
        if parts.path.startswith("/_sim/"):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                payload = json.loads(raw) if raw else {}
            except ValueError:
                self._write(Response(400, {"detail": "control body is not JSON"}))
                return
            self._write(sim.control(method, parts.path, payload))
            return
        prefix = sim.path_prefix
        if prefix and not parts.path.startswith(prefix):
            self._write(sim.error(404, "NOT_FOUND", "no such path"))
            return
        request = Request(
            method=method,
            path=parts.path[len(prefix) :] or "/",
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
        )
        outcome = sim.handle(request)
        if isinstance(outcome, Fault):
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._stream_fault(outcome)
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._write(outcome)

    def _stream_fault(self, fault: Fault) -> None:
        """drip: a valid-looking body one byte at a time; endless: megabytes without end;
        gzip_bomb: `inflated` bytes (2 GiB by default) of gzipped zeros, a thousandth of that on
        the wire, made as they are sent. Each stops when the client hangs up (or after a bound,
        so a test can never hang)."""
        if fault.kind == "reset":
            return
        if fault.kind == "gzip_bomb":
            self._gzip_bomb(int(fault.params.get("inflated", 2 * 1024**3)))
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if fault.kind == "drip":
            self.send_header("Content-Length", "100000")
        self.end_headers()
        interval = float(fault.params.get("interval", 0.2))
        deadline = time.monotonic() + float(fault.params.get("max_seconds", 30))
        chunk = b"[" + b"0," * 32768
        while time.monotonic() < deadline:
            if fault.kind == "drip":
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(interval)
            else:
                self.wfile.write(chunk)

    def _gzip_bomb(self, inflated: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        packer = zlib.compressobj(9, wbits=16 + zlib.MAX_WBITS)
        zeros = bytes(1024 * 1024)
        for _ in range(inflated // len(zeros)):
            self.wfile.write(packer.compress(zeros))
        self.wfile.write(packer.flush())

    def _write(self, response: Response) -> None:
        if isinstance(response.body, bytes):
            raw = response.body
        else:
            raw = json.dumps(response.body).encode()
        self.send_response(response.status)
        headers = {"Content-Type": "application/json", **response.headers}
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], simulator: SimulatorServer) -> None:
        self.simulator = simulator
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client that hangs up mid-answer (killed, timed out) is part of the game
