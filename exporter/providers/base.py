"""What every provider is and gets: its settings model, its HTTP client, and a way to report.

A provider knows one API and nothing else. It pages through the runs list, parses each item with
its own pydantic wire model and yields canonical `Run`s. It never imports prometheus_client and
never decides what to count: that is `exporter.collection.cycle`'s job.

Over 300 lines with no named split: what is left is the surface every provider fills in and the
helpers it calls; reading a page's items is `exporter.providers.items`'.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import quote

from exporter.core.errors import HttpStatusError, PageRefused
from exporter.core.logs import may_hold_secret, redact
from exporter.core.model import (
    Run,
    RunStatus,
    StatusMapper,
    Step,
    StepStatus,
)
from exporter.core.sharding import UNSHARDED, Shard
from exporter.providers.client import ApiClient, JsonResponse
from exporter.providers.describe import ProviderDocs, ProviderEvents
from exporter.providers.items import ItemReader
from exporter.providers.paging import Fetch, ListShape, Page, PagedList, T
from exporter.providers.sanitize import Limits, RunSanitizer
from exporter.providers.settings import (
    PagedSourceSettings,
    SourceSettings,
)
from exporter.providers.steps import StepMapper, StepsRead, read_steps
from exporter.providers.webhooks import Dialect
from exporter.providers.wire import paging_number, take_offsetless_seen

# Where every provider module finds what it subclasses and fills in.
__all__ = [
    "PagedSourceSettings",
    "Provider",
    "ProviderDocs",
    "ProviderEvents",
    "SourceSettings",
    "list_position",
    "segment",
]

S = TypeVar("S", bound=SourceSettings)
# Native statuses remembered per source (an API has a handful; the bound is for one that does not).
_KNOWN_STATUSES_KEPT = 1000


class Provider(ABC, Generic[S]):
    """One API, generic over its settings model. Subclasses set `name`, `settings_model` and
    `default_status_map`, and implement the pure `decode_page` beside the I/O that feeds it."""

    name: ClassVar[str]
    settings_model: ClassVar[type[SourceSettings]]
    default_status_map: ClassVar[Mapping[str, RunStatus]]
    docs: ClassVar[ProviderDocs]
    # True when every change of a run moves it above the watermark (a list sorted by update
    # time): then active runs never need re-reading.
    cursor_tracks_changes: ClassVar[bool] = False
    # True when one source's runs can be split across shards by workflow (each shard reads only
    # its own workflows); otherwise a source goes whole to one shard.
    shards_by_workflow: ClassVar[bool] = False
    # Whether a source counts steps when its `steps` setting is unset, and the step statuses
    # (empty: the API's runs carry no steps).
    steps_by_default: ClassVar[bool] = False
    default_step_map: ClassVar[Mapping[str, StepStatus]] = {}
    # True when the API gives steps only for failed runs (Extend's failure details): the step
    # failure ratio would read 100 % whatever happens, so the generated alert rule and
    # dashboards leave such providers out of it (`monitoring.policy`).
    steps_of_failed_runs_only: ClassVar[bool] = False
    # How the provider signs the webhooks it sends (None: it sends none, and a source of it
    # takes no `webhook_secret`).
    webhook_dialect: ClassVar[Dialect | None] = None

    def __init__(
        self,
        settings: S,
        client: ApiClient,
        events: ProviderEvents,
        shard: Shard = UNSHARDED,
    ) -> None:
        self.settings = settings
        self.client = client
        self.events = events
        self.shard = shard
        self.mapper = StatusMapper(self.default_status_map, settings.status_map)
        self._facts: dict[str, str] = {}
        self.sanitizer = RunSanitizer(
            Limits(label_length=settings.max_label_length),
            redact,
            self._invalid_field,
            lambda: datetime.now(tz=UTC),
            may_hold_secret,
        )
        # Reads a page's items one by one, saying what is wrong through the sanitizer's cleaning.
        self.items = ItemReader(settings.name, events, self.sanitizer)
        # Native statuses already cleaned and mapped to a known status: a list repeats a handful
        # of them on every run. An unmapped one is never remembered, so each sighting is counted.
        self._known_statuses: dict[str, RunStatus] = {}
        # What the source's page-numbered lists turned out to be, learned once for the process.
        self.shape = (
            settings.list_shape() if isinstance(settings, PagedSourceSettings) else ListShape()
        )

    @property
    def steps_on(self) -> bool:
        steps = self.settings.steps
        return self.steps_by_default if steps is None else steps

    def counts_steps_of(self, run: Run) -> bool:
        """Whether the steps of this finished run are counted (a run in a signed event without
        them is looked up). Every finished run's, where steps are on; only failed runs' where
        the provider says `steps_of_failed_runs_only`."""
        if self.steps_of_failed_runs_only and run.status is not RunStatus.FAILED:
            return False
        return self.steps_on

    @functools.cached_property
    def step_mapper(self) -> StepMapper:
        """The provider's `default_step_map`. Unmapped step statuses are loud: counted as
        `step:<native>` on unknown_status."""
        return StepMapper(
            self.default_step_map,
            lambda native: self.events.unknown_status(
                "step:" + self.sanitizer.text(native, self.settings.max_label_length)
            ),
        )

    def read_steps(self, items: Any, build: Callable[[Any], Step | None], **kw: bool) -> StepsRead:
        """`read_steps`, or nothing at all when the source does not count steps."""
        if not self.steps_on:
            return StepsRead((), 0)
        return read_steps(items, build, **kw)

    @classmethod
    @abstractmethod
    def auth_headers(cls, settings: SourceSettings, api_key: str) -> dict[str, str]:
        """The headers that authenticate (and version) every request."""

    @classmethod
    def canonical_statuses(cls, settings: SourceSettings) -> frozenset[RunStatus]:
        """The statuses a source of this API can report (its table with the source's
        `status_map`): their series are created at zero."""
        return StatusMapper(cls.default_status_map, settings.status_map).canonical_values

    @classmethod
    def hint(cls, settings: Any, situation: str) -> str:
        """What this API adds to `check`'s advice (empty: nothing). Situations: `auth_refused`,
        `version_refused`, `not_found`, `unreachable`."""
        return ""

    @classmethod
    def check_lines(cls, settings: Any, ok: bool) -> list[str]:
        """Lines of this API's own that `check` prints for a source (e.g. the API version)."""
        return []

    @abstractmethod
    def scan(self, floor: datetime, *, first_read_floor: datetime | None = None) -> Iterator[Run]:
        """Runs with `cursor_time` at or above `floor`, in any order.

        `first_read_floor`: how deep to read a list the source has never read before (a workflow
        created since the last cycle), so that its runs from before it was found count too.
        May yield runs older than `floor` from the last page read, and the same run twice when
        pages shift; the collector dedupes. Raises `ApiError` when a page cannot be had.
        """

    def fast_decode(self, raw: bytes) -> Any:
        """A list page's bytes read straight into what `decode_page` takes, where every item is
        valid; it raises otherwise, and the body is read as plain JSON. Default: plain JSON."""
        raise ValueError("no typed page model")

    @abstractmethod
    def decode_page(self, body: Any, headers: Mapping[str, str]) -> Page[Run]:
        """Pure: a runs-list answer (its decoded body and its headers) to its runs and paging
        facts. Each item is parsed on its own; a body of another shape is a `PayloadError`
        naming the shape expected. No I/O: tests and fuzzing drive it with recorded bodies."""

    def admits(self, run: Run) -> bool:
        """Whether a run read from this API is one the source counts (Cortex: its origin).
        Asked after the page walk, so runs left out still move paging and watermarks."""
        return True

    def list_active(self) -> Iterator[Run]:
        """Runs the API reports as active in one cheap listing, if it has a filter for that."""
        return iter(())

    @abstractmethod
    def get_run(self, run_id: str, workflow_id: str | None = None) -> Run | None:
        """One run by its key (`Run.id`), with full detail; None when the API says it no
        longer exists. `workflow_id`: the run's workflow, where the key alone does not say it."""

    # Whether a signed event documents its payload as the whole run, in the shape of a lookup
    # (Extend's WorkflowRun): a finished run in it is counted without a lookup.
    events_carry_whole_runs: ClassVar[bool] = False

    def run_from_event(self, item: Any) -> Run | None:
        """A run as a signed webhook event carried it, where it has the detail's shape: used
        instead of a lookup where `events_carry_whole_runs`, else only when the run can no
        longer be looked up (deleted right after finishing)."""
        return None

    # Helpers for subclasses -------------------------------------------------------------

    def paged_list(
        self, fetch: Fetch[T], key: str, time_of: Callable[[T], datetime] | None = None
    ) -> PagedList[T]:
        settings = self.settings
        assert isinstance(settings, PagedSourceSettings)

        def fetch_and_note(number: int, size: int) -> Page[T]:
            page = fetch(number, size)
            self.note_timestamp_forms()
            return page

        return PagedList(
            fetch_and_note,
            self.shape,
            self.events,
            key=key,
            page_size=settings.page_size,
            max_pages=settings.max_pages,
            time_of=time_of,
        )

    def get_page(
        self,
        path: str,
        *,
        number: int,
        params: Mapping[str, str | int],
        endpoint: str = "list_runs",
        decode: Callable[[bytes], Any] | None = None,
    ) -> JsonResponse:
        """One page of a page-numbered list. While the first page is being learned, a refused
        page 0 is `PageRefused` (the list counts from 1), not a failure."""
        try:
            return self.client.get_json(path, endpoint=endpoint, params=params, decode=decode)
        except HttpStatusError as exc:
            if number == 0 and self.shape.first_page is None and exc.status in (400, 422):
                raise PageRefused(str(exc)) from None
            raise

    def note_timestamp_forms(self) -> None:
        """Says once that timestamps come without an offset (read as UTC)."""
        if take_offsetless_seen():
            self.say_once("timestamps", "no_offset", "timestamps without an offset read as UTC")

    def say_once(self, fact: str, value: str, detail: str) -> None:
        """Reports a fact about the API's answers the first time it is seen."""
        if self._facts.get(fact) != value:
            self._facts[fact] = value
            self.events.learned(fact, value, detail)

    def list_facts(self) -> dict[str, str]:
        """What is known of the source's lists now (exported as `source_info`)."""
        shape = self.shape
        return {
            "list_order": shape.order.value if shape.order else "unknown",
            "first_page": "unknown" if shape.first_page is None else str(shape.first_page),
            "page_size": str(shape.page_size or self.settings.page_size),
            "timestamps": "offset",
            **self._facts,
        }

    def paging_numbers(self, fields: Mapping[str, Any], where: str) -> dict[str, int | None]:
        """A page's numbers and totals (`paging_number`) by name; one that is not a whole
        number in range is left out and counted as an invalid field: the walk goes on by the
        page's other signals."""
        numbers: dict[str, int | None] = {}
        for name, value in fields.items():
            try:
                numbers[name] = paging_number(value)
            except ValueError as exc:
                self.events.invalid_record("field", self.items.redacted(f"{where} {name}: {exc}"))
                numbers[name] = None
        return numbers

    def fetch_one(self, path: str, build: Callable[[Any], Run]) -> Run | None:
        """One run from a detail endpoint; None when the API answers that it does not exist."""
        try:
            body = self.client.get_json(path, endpoint="get_run").body
        except HttpStatusError as exc:
            if exc.status == 404:
                return None
            raise
        runs = list(self.parse_items([body], build))
        self.note_timestamp_forms()
        return runs[0] if runs else None

    def map_status(self, native: str) -> RunStatus:
        known = self._known_statuses.get(native)
        if known is not None:
            return known
        cleaned = self.sanitizer.text(native, self.settings.max_label_length)
        status = self.mapper.map(cleaned)
        if status is RunStatus.UNKNOWN and not self.mapper.known(cleaned):
            self.events.unknown_status(cleaned)
        elif len(self._known_statuses) < _KNOWN_STATUSES_KEPT:
            self._known_statuses[native] = status
        return status

    def listed_items(self, body: Any, key: str) -> list[Any]:
        return self.items.listed(body, key)

    def parse_items(self, items: Any, build: Any) -> Iterator[Run]:
        return self.items.parse(items, build)

    def _invalid_field(self, run_id: str, detail: str) -> None:
        self.items.invalid_field(run_id, detail)


def list_position(run: Run) -> datetime:
    """Where a run stands in a runs list ordered by time: its cursor time."""
    return run.cursor_time


def segment(value: str) -> str:
    """An id from an API as one path segment: whatever it holds, it cannot leave its place."""
    return quote(value, safe="")
