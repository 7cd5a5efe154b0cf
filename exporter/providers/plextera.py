"""Plextera: `Authorization: api-key <token>`, page/size pages with totals in `pageInfo`.

Incremental collection reads the list down to the watermark, from its newest end whichever order
the API sorts it in (learned, see `paging`). Runs that are still active when they drop below it
are found again through the `status=PROCESSING` filter, and those that left it (finished) are
looked up one by one. `REJECTED` runs carry an error code like failed ones (seed 001).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, Field, ValidationError

from exporter.model import UNSPECIFIED_CODE, Run, RunStatus
from exporter.providers.base import (
    PagedSourceSettings,
    Provider,
    ProviderDocs,
    SourceSettings,
    list_position,
    segment,
)
from exporter.providers.paging import Page, PagedList
from exporter.providers.wire import UtcDatetime, WireModel, dict_or_empty


class PlexteraSettings(PagedSourceSettings):
    provider: str = "plextera"
    webhooks: ClassVar[bool] = True  # signed events, see exporter.webhooks
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
    stepsCompleted: int | None = None  # noqa: N815 - wire name
    stepsTotal: int | None = None  # noqa: N815 - wire name


class PlexteraRun(WireModel):
    id: str = Field(min_length=1)
    status: str
    createdAt: UtcDatetime  # noqa: N815 - wire name
    startedAt: UtcDatetime | None = None  # noqa: N815 - wire name
    completedAt: UtcDatetime | None = None  # noqa: N815 - wire name
    error: _Error | None = None
    workflow: _Workflow
    progress: _Progress | None = None
    durationMs: float | None = None  # noqa: N815 - wire name
    computedDurationMs: float | None = None  # noqa: N815 - wire name
    # `steps` (with nested runs, most of each item's bytes) and `updatedAt` are left unread:
    # progress comes from `progress`, the list is ordered by `createdAt`, and nothing past the
    # provider uses either.


class _PageInfo(BaseModel):
    page: int | None = None
    size: int | None = None
    totalItems: int | None = None  # noqa: N815 - wire name
    totalPages: int | None = None  # noqa: N815 - wire name


class _PlexteraPage(WireModel):
    """A list page whose items are all valid, read straight from the bytes: the fields a run
    does not need are skipped by the parser instead of being built as Python objects first."""

    data: list[PlexteraRun]
    pageInfo: _PageInfo | None = None  # noqa: N815 - wire name


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
    )
    default_status_map: ClassVar[Mapping[str, RunStatus]] = {
        "QUEUED": RunStatus.QUEUED,
        "PROCESSING": RunStatus.RUNNING,
        "COMPLETED": RunStatus.SUCCEEDED,
        "FAILED": RunStatus.FAILED,
        "CLOSED": RunStatus.CANCELLED,
        "REJECTED": RunStatus.REJECTED,
    }

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
        return _PlexteraPage.model_validate_json(raw)

    def decode_page(self, body: Any, headers: Mapping[str, str]) -> Page[Run]:
        if isinstance(body, _PlexteraPage):
            info = body.pageInfo or _PageInfo()
            runs = list(self.parse_items(body.data, self._run_of))
            received = len(body.data)
        else:
            # Some item is invalid (or the page is odd): item by item, so that one bad record
            # never loses the rest of the page.
            listed = self.listed_items(body, "data")
            info = _page_info(body.get("pageInfo"))
            runs = list(self.parse_items(listed, self._to_run))
            received = len(listed)
        return Page(
            runs,
            received,
            number=info.page,
            total_items=info.totalItems,
            total_pages=info.totalPages,
            ids=tuple(run.id for run in runs),
        )

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
        return self._run_of(PlexteraRun.model_validate(item))

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
        )


def _page_info(raw: Any) -> _PageInfo:
    """Paging facts where they parse; a garbled `pageInfo` leaves the walk to its other signals."""
    try:
        return _PageInfo.model_validate(dict_or_empty(raw))
    except ValidationError:
        return _PageInfo()
