"""Extend: Bearer key plus `x-extend-api-version`, cursor pages sorted by `updatedAt` descending.

A state change that bumps `updatedAt` moves the run to the front of the list, so reading down to
the watermark sees it. The docs do not promise that every change does: runs that stay active are
looked up by id once they have gone `recheck_after` unseen (within the `lookup_budget`), and a
change found that way is reported as one the cursor missed. A cursor that leads back to a token
already followed, or a page that repeats the one before, ends the walk loudly (`cursors`).
Summaries carry no failure reason: a run that newly reached FAILED is parked until
`GET /workflow_runs/{id}` gives its `failureReason` (the `code` label). Rejected runs count as
errors with the code `unspecified` (Extend gives a free-text `rejectionNote` only).

Over 300 lines with no named split: a provider is one file (its settings, wire models, webhook
dialect and steps policy), as the registry and the shared checks expect.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field

from exporter.core.errors import PaginationRunaway
from exporter.core.model import ERROR_STATUSES, UNSPECIFIED_CODE, Run, RunStatus, Step, StepStatus
from exporter.providers.base import Provider, ProviderDocs, SourceSettings, segment
from exporter.providers.cursors import CursorTrail
from exporter.providers.paging import Page, reached_floor
from exporter.providers.steps import StepMapper, StepsRead, text_field
from exporter.providers.webhooks import (
    Dialect,
    Event,
    Signed,
    hmac_sha256_hex,
    id_text,
    same_signature,
    signed_timestamp,
)
from exporter.providers.wire import UtcDatetime, WireModel

REGIONAL_BASE_URLS = (
    "https://api.extend.ai",
    "https://api.us2.extend.app",
    "https://api.eu1.extend.ai",
)


class ExtendSettings(SourceSettings):
    provider: str = "extend"
    base_url: str = REGIONAL_BASE_URLS[0]
    api_version: str = "2026-02-09"
    workspace_id: str | None = None
    page_size: int = Field(default=100, ge=1, le=1000)
    max_pages: int = Field(default=10_000, ge=1)
    # Extend's documented read limit is 10 requests/s on the smallest plan: stay below it.
    rate_limit: float | None = Field(default=8.0, gt=0)


class _Workflow(WireModel):
    id: str
    name: str | None = None


class ExtendRun(WireModel):
    id: str = Field(min_length=1)
    status: str
    workflow: _Workflow
    dashboardUrl: str | None = None  # noqa: N815 - wire name
    initialRunAt: UtcDatetime | None = None  # noqa: N815 - wire name
    startTime: UtcDatetime | None = None  # noqa: N815 - wire name
    endTime: UtcDatetime | None = None  # noqa: N815 - wire name
    createdAt: UtcDatetime  # noqa: N815 - wire name
    updatedAt: UtcDatetime  # noqa: N815 - wire name
    failureReason: str | None = None  # noqa: N815 - wire name
    failureMessage: str | None = None  # noqa: N815 - wire name
    # Left raw: each step run is read on its own (`providers.steps`), so one bad one loses itself.
    stepRuns: Any = None  # noqa: N815 - wire name


class _ExtendPage(WireModel):
    """A list page whose items are all valid, read straight from the bytes."""

    data: list[ExtendRun]
    nextPageToken: str | None = None  # noqa: N815 - wire name


class ExtendDialect:
    """`x-extend-request-signature` = hex HMAC-SHA256 of `v0:<timestamp>:<raw body>`."""

    name = "extend"
    runs_by_url = True
    run_events = frozenset(
        {
            "workflow_run.completed",
            "workflow_run.failed",
            "workflow_run.needs_review",
            "workflow_run.rejected",
            "workflow_run.cancelled",
        }
    )
    signature_doc = (
        "`x-extend-request-signature`: hex HMAC-SHA256 of `v0:<timestamp>:<raw body>`, "
        "`x-extend-request-timestamp`"
    )

    def signed(self, headers: Mapping[str, str], body: bytes, secret: bytes) -> Signed | None:
        stamp = headers.get("x-extend-request-timestamp", "")
        given = headers.get("x-extend-request-signature", "").strip().lower()
        when = signed_timestamp(stamp)
        if when is None or not given:
            return None
        expected = hmac_sha256_hex(secret, b"v0:" + stamp.strip().encode() + b":" + body)
        if not same_signature(expected, given):
            return None
        return Signed(when, given)

    def event(self, body: Any, run_id_paths: Sequence[str]) -> Event:
        if not isinstance(body, dict):
            return Event(None, None, False, None)
        event_id = id_text(body.get("eventId"))
        event_type = id_text(body.get("eventType"))
        if event_type not in self.run_events:
            return Event(event_id, event_type, False, None)
        payload = body.get("payload")
        if not isinstance(payload, dict):
            return Event(event_id, event_type, True, None)
        run_id = id_text(payload.get("id"))
        return Event(event_id, event_type, True, run_id, payload if run_id else None)


class ExtendProvider(Provider[ExtendSettings]):
    name: ClassVar[str] = "extend"
    settings_model: ClassVar[type[SourceSettings]] = ExtendSettings
    cursor_tracks_changes: ClassVar[bool] = True
    docs: ClassVar[ProviderDocs] = ProviderDocs(
        title="Extend",
        auth="`Authorization: Bearer <key>` + `x-extend-api-version`",
        list="`GET /workflow_runs?sortBy=updatedAt&sortDir=desc`, cursor `nextPageToken`",
        one_run="`GET /workflow_runs/{id}` (failure details)",
        incremental_by=(
            "`updatedAt`: a change moves a run to the front; runs unseen for `recheck_after` "
            "are looked up anyway"
        ),
        active_reread="none",
        code_label=(
            "`failureReason` from the detail, fetched for newly failed runs within "
            "`lookup_budget` (a failed run waits, uncounted and not active, until its reason is "
            "in); `unspecified` for rejected runs"
        ),
        duration="`endTime - startTime`",
        progress="processed step runs / step runs, where the detail was fetched",
        other="`dashboardUrl` kept on the run (logged with failures)",
        steps=(
            "off by default (`steps: false`): the list has no steps, only the detail fetched "
            "for failed runs; `steps: true` counts `stepRuns[]` (`step` = `stepType`) of "
            "failed runs only, and the step failure ratio leaves these sources out"
        ),
    )
    default_step_map: ClassVar[Mapping[str, StepStatus]] = {
        "PENDING": StepStatus.NOT_STARTED,
        "WAITING": StepStatus.UNFINISHED,
        "PROCESSING": StepStatus.UNFINISHED,
        "PROCESSED": StepStatus.SUCCEEDED,
        "FAILED": StepStatus.FAILED,
        "CANCELLED": StepStatus.CANCELLED,
    }
    default_status_map: ClassVar[Mapping[str, RunStatus]] = {
        "PENDING": RunStatus.QUEUED,
        "PROCESSING": RunStatus.RUNNING,
        "CANCELLING": RunStatus.RUNNING,
        "NEEDS_REVIEW": RunStatus.NEEDS_REVIEW,
        "PROCESSED": RunStatus.SUCCEEDED,
        "FAILED": RunStatus.FAILED,
        "REJECTED": RunStatus.REJECTED,
        "CANCELLED": RunStatus.CANCELLED,
    }

    @classmethod
    def auth_headers(cls, settings: SourceSettings, api_key: str) -> dict[str, str]:
        assert isinstance(settings, ExtendSettings)
        headers = {
            "Authorization": f"Bearer {api_key}",
            "x-extend-api-version": settings.api_version,
        }
        if settings.workspace_id:
            headers["x-extend-workspace-id"] = settings.workspace_id
        return headers

    def fast_decode(self, raw: bytes) -> Any:
        # Pages whose items are all valid are read straight from the bytes into typed runs.
        return _ExtendPage.model_validate_json(raw)

    def decode_page(self, body: Any, headers: Mapping[str, str]) -> Page[Run]:
        if isinstance(body, _ExtendPage):
            runs = list(self.parse_items(body.data, self._summary_of))
            received, token = len(body.data), body.nextPageToken
        else:
            # Some item is invalid (or the page is odd): item by item, so that one bad record
            # never loses the rest of the page.
            items = self.listed_items(body, "data")
            runs = list(self.parse_items(items, self._summary_to_run))
            received = len(items)
            token = body.get("nextPageToken")
            token = token if isinstance(token, str) else None
        return Page(runs, received, cursor=token, ids=tuple(run.id for run in runs))

    def scan(self, floor: datetime, *, first_read_floor: datetime | None = None) -> Iterator[Run]:
        settings = self.settings
        token: str | None = None
        trail = CursorTrail()
        for _ in range(settings.max_pages):
            params: dict[str, str | int] = {
                "sortBy": "updatedAt",
                "sortDir": "desc",
                "maxPageSize": settings.page_size,
            }
            if token:
                params["nextPageToken"] = token
            response = self.client.get_json(
                "/workflow_runs",
                endpoint="list_runs",
                params=params,
                decode=self.fast_decode,
            )
            page = self.decode_page(response.body, response.headers)
            self.note_timestamp_forms()
            yield from page.items
            going_round = trail.stop_reason(page)
            if going_round is not None:
                # What was read is kept (counted); following the token would read it again.
                self.events.inconsistency(*going_round)
                return
            token = page.cursor
            cursor_times = [r.cursor_time for r in page.items]
            if not token or not page.received or reached_floor(cursor_times, floor):
                return
        raise PaginationRunaway(settings.max_pages)

    @classmethod
    def hint(cls, settings: Any, situation: str) -> str:
        regions = "Extend has " + ", ".join(url.split("//")[1] for url in REGIONAL_BASE_URLS)
        return {
            "auth_refused": "organisation-scoped keys also need workspace_id",
            "version_refused": (
                f"api_version {getattr(settings, 'api_version', '?')!r} is not accepted for "
                "this key; set the version your account uses"
            ),
            "not_found": regions,
            "unreachable": regions,
        }.get(situation, "")

    @classmethod
    def check_lines(cls, settings: Any, ok: bool) -> list[str]:
        version = getattr(settings, "api_version", "?")
        return [f"api version: {version} {'accepted' if ok else 'not confirmed'}"]

    def list_facts(self) -> dict[str, str]:
        # The order is asked for (documented), and a cursor has no page numbers.
        return {**super().list_facts(), "list_order": "newest_first", "first_page": "none"}

    def get_run(self, run_id: str, workflow_id: str | None = None) -> Run | None:
        return self.fetch_one(f"/workflow_runs/{segment(run_id)}", self._detail_to_run)

    # The documented event body is `{eventId, eventType, payload: WorkflowRun}`.
    events_carry_whole_runs: ClassVar[bool] = True
    webhook_dialect: ClassVar[Dialect | None] = ExtendDialect()
    # Steps come from a failed run's failure details only.
    steps_of_failed_runs_only: ClassVar[bool] = True

    def run_from_event(self, item: Any) -> Run | None:
        runs = list(self.parse_items([item], self._detail_to_run))
        return runs[0] if runs else None

    def _summary_to_run(self, item: Any) -> Run:
        return self._summary_of(ExtendRun.model_validate(item))

    def _summary_of(self, wire: ExtendRun) -> Run:
        return self._to_run(wire, detailed=False)

    def _detail_to_run(self, item: Any) -> Run:
        # The detail may come bare or wrapped (`{"workflowRun": {...}}`); take either.
        if isinstance(item, dict) and isinstance(item.get("workflowRun"), dict):
            item = item["workflowRun"]
        return self._to_run(ExtendRun.model_validate(item), detailed=True)

    def _to_run(self, wire: ExtendRun, *, detailed: bool) -> Run:
        status = self.map_status(wire.status)
        failed = status is RunStatus.FAILED
        error_code = None
        if failed and detailed:
            error_code = wire.failureReason or UNSPECIFIED_CODE
        elif status in ERROR_STATUSES and not failed:
            error_code = UNSPECIFIED_CODE
        raw_steps = wire.stepRuns if isinstance(wire.stepRuns, list) else []
        natives = [item.get("status") for item in raw_steps if isinstance(item, dict)]
        progress = None
        if natives and not status.terminal:
            progress = sum(1 for native in natives if native == "PROCESSED") / len(natives)
        read = StepsRead((), 0)
        if detailed and failed:
            # Only details carry steps, and only failed runs are fetched in detail (see `docs`):
            # a succeeded run's detail (an event, a recheck) has them too, and counting them
            # there would make the counts depend on how the run arrived.
            mapper = self.step_mapper
            read = self.read_steps(wire.stepRuns, lambda item: _step(item, mapper))
        return Run(
            id=wire.id,
            workflow_id=wire.workflow.id,
            workflow_name=wire.workflow.name,
            status=status,
            native_status=wire.status,
            created_at=wire.createdAt,
            cursor_time=wire.updatedAt,
            started_at=wire.startTime or wire.initialRunAt,
            finished_at=wire.endTime if status.may_have_ended else None,
            progress=progress,
            error_code=error_code,
            error_message=wire.failureMessage if failed else None,
            dashboard_url=wire.dashboardUrl,
            steps=read.steps,
            invalid_steps=read.invalid,
            needs_detail=failed and not detailed,
        )


def _step(item: Any, mapper: StepMapper) -> Step | None:
    if not isinstance(item, dict):
        return None
    native, kind = text_field(item, "status"), text_field(item, "stepType")
    if native is None or kind is None:
        return None
    return Step(name=kind, status=native, type=kind, canonical=mapper.map(native))
