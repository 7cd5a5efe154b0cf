"""Cortex: Bearer key; runs are listed per workflow only, as bare JSON arrays with the paging
totals in `pagination-*` response headers.

Workflows are discovered (`GET /apps/{app_id}/workflows`, disabled and deleted ones skipped) and
rediscovered every `discovery_interval`, so a workflow created while the exporter runs is picked
up. With several shards each keeps only the workflows that hash to it. Each workflow's runs are
read newest-created first down to the cycle's floor. The API gives no error code, only free text:
the `code` label is `unspecified` and the text goes to the logs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field

from exporter.http import HttpStatusError, JsonResponse, PayloadError
from exporter.model import UNSPECIFIED_CODE, Run, RunStatus, Step
from exporter.providers.base import Duration, Provider, SourceSettings
from exporter.providers.paging import Page, reached_floor, walk_pages
from exporter.providers.wire import WireModel


def _timestamp(value: Any) -> Any:
    """Cortex documents some timestamps as bare dates (`2023-12-25`): read those as midnight UTC;
    numbers are Unix seconds (or milliseconds when implausibly large)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"timestamp {value!r} is out of range") from None
    if isinstance(value, str) and len(value) == 10:
        try:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=UTC)
        except ValueError:
            return value
    return value


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


CortexTime = Annotated[datetime, BeforeValidator(_timestamp)]


class CortexSettings(SourceSettings):
    provider: str = "cortex"
    base_url: str = "https://api.withcortex.ai"
    app_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    page_size: int = Field(default=50, ge=1, le=1000)
    # Not documented: `auto` asks for page 0 and reads the `pagination-page` header to learn
    # whether the API counts from 0 or 1.
    first_page: int | None = Field(default=None, ge=0, le=1)
    max_pages: int = Field(default=10_000, ge=1)
    origin: str = Field(
        default="ALL", pattern=r"^(ALL|WORKFLOW|TRIGGER|RECORD|TEST|ENDPOINT|WEBHOOK)$"
    )
    discovery_interval: Duration = timedelta(minutes=10)
    max_workflows_discovered: int = Field(default=1000, ge=1)
    # 500 requests/minute per IP are documented: 6/s (360/min, bursts of 6) stays well below.
    rate_limit: float | None = Field(default=6.0, gt=0)


class CortexWorkflow(WireModel):
    id: str = Field(min_length=1)
    name: str | None = None
    enabled: bool | None = True
    deleted: bool | None = False


class CortexRun(WireModel):
    id: str = Field(min_length=1)
    status: str
    error: Any = None
    started_at: CortexTime | None = None
    ended_at: CortexTime | None = None
    created_at: CortexTime
    updated_at: CortexTime | None = None
    workflow_id: str | None = None
    output: Any = None


class CortexProvider(Provider):
    name: ClassVar[str] = "cortex"
    settings_model: ClassVar[type[SourceSettings]] = CortexSettings
    default_status_map: ClassVar[Mapping[str, RunStatus]] = {
        "PENDING": RunStatus.QUEUED,
        "RUNNING": RunStatus.RUNNING,
        "COMPLETED": RunStatus.SUCCEEDED,
        "FAILED": RunStatus.FAILED,
        "CANCELLED": RunStatus.CANCELLED,
        "SKIPPED": RunStatus.SKIPPED,
    }
    # One app can hold many workflows, each listed on its own: they spread across shards.
    shards_by_workflow: ClassVar[bool] = True

    def __init__(
        self, *args: Any, monotonic: Callable[[], float] = time.monotonic, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._monotonic = monotonic
        self._workflows: dict[str, CortexWorkflow] = {}
        self._discovered_at: float | None = None
        self._first_page: int | None = None

    @property
    def _settings(self) -> CortexSettings:
        assert isinstance(self.settings, CortexSettings)
        return self.settings

    @classmethod
    def auth_headers(cls, settings: SourceSettings, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    # Discovery ------------------------------------------------------------------------------

    def workflows(self) -> dict[str, CortexWorkflow]:
        s = self._settings
        due = self._discovered_at is None or (
            self._monotonic() - self._discovered_at >= s.discovery_interval.total_seconds()
        )
        if due:
            found: dict[str, CortexWorkflow] = {}
            path = f"/apps/{s.app_id}/workflows"
            for page in self._walk(path, "list_workflows", {}, self._to_workflow, lambda _p: True):
                for workflow in page.items:
                    if workflow.enabled is not False and not workflow.deleted:
                        found[workflow.id] = workflow
                if len(found) >= s.max_workflows_discovered:
                    break
            # Every shard lists all workflows and keeps its own, so the bound above means the
            # same whatever the shard count.
            self._workflows = {
                workflow_id: workflow
                for workflow_id, workflow in found.items()
                if self.shard.owns_workflow(s.name, workflow_id)
            }
            self._discovered_at = self._monotonic()
        return self._workflows

    # Runs -------------------------------------------------------------------------------------

    def scan(self, floor: datetime) -> Iterator[Run]:
        s = self._settings
        params: dict[str, str | int] = {} if s.origin == "ALL" else {"origin": s.origin}
        for workflow in list(self.workflows().values()):
            path = f"/apps/{s.app_id}/workflows/{workflow.id}/runs"

            def build(item: Any, workflow: CortexWorkflow = workflow) -> Run:
                return self._to_run(item, workflow)

            def keep_going(page: Page[Run]) -> bool:
                return not reached_floor([r.cursor_time for r in page.items], floor)

            for page in self._walk(path, "list_runs", params, build, keep_going):
                yield from page.items

    def get_run(self, run_id: str, workflow_id: str | None = None) -> Run | None:
        s = self._settings
        if workflow_id is None:
            return None
        workflow = self.workflows().get(workflow_id) or CortexWorkflow(id=workflow_id)
        return self.fetch_one(
            f"/apps/{s.app_id}/workflows/{workflow_id}/runs/{run_id}",
            lambda item: self._to_run(item, workflow),
        )

    def _walk(
        self,
        path: str,
        endpoint: str,
        params: Mapping[str, str | int],
        build: Callable[[Any], Any],
        keep_going: Callable[[Page[Any]], bool],
    ) -> Iterator[Page[Any]]:
        s = self._settings

        def fetch(index: int) -> Page[Any]:
            # The walk counts pages from 0; the API's numbering starts at its first page index,
            # learned from the first answer when it is not configured.
            number = index + self._page_base()
            try:
                response = self.client.get_json(
                    path, endpoint=endpoint, params={**params, "page": number, "take": s.page_size}
                )
            except HttpStatusError as exc:
                if not (number == 0 and self._page_base_unknown() and exc.status in (400, 422)):
                    raise
                # Page 0 refused: the API counts from 1.
                self._first_page = 1
                response = self.client.get_json(
                    path, endpoint=endpoint, params={**params, "page": 1, "take": s.page_size}
                )
            if not isinstance(response.body, list):
                raise PayloadError(s.name, endpoint, "expected a JSON array")
            self._learn_first_page(number, response)
            items = list(self.parse_items(response.body, build))
            return Page(
                items,
                size=_header_int(response, "pagination-take"),
                total_pages=self._total_pages(response),
                received=len(response.body),
            )

        return walk_pages(
            fetch,
            first_page=0,
            page_size=s.page_size,
            max_pages=s.max_pages,
            keep_going=keep_going,
        )

    def _page_base_unknown(self) -> bool:
        return self._settings.first_page is None and self._first_page is None

    def _page_base(self) -> int:
        if self._settings.first_page is not None:
            return self._settings.first_page
        return self._first_page if self._first_page is not None else 0

    def _learn_first_page(self, asked: int, response: JsonResponse) -> None:
        if self._settings.first_page is not None or self._first_page is not None:
            return
        echoed = _header_int(response, "pagination-page")
        # Asked for 0 and told 1: the API counts from 1 (and clamped our request).
        self._first_page = 1 if (asked == 0 and echoed == 1) else 0

    def _total_pages(self, response: JsonResponse) -> int | None:
        count = _header_int(response, "pagination-count")
        take = _header_int(response, "pagination-take") or self._settings.page_size
        if count is None or take <= 0:
            return None
        return max(1, math.ceil(count / take))

    def _to_workflow(self, item: Any) -> CortexWorkflow:
        return CortexWorkflow.model_validate(item)

    def _to_run(self, item: Any, workflow: CortexWorkflow) -> Run:
        wire = CortexRun.model_validate(item)
        status = self.map_status(wire.status)
        steps = _steps(wire.output)
        progress = None
        if steps and not status.terminal:
            progress = sum(1 for st in steps if st.status == "COMPLETED") / len(steps)
        message = wire.error if isinstance(wire.error, str) else None
        created = _as_utc(wire.created_at)
        return Run(
            id=wire.id,
            workflow_id=wire.workflow_id or workflow.id,
            workflow_name=workflow.name,
            status=status,
            native_status=wire.status,
            created_at=created,
            cursor_time=created,
            started_at=_as_utc(wire.started_at) if wire.started_at else None,
            finished_at=_as_utc(wire.ended_at) if wire.ended_at and status.terminal else None,
            progress=progress,
            error_code=UNSPECIFIED_CODE if status is RunStatus.FAILED else None,
            error_message=message,
            steps=steps,
        )


def _steps(output: Any) -> tuple[Step, ...]:
    """Step outputs come keyed by step key (or, in older docs, as a list)."""
    values: list[Any]
    if isinstance(output, dict):
        values = list(output.values())
    elif isinstance(output, list):
        values = output
    else:
        return ()
    steps = []
    for value in values:
        if isinstance(value, dict) and isinstance(value.get("status"), str):
            steps.append(
                Step(
                    name=str(value.get("key", "")),
                    status=value["status"],
                    type=value.get("type") if isinstance(value.get("type"), str) else None,
                )
            )
    return tuple(steps)


def _header_int(response: JsonResponse, name: str) -> int | None:
    value = response.headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
