"""Cortex: Bearer key; runs are listed per workflow only, as bare JSON arrays with the paging
totals in `pagination-*` response headers.

Workflows are discovered (`GET /apps/{app_id}/workflows`, disabled and deleted ones skipped) every
`discovery_interval` (every cycle by default: it costs one request per page of workflows), so a
workflow created while the exporter runs is picked up at the next cycle, and its first read goes
down to the backfill window, so the runs it had before it was discovered count too. With several
shards each keeps only the workflows that hash to it. The API gives no error code, only free
text: the `code` label is `unspecified` and the text goes to the logs.

A run is addressed within its workflow (`/workflows/{id}/runs/{run}`) and its id is not promised
unique across workflows: its key (`Run.id`) is always the workflow id and the run id together
(`scoped_id`), never the run id alone; people read the run id (`Run.shown`).

Runs are listed for every origin and filtered by the `origin` setting after the page walk
(`admits`): one request per page whatever the filter, and the list's total stays comparable to the
workflow's `runs_count`. TEST runs are left out by default.

Timestamps come as ISO instants, Unix seconds or milliseconds, or bare dates (`2023-12-25`, as the
docs show them): a date is a day, not midnight (see `Run.day_only`).

Over 300 lines with no named split: a provider is one file (its settings, wire models, discovery
and steps policy), as the registry and the shared checks expect.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from exporter.core.errors import PayloadError
from exporter.core.filters import one_or_many
from exporter.core.model import (
    DAY,
    UNSPECIFIED_CODE,
    Run,
    RunStatus,
    StepStatus,
    scoped_id,
    split_scoped_id,
)
from exporter.core.units import Duration
from exporter.providers.base import (
    PagedSourceSettings,
    Provider,
    ProviderDocs,
    SourceSettings,
    list_position,
    segment,
)
from exporter.providers.pages import Page
from exporter.providers.paging import PagedList
from exporter.providers.steps import StepsRead, keyed_progress, read_keyed_steps
from exporter.providers.wire import WireCount, WireModel, inexact_fields, loose_moment

# The origins Cortex documents for a run; `TEST` runs are someone trying a workflow out.
Origin = Literal["ALL", "WORKFLOW", "TRIGGER", "RECORD", "TEST", "ENDPOINT", "WEBHOOK"]
ORIGINS: tuple[Origin, ...] = ("WORKFLOW", "TRIGGER", "RECORD", "TEST", "ENDPOINT", "WEBHOOK")
DEFAULT_ORIGINS: tuple[Origin, ...] = tuple(o for o in ORIGINS if o != "TEST")


class CortexSettings(PagedSourceSettings):
    provider: str = "cortex"
    base_url: str = "https://api.withcortex.ai"
    app_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    page_size: int = Field(default=50, ge=1, le=1000)
    # Which origins are counted: one, a list, or ALL. Read from one unfiltered listing per
    # workflow and filtered here, so the request count and the `runs_count` check stay as they
    # are. The default leaves out TEST.
    origin: tuple[Origin, ...] = Field(default=DEFAULT_ORIGINS, min_length=1)
    # One request per page of workflows: cheap enough for every cycle.
    discovery_interval: Duration = timedelta(0)
    max_workflows_discovered: int = Field(default=1000, ge=1)
    # 500 requests/minute per IP are documented: 6/s (360/min, bursts of 6) stays well below.
    rate_limit: float | None = Field(default=6.0, gt=0)

    @field_validator("origin", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        value = one_or_many(value)
        if isinstance(value, list | tuple):
            return tuple(v.upper() if isinstance(v, str) else v for v in value)
        return value

    @field_validator("origin")
    @classmethod
    def _all_alone(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "ALL" in value and len(value) > 1:
            raise ValueError("ALL already takes every origin; give ALL alone or a list without it")
        return tuple(dict.fromkeys(value))

    @property
    def counts_every_origin(self) -> bool:
        return self.origin == ("ALL",)

    def counts_origin(self, origin: str | None) -> bool:
        """A run whose origin is missing or one the docs do not list is counted: it cannot be
        told from a real run, and losing runs unseen is worse than counting a new kind."""
        return self.counts_every_origin or origin not in ORIGINS or origin in self.origin


class CortexWorkflow(WireModel):
    id: str = Field(min_length=1)
    name: str | None = None
    enabled: bool | None = True
    deleted: bool | None = False
    runs_count: WireCount | None = None


class CortexRun(WireModel):
    id: str = Field(min_length=1)
    status: str
    error: Any = None
    origin: Any = None
    started_at: Any = None
    ended_at: Any = None
    created_at: Any
    workflow_id: str | None = None
    output: Any = None


class CortexProvider(Provider[CortexSettings]):
    name: ClassVar[str] = "cortex"
    settings_model: ClassVar[type[SourceSettings]] = CortexSettings
    docs: ClassVar[ProviderDocs] = ProviderDocs(
        title="Cortex",
        auth="`Authorization: Bearer <key>`",
        list=(
            "per workflow `GET /apps/{app}/workflows/{id}/runs?page&take`, bare array, totals "
            "in `pagination-*` headers"
        ),
        one_run="`GET /apps/{app}/workflows/{id}/runs/{run}`",
        incremental_by="`created_at`, per workflow",
        active_reread="paging down to them when cheaper, else lookups",
        code_label="`unspecified`; the free-text `error` goes to the logs",
        duration="`ended_at - started_at`; not observed where either is a bare date",
        progress="completed step outputs / step outputs",
        steps=(
            "`output` of finished runs (`steps: true` by default); `step` = the output's key; "
            "duration `end - start` (epoch ms or s, or ISO)"
        ),
        other=(
            "disabled and deleted workflows skipped; rediscovered every cycle; `runs_count` "
            "checked against the runs list"
        ),
    )
    default_status_map: ClassVar[Mapping[str, RunStatus]] = {
        "PENDING": RunStatus.QUEUED,
        "RUNNING": RunStatus.RUNNING,
        "COMPLETED": RunStatus.SUCCEEDED,
        "FAILED": RunStatus.FAILED,
        "CANCELLED": RunStatus.CANCELLED,
        "SKIPPED": RunStatus.SKIPPED,
    }
    steps_by_default: ClassVar[bool] = True
    default_step_map: ClassVar[Mapping[str, StepStatus]] = {
        "PENDING": StepStatus.NOT_STARTED,
        "RUNNING": StepStatus.UNFINISHED,
        "COMPLETED": StepStatus.SUCCEEDED,
        "FAILED": StepStatus.FAILED,
        "CANCELLED": StepStatus.CANCELLED,
        "SKIPPED": StepStatus.SKIPPED,
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
        # Workflows found since the first discovery whose runs list has not been read whole down
        # to the backfill window yet.
        self._new: set[str] = set()

    @classmethod
    def check_lines(cls, settings: Any, ok: bool) -> list[str]:
        origins = getattr(settings, "origin", DEFAULT_ORIGINS)
        left_out = [o for o in ORIGINS if o not in origins and "ALL" not in origins]
        return [
            f"origin: {', '.join(origins)}"
            + (f" ({', '.join(left_out)} left out)" if left_out else "")
        ]

    @classmethod
    def hint(cls, settings: Any, situation: str) -> str:
        return "check app_id too" if situation == "not_found" else ""

    @classmethod
    def auth_headers(cls, settings: SourceSettings, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    # Discovery ------------------------------------------------------------------------------

    def workflows(self) -> dict[str, CortexWorkflow]:
        s = self.settings
        due = self._discovered_at is None or (
            self._monotonic() - self._discovered_at >= s.discovery_interval.total_seconds()
        )
        if due:
            found: dict[str, CortexWorkflow] = {}
            path = f"/apps/{s.app_id}/workflows"
            for page in self._list(
                path, "list_workflows", {}, "workflows", CortexWorkflow.model_validate
            ):
                for workflow in page.items:
                    # A workflow left out by the `workflows` filter is never listed: no requests.
                    if (
                        workflow.enabled is not False
                        and not workflow.deleted
                        and s.workflows.admits(workflow.id, workflow.name)
                    ):
                        found[workflow.id] = workflow
                if len(found) >= s.max_workflows_discovered:
                    break
            # Every shard lists all workflows and keeps its own, so the bound above means the
            # same whatever the shard count.
            owned = {
                workflow_id: workflow
                for workflow_id, workflow in found.items()
                if self.shard.owns_workflow(s.name, workflow_id)
            }
            if self._discovered_at is not None:
                self._new |= owned.keys() - self._workflows.keys()
            self._workflows = owned
            self._discovered_at = self._monotonic()
        return self._workflows

    # Runs -------------------------------------------------------------------------------------

    def admits(self, run: Run) -> bool:
        if run.origin is not None and run.origin not in ORIGINS:
            self.say_once("origin", run.origin, "an origin the docs do not list; counted")
        return self.settings.counts_origin(run.origin)

    def scan(self, floor: datetime, *, first_read_floor: datetime | None = None) -> Iterator[Run]:
        s = self.settings
        # Every origin is listed (no `origin` parameter) and filtered after the page walk:
        # one request per page either way, and the list's total stays comparable to runs_count.
        params: dict[str, str | int] = {}
        for workflow in list(self.workflows().values()):
            path = f"/apps/{s.app_id}/workflows/{segment(workflow.id)}/runs"
            new = workflow.id in self._new
            depth = min(floor, first_read_floor) if new and first_read_floor else floor

            def build(item: Any, workflow: CortexWorkflow = workflow) -> Run:
                return self._to_run(item, workflow)

            pages = self._list(path, "list_runs", params, workflow.id, build, depth)
            for index, page in enumerate(pages):
                if index == 0:
                    self._check_runs_count(workflow, page)
                yield from page.items
            self._new.discard(workflow.id)

    def get_run(self, run_id: str, workflow_id: str | None = None) -> Run | None:
        """`run_id`: the run's key, which names its workflow (`scoped_id`)."""
        s = self.settings
        scoped = split_scoped_id(run_id)
        if scoped is None:
            return None  # not a key this provider made: nothing to look up by
        workflow_id, api_id = scoped
        workflow = self.workflows().get(workflow_id) or CortexWorkflow(id=workflow_id)
        return self.fetch_one(
            f"/apps/{s.app_id}/workflows/{segment(workflow_id)}/runs/{segment(api_id)}",
            lambda item: self._to_run(item, workflow),
        )

    def _check_runs_count(self, workflow: CortexWorkflow, page: Page[Run]) -> None:
        """The workflow list says how many runs a workflow has; its runs list should show them
        all (more is fine: runs arrive between the two requests)."""
        claimed, listed = workflow.runs_count, page.total_items
        # A count below the page's own items is the page walk's to report (`total_below_items`).
        if claimed is not None and listed is not None and page.received <= listed < claimed:
            self.events.inconsistency(
                "runs_count_mismatch",
                f"workflow {workflow.id!r} has runs_count {claimed} but its runs list counts "
                f"{listed}",
            )

    def decode_page(
        self, body: Any, headers: Mapping[str, str], workflow: CortexWorkflow | None = None
    ) -> Page[Run]:
        """A runs page; its items name their workflow by id only (the name comes from the
        workflow list, when the caller has it)."""

        def build(item: Any) -> Run:
            owner = workflow
            if owner is None:
                listed = item.get("workflow_id") if isinstance(item, dict) else None
                owner = CortexWorkflow(id=str(listed or "unknown"))
            return self._to_run(item, owner)

        page: Page[Run] = self._decode(body, headers, build, "list_runs")
        return page

    def _decode(
        self, body: Any, headers: Mapping[str, str], build: Callable[[Any], Any], endpoint: str
    ) -> Page[Any]:
        if not isinstance(body, list):
            raise PayloadError(self.settings.name, endpoint, "expected a JSON array")
        items = list(self.parse_items(body, build))
        numbers = self.paging_numbers(
            {name: headers.get(name) for name in ("pagination-page", "pagination-count")},
            "header",
        )
        return Page(
            items,
            len(body),
            number=numbers["pagination-page"],
            total_items=numbers["pagination-count"],
            ids=tuple(str(item.id) for item in items),
        )

    def _list(
        self,
        path: str,
        endpoint: str,
        params: Mapping[str, str | int],
        key: str,
        build: Callable[[Any], Any],
        floor: datetime | None = None,
    ) -> Iterator[Page[Any]]:
        def fetch(number: int, size: int) -> Page[Any]:
            response = self.get_page(
                path,
                number=number,
                endpoint=endpoint,
                params={**params, "page": number, "take": size},
            )
            return self._decode(response.body, response.headers, build, endpoint)

        time_of = list_position if endpoint == "list_runs" else None
        walker: PagedList[Any] = self.paged_list(fetch, key, time_of=time_of)
        return walker.pages(floor)

    def _optional_moment(self, wire: CortexRun, name: str) -> tuple[datetime, bool] | None:
        try:
            return loose_moment(getattr(wire, name), name)
        except ValueError as exc:
            self._invalid_field(wire.id, str(exc))
            return None

    def _to_run(self, item: Any, workflow: CortexWorkflow) -> Run:
        wire = CortexRun.model_validate(item)
        status = self.map_status(wire.status)
        created = loose_moment(wire.created_at, "created_at")
        if created is None:
            raise ValueError("created_at: field required")
        # A bad start or end is left out of the run (counted), never a reason to lose it.
        started = self._optional_moment(wire, "started_at")
        ended = self._optional_moment(wire, "ended_at")
        moments = {"created_at": created, "started_at": started, "finished_at": ended}
        # Most runs give exact times: no set built for them.
        exact = created[1] and (started is None or started[1]) and (ended is None or ended[1])
        day_only = inexact_fields(moments) if not exact else frozenset()
        if day_only:
            self.say_once("timestamps", "date_only", f"{sorted(day_only)[0]} is a date only")
        # An end time and steps count for a terminal status, and for one nobody mapped (it has
        # finished).
        ends = status.may_have_ended
        counted = StepsRead((), 0)
        if ends and self.steps_on:
            counted = read_keyed_steps(
                wire.output, self.step_mapper, lambda detail: self._invalid_field(wire.id, detail)
            )
        # Only a run still going has progress to show.
        progress = None if status.terminal else keyed_progress(wire.output)
        message = wire.error if isinstance(wire.error, str) else None
        return Run(
            # Run ids are addressed per workflow (`/workflows/{id}/runs/{run}`) and not promised
            # unique across workflows: the key is always scoped by the workflow listed.
            id=scoped_id(workflow.id, wire.id),
            shown_id=wire.id,
            workflow_id=wire.workflow_id or workflow.id,
            workflow_name=workflow.name,
            status=status,
            native_status=wire.status,
            created_at=created[0],
            # A date-only creation may lie anywhere in its day: the list position is its end.
            cursor_time=created[0] if created[1] else created[0] + DAY,
            started_at=started[0] if started else None,
            finished_at=ended[0] if ended and ends else None,
            progress=progress,
            error_code=UNSPECIFIED_CODE if status is RunStatus.FAILED else None,
            error_message=message,
            steps=counted.steps,
            invalid_steps=counted.invalid,
            day_only=day_only,
            origin=wire.origin.upper()[:32] if isinstance(wire.origin, str) else None,
        )
