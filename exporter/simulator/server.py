"""The API behaviour every simulator shares: auth, applying injected faults and the rate limit,
page shifting, bad records, a request log, and an optional real-time driver. A provider's
simulator subclasses `SimulatorServer` and only speaks its wire format (`route`, `render`,
errors). The socket side lives in `handler`, the faults in `faults`, the limit in `ratelimit`, the
variant knobs in `variant` and the `/_sim/` endpoints in `control`. Over 300 lines with no named
split: what is left is the one surface each provider's simulator overrides.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from exporter.core.model import RunStatus
from exporter.simulator.distrust import dated_ahead, listed_time
from exporter.simulator.exchange import Request, Response
from exporter.simulator.faults import (
    BODY_FAULTS,
    STREAM_FAULTS,
    BadRecords,
    Fault,
    FaultPlan,
    code_name,
    fault_response,
)
from exporter.simulator.handler import SimulatorHttpServer
from exporter.simulator.ratelimit import RateLimit
from exporter.simulator.records import SimRun, Vocabulary
from exporter.simulator.variant import (
    ApiVariant,
    PageWindow,
    PageZero,
    absurd_number,
    page_window,
    render_time,
)
from exporter.simulator.webhooks import WebhookFaults, WebhookSender
from exporter.simulator.world import World

# How far the clock moves before page-shifting arrivals: they must sort strictly before every run
# already listed (a tie on createdAt would be broken by id and land anywhere in the list).
ARRIVAL_SPACING_SECONDS = 0.001


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
        steady_workflows: int = 0,  # the first N rarely fail, history too (World's)
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
        self.world.steady_workflows.update(w.name for w in self.world.workflows[:steady_workflows])
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
        self.bad_records = BadRecords()
        self._requests: list[Request] = []
        self._lock = threading.Lock()
        self._httpd = SimulatorHttpServer((host, port), self)
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
        return page_window(self.variant, self.first_page, self.page_zero_default, page, size)

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
        self.bad_records.add(n)

    def source_settings(self) -> dict[str, Any]:
        """Provider-specific settings a source needs to talk to this simulator."""
        return {}

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
            response = self.error(code, code_name(code), f"injected fault {code}")
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
        mode = self.bad_records.take()
        if mode is None:
            return
        item = items[len(items) // 2]
        if mode == 0:
            self.break_record(item)  # a value of the wrong shape
        elif mode == 1:
            item["id"] = None  # a null where a value is required
        else:
            item.pop(self.cursor_field, None)  # a required field missing
