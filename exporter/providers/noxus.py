"""Noxus: `X-API-Key`, fastapi-pagination pages (`items,total,page,size,pages`), snake_case.

The runs list has no status filter, so active runs that drop below the watermark are looked up one
by one (`GET /v1/runs/{id}`), least recently checked first, within the source's `lookup_budget`.
Runs waiting on human feedback are `needs_review` and stay active until they move on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field, field_validator

from exporter.core.model import UNSPECIFIED_CODE, Run, RunStatus
from exporter.providers.base import (
    PagedSourceSettings,
    Provider,
    ProviderDocs,
    SourceSettings,
    list_position,
    segment,
)
from exporter.providers.pages import Page
from exporter.providers.wire import UtcDatetime, WireMeasure, WireModel


class NoxusSettings(PagedSourceSettings):
    provider: str = "noxus"
    base_url: str = "https://backend.noxus.ai"
    page_size: int = Field(default=100, ge=1, le=100)
    # `progress` is documented as an integer; 0-100 is the likely scale.
    progress_scale: float = Field(default=100.0, gt=0)

    @field_validator("steps")
    @classmethod
    def _no_steps(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("Noxus runs carry no steps: remove `steps: true` from this source")
        return value


class _Workflow(WireModel):
    id: str | None = None
    name: str | None = None


class NoxusRun(WireModel):
    id: str = Field(min_length=1)
    workflow_id: str | None = None
    status: str
    progress: WireMeasure | None = None
    created_at: UtcDatetime
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    workflow: _Workflow | None = None


class NoxusProvider(Provider[NoxusSettings]):
    name: ClassVar[str] = "noxus"
    settings_model: ClassVar[type[SourceSettings]] = NoxusSettings
    docs: ClassVar[ProviderDocs] = ProviderDocs(
        title="Noxus",
        auth="`X-API-Key: <key>`",
        list="`GET /v1/runs?page&size`, `{items,total,page,size,pages}`",
        one_run="`GET /v1/runs/{id}`",
        incremental_by="`created_at`",
        active_reread="paging down to them when cheaper, else lookups",
        code_label="`unspecified` (no code in the API)",
        duration=(
            "`finished_at - started_at`; without `started_at` (not in the seed docs) "
            "`finished_at - created_at`, queue wait included"
        ),
        progress="`progress / progress_scale`",
        steps="none: the runs carry no steps (`steps: true` is refused as a config error)",
    )
    default_status_map: ClassVar[Mapping[str, RunStatus]] = {
        "queued": RunStatus.QUEUED,
        "running": RunStatus.RUNNING,
        "awaiting_human_feedback": RunStatus.NEEDS_REVIEW,
        "completed": RunStatus.SUCCEEDED,
        "failed": RunStatus.FAILED,
        "stopped": RunStatus.CANCELLED,
    }

    @classmethod
    def auth_headers(cls, settings: SourceSettings, api_key: str) -> dict[str, str]:
        return {"X-API-Key": api_key}

    def decode_page(self, body: Any, headers: Mapping[str, str]) -> Page[Run]:
        listed = self.listed_items(body, "items")
        numbers = self.paging_numbers({k: body.get(k) for k in _PAGE_INFO}, "page")
        runs = list(self.parse_items(listed, self._to_run))
        return Page(
            runs,
            len(listed),
            number=numbers["page"],
            total_items=numbers["total"],
            total_pages=numbers["pages"],
            ids=tuple(run.id for run in runs),
        )

    def scan(self, floor: datetime, *, first_read_floor: datetime | None = None) -> Iterator[Run]:
        def fetch(number: int, size: int) -> Page[Run]:
            response = self.get_page(
                "/v1/runs", number=number, params={"page": number, "size": size}
            )
            return self.decode_page(response.body, response.headers)

        for page in self.paged_list(fetch, "all", time_of=list_position).pages(floor):
            yield from page.items

    def get_run(self, run_id: str, workflow_id: str | None = None) -> Run | None:
        return self.fetch_one(f"/v1/runs/{segment(run_id)}", self._to_run)

    def _to_run(self, item: Any) -> Run:
        wire = NoxusRun.model_validate(item)
        workflow_id = wire.workflow_id or (wire.workflow.id if wire.workflow else None)
        if not workflow_id:
            raise ValueError(f"run {wire.id!r} names no workflow (workflow_id)")
        status = self.map_status(wire.status)
        progress = None
        if wire.progress is not None:
            progress = min(1.0, max(0.0, wire.progress / self.settings.progress_scale))
        return Run(
            id=wire.id,
            workflow_id=workflow_id,
            workflow_name=wire.workflow.name if wire.workflow else None,
            status=status,
            native_status=wire.status,
            created_at=wire.created_at,
            cursor_time=wire.created_at,
            started_at=wire.started_at,
            finished_at=wire.finished_at,
            progress=progress,
            error_code=UNSPECIFIED_CODE if status is RunStatus.FAILED else None,
        )


# The paging facts of a page a walk reads, each checked on its own (`paging_numbers`).
_PAGE_INFO = ("page", "total", "pages")
