"""Plextera: `Authorization: api-key <token>`, page/size pages with totals in `pageInfo`.

Incremental collection reads the list down to the watermark, from its newest end whichever order
the API sorts it in (learned, see `paging`). Runs that are still active when they drop below it
are found again through the `status=PROCESSING` filter, and those that left it (finished) are
looked up one by one. `REJECTED` runs carry an error code like failed ones (seed 001).

Over 300 lines with no named split: a provider is one file (its settings, wire models, webhook
dialect and steps policy), as the registry and the shared checks expect.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field

from exporter.core.model import UNSPECIFIED_CODE, Run, RunStatus, Step, StepStatus
from exporter.providers.base import (
    PagedSourceSettings,
    Provider,
    ProviderDocs,
    SourceSettings,
    list_position,
    segment,
)
from exporter.providers.paging import Page, PagedList
from exporter.providers.steps import StepMapper, StepsRead, text_field
from exporter.providers.webhooks import (
    Dialect,
    Event,
    Signed,
    found_at,
    hmac_sha256_hex,
    id_text,
    same_signature,
    signed_timestamp,
)
from exporter.providers.wire import (
    UtcDatetime,
    WireCount,
    WireMeasure,
    WireModel,
    dict_or_empty,
)


class PlexteraSettings(PagedSourceSettings):
    provider: str = "plextera"
    base_url: str = "https://api.plextera.com/api/public/v1"
    page_size: int = Field(default=100, ge=1, le=1000)
    # Status filter value that lists the runs still in progress; empty disables the listing and
    # every known active run below the watermark is looked up by id instead.
    active_status_filter: str = "PROCESSING"


class _Error(WireModel):
    code: str | None = None
    message: str | None = None


class _Workflow(WireModel):
    id: str
    name: str | None = None


class _Progress(WireModel):
    stepsCompleted: WireCount | None = None  # noqa: N815 - wire name
    stepsTotal: WireCount | None = None  # noqa: N815 - wire name


class PlexteraRun(WireModel):
    id: str = Field(min_length=1)
    status: str
    createdAt: UtcDatetime  # noqa: N815 - wire name
    startedAt: UtcDatetime | None = None  # noqa: N815 - wire name
    completedAt: UtcDatetime | None = None  # noqa: N815 - wire name
    error: _Error | None = None
    workflow: _Workflow
    progress: _Progress | None = None
    durationMs: WireMeasure | None = None  # noqa: N815 - wire name
    computedDurationMs: WireMeasure | None = None  # noqa: N815 - wire name
    # `steps` (with nested runs, most of each item's bytes) and `updatedAt` are left unread:
    # progress comes from `progress`, the list is ordered by `createdAt`. A source that counts
    # steps reads them through `PlexteraRunWithSteps` instead.


class PlexteraRunWithSteps(PlexteraRun):
    # Left raw: each step is read on its own (`providers.steps`), so one bad step loses itself.
    steps: Any = None


class _NestedRef(WireModel):
    id: str | None = None  # a nested run's other fields are never read


class _NestedRuns(WireModel):
    data: list[_NestedRef] | None = None


class _WireStep(WireModel):
    """A step of a page read straight from the bytes: its `output` and the nested runs' bodies
    (most of its bytes) are skipped by the parser."""

    name: str | None = None
    type: str | None = None
    status: str | None = None
    nestedRuns: _NestedRuns | None = None  # noqa: N815 - wire name


class _PlexteraRunTypedSteps(PlexteraRun):
    steps: list[_WireStep] | None = None


# The paging facts of `pageInfo` a walk reads, each checked on its own (`paging_numbers`).
_PAGE_INFO = ("page", "totalItems", "totalPages")


class _PlexteraPage(WireModel):
    """A list page whose items are all valid, read straight from the bytes: the fields a run
    does not need are skipped by the parser instead of being built as Python objects first."""

    data: list[PlexteraRun]
    pageInfo: Any = None  # noqa: N815 - wire name


class _PlexteraStepsPage(_PlexteraPage):
    # A page with an odd step fails here and is read item by item (`PlexteraRunWithSteps`).
    data: list[_PlexteraRunTypedSteps]  # type: ignore[assignment]  # a subtype: steps kept


class PlexteraDialect:
    """`X-Plextera-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`; several `v1`
    are accepted (a platform signs with old and new secret while one is rotated)."""

    name = "plextera"
    runs_by_url = False
    run_events = frozenset({"workflow.run.completed", "workflow.run.failed"})
    signature_doc = (
        "`X-Plextera-Signature: t=<unix>,v1=<hex>`: HMAC-SHA256 of `<t>.<raw body>`, "
        "several `v1` taken (rotation)"
    )
    # The envelope is not documented: where its type may be.
    type_fields = ("type", "event", "eventType", "event_type")

    def signed(self, headers: Mapping[str, str], body: bytes, secret: bytes) -> Signed | None:
        stamp, candidates = "", []
        for part in headers.get("x-plextera-signature", "").split(","):
            key, _, value = part.strip().partition("=")
            if key == "t":
                stamp = value
            elif key == "v1" and value:
                candidates.append(value.lower())
        when = signed_timestamp(stamp)
        if when is None or not candidates:
            return None
        expected = hmac_sha256_hex(secret, stamp.encode() + b"." + body)
        # Every candidate is compared, matched or not, so timing says nothing about which.
        matches = [c for c in candidates if same_signature(expected, c)]
        return Signed(when, matches[0]) if matches else None

    def event(self, body: Any, run_id_paths: Sequence[str]) -> Event:
        if not isinstance(body, dict):
            return Event(None, None, False, None)
        event_type = next(
            (t for t in (id_text(body.get(f)) for f in self.type_fields) if t is not None), None
        )
        if event_type is not None and event_type not in self.run_events:
            return Event(None, event_type, False, None)
        # Without a type the body is still taken as a run event: only run events are documented.
        run_id, holder = found_at(body, run_id_paths)
        return Event(None, event_type, True, run_id, holder)


class PlexteraProvider(Provider[PlexteraSettings]):
    name: ClassVar[str] = "plextera"
    settings_model: ClassVar[type[SourceSettings]] = PlexteraSettings
    docs: ClassVar[ProviderDocs] = ProviderDocs(
        title="Plextera",
        auth="`Authorization: api-key <key>`",
        list="`GET /workflow-runs?page&size`, totals in `pageInfo`",
        one_run="`GET /workflow-runs/{id}`",
        incremental_by="`createdAt`",
        active_reread="`status=PROCESSING` listing, then lookups of runs that left it",
        code_label="`error.code` (failed and rejected runs)",
        duration="`durationMs`, else `computedDurationMs`, else completed - started",
        progress="`stepsCompleted / stepsTotal`",
        steps=(
            "`steps[]` of finished runs (`steps: true` by default); `step` = `type`, else "
            "`name`; no durations (steps carry no times); `nestedRuns` not counted: a nested "
            "run counts from the top-level list, and one it never shows is reported"
        ),
    )
    steps_by_default: ClassVar[bool] = True
    webhook_dialect: ClassVar[Dialect | None] = PlexteraDialect()
    # Seen: QUEUED, COMPLETED, FAILED; PROCESSING is the run's word for running.
    default_step_map: ClassVar[Mapping[str, StepStatus]] = {
        "QUEUED": StepStatus.NOT_STARTED,
        "PROCESSING": StepStatus.UNFINISHED,
        "COMPLETED": StepStatus.SUCCEEDED,
        "FAILED": StepStatus.FAILED,
    }
    default_status_map: ClassVar[Mapping[str, RunStatus]] = {
        "QUEUED": RunStatus.QUEUED,
        "PROCESSING": RunStatus.RUNNING,
        "COMPLETED": RunStatus.SUCCEEDED,
        "FAILED": RunStatus.FAILED,
        "CLOSED": RunStatus.CANCELLED,
        "REJECTED": RunStatus.REJECTED,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._step_cache: dict[tuple[str | None, str | None, str | None], Step] = {}

    @classmethod
    def auth_headers(cls, settings: SourceSettings, api_key: str) -> dict[str, str]:
        return {"Authorization": f"api-key {api_key}"}

    def scan(self, floor: datetime, *, first_read_floor: datetime | None = None) -> Iterator[Run]:
        for page in self._list({}, "all").pages(floor):
            yield from page.items

    def list_active(self) -> Iterator[Run]:
        status = self.settings.active_status_filter
        if not status:
            return
        for page in self._list({"status": status}, f"status={status}").pages(None):
            yield from page.items

    def get_run(self, run_id: str, workflow_id: str | None = None) -> Run | None:
        return self.fetch_one(f"/workflow-runs/{segment(run_id)}", self._to_run)

    def run_from_event(self, item: Any) -> Run | None:
        runs = list(self.parse_items([item], self._to_run))
        return runs[0] if runs else None

    def fast_decode(self, raw: bytes) -> Any:
        # Pages whose items are all valid are read straight from the bytes into typed runs.
        page = _PlexteraStepsPage if self.steps_on else _PlexteraPage
        return page.model_validate_json(raw)

    def decode_page(self, body: Any, headers: Mapping[str, str]) -> Page[Run]:
        if isinstance(body, _PlexteraPage):
            raw_info = body.pageInfo
            runs = list(self.parse_items(body.data, self._run_of))
            received = len(body.data)
        else:
            # Some item is invalid (or the page is odd): item by item, so that one bad record
            # never loses the rest of the page.
            listed = self.listed_items(body, "data")
            raw_info = body.get("pageInfo")
            runs = list(self.parse_items(listed, self._to_run))
            received = len(listed)
        # A garbled `pageInfo` leaves the walk to its other signals.
        info = dict_or_empty(raw_info)
        numbers = self.paging_numbers({k: info.get(k) for k in _PAGE_INFO}, "pageInfo")
        return Page(
            runs,
            received,
            number=numbers["page"],
            total_items=numbers["totalItems"],
            total_pages=numbers["totalPages"],
            ids=tuple(run.id for run in runs),
        )

    def _typed_steps(self, steps: list[_WireStep] | None, mapper: StepMapper) -> StepsRead:
        """The steps of a page read fast. A workflow's steps repeat from run to run: each
        distinct mapped step is built once and shared (steps are immutable); an unmapped status
        is never cached, so each sighting of it is counted."""
        if not steps:
            return StepsRead((), 0)
        built: list[Step] = []
        invalid = 0
        cache = self._step_cache
        for item in steps:
            key = (item.name, item.type, item.status)
            step = cache.get(key)
            if step is None:
                step = _typed_step(item, mapper)
                if step is None:
                    invalid += 1
                    continue
                if step.canonical is not StepStatus.UNKNOWN and len(cache) < 10_000:
                    cache[key] = step
            built.append(step)
        return StepsRead(tuple(built), invalid)

    def _list(self, params: dict[str, str], key: str) -> PagedList[Run]:
        def fetch(number: int, size: int) -> Page[Run]:
            response = self.get_page(
                "/workflow-runs",
                number=number,
                params={**params, "page": number, "size": size},
                decode=self.fast_decode,
            )
            return self.decode_page(response.body, response.headers)

        return self.paged_list(fetch, key, time_of=list_position)

    def _to_run(self, item: Any) -> Run:
        model = PlexteraRunWithSteps if self.steps_on else PlexteraRun
        return self._run_of(model.model_validate(item))

    def _run_of(self, wire: PlexteraRun) -> Run:
        status = self.map_status(wire.status)
        progress = None
        if wire.progress and wire.progress.stepsTotal:
            done = wire.progress.stepsCompleted or 0
            progress = min(1.0, max(0.0, done / wire.progress.stepsTotal))
        duration_ms = wire.durationMs if wire.durationMs is not None else wire.computedDurationMs
        error_code = None
        if status in (RunStatus.FAILED, RunStatus.REJECTED):
            error_code = (wire.error.code if wire.error else None) or UNSPECIFIED_CODE
        read = StepsRead((), 0)
        nested: tuple[str, ...] = ()
        finished = status.may_have_ended
        # Only a finished run's steps are ever counted: an active run's are not read.
        if isinstance(wire, _PlexteraRunTypedSteps) and finished:
            mapper = self.step_mapper
            read = self._typed_steps(wire.steps, mapper)
            nested = tuple(
                ref.id[:256]
                for step in wire.steps or ()
                if step.nestedRuns and step.nestedRuns.data
                for ref in step.nestedRuns.data
                if ref.id
            )
        elif isinstance(wire, PlexteraRunWithSteps) and finished:
            mapper = self.step_mapper
            read = self.read_steps(wire.steps, lambda item: _step(item, mapper))
            nested = _nested_ids(wire.steps)
        return Run(
            id=wire.id,
            workflow_id=wire.workflow.id,
            workflow_name=wire.workflow.name,
            status=status,
            native_status=wire.status,
            created_at=wire.createdAt,
            cursor_time=wire.createdAt,
            started_at=wire.startedAt,
            finished_at=wire.completedAt,
            duration_seconds=duration_ms / 1000 if duration_ms is not None else None,
            progress=progress,
            error_code=error_code,
            error_message=wire.error.message if wire.error else None,
            steps=read.steps,
            invalid_steps=read.invalid,
            nested_ids=nested,
        )


def _nested_ids(steps: Any) -> tuple[str, ...]:
    """The ids of the runs nested in a run's steps (`steps[].nestedRuns.data[].id`)."""
    if not isinstance(steps, list):
        return ()
    ids: list[str] = []
    for step in steps:
        nested = step.get("nestedRuns") if isinstance(step, dict) else None
        data = nested.get("data") if isinstance(nested, dict) else None
        for run in data if isinstance(data, list) else ():
            run_id = run.get("id") if isinstance(run, dict) else None
            if isinstance(run_id, str) and run_id:
                ids.append(run_id[:256])
    return tuple(ids)


def _typed_step(item: _WireStep, mapper: StepMapper) -> Step | None:
    name, native = item.name, item.status
    if not native or not (name or item.type):
        return None
    return Step(name=name or "", status=native, type=item.type, canonical=mapper.map(native))


def _step(item: Any, mapper: StepMapper) -> Step | None:
    if not isinstance(item, dict):
        return None
    native = text_field(item, "status")
    name = text_field(item, "name") or text_field(item, "id")
    kind = text_field(item, "type")
    if native is None or (name is None and kind is None):
        return None
    return Step(name=name or "", status=native, type=kind, canonical=mapper.map(native))
