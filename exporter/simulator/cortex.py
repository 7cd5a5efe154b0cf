"""Cortex's API: Bearer key; workflows listed per app, runs listed per workflow as bare JSON arrays
with the paging totals in `pagination-page`, `pagination-take` and `pagination-count` headers.
500 requests per minute per client (429, no Retry-After: the docs promise none).

Pages count from 1; a request for page 0 is answered as page 1 (and the header says so), which is
how a client can tell (`variants` answer otherwise). Besides the world's workflows the app lists
one disabled and one deleted workflow, which a client must skip.

Runs carry an `origin`, spread over the simulator's `origins` (every documented one but TEST unless
asked for; `World.truth(origins=...)` gives the counts a client filtering by origin should show),
and the runs list honours the `origin` parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import unquote

from exporter.core.model import RunStatus, StepStatus
from exporter.simulator.exchange import Request, Response
from exporter.simulator.records import SimRun, SimWorkflow, Vocabulary
from exporter.simulator.server import SimulatorServer
from exporter.simulator.variant import ApiVariant, PageZero, reported_totals

DEFAULT_TAKE = 20
MAX_TAKE = 100
CAPPED = 25  # a silent cap well below MAX_TAKE
# Every origin Cortex documents but TEST, which its clients leave out by default.
DEFAULT_ORIGINS = ("WORKFLOW", "TRIGGER", "RECORD", "ENDPOINT", "WEBHOOK")
EVERY_ORIGIN = (*DEFAULT_ORIGINS, "TEST")


class CortexSimulator(SimulatorServer):
    provider: ClassVar[str] = "cortex"
    run_endpoint: ClassVar[str] = "/apps/{app}/workflows/{id}/runs/{run}"
    documented_rate_limit: ClassVar[tuple[int, float] | None] = (500, 60.0)
    app_id: ClassVar[str] = "app-sim"
    vocabulary = Vocabulary(
        queued="PENDING",
        running="RUNNING",
        succeeded="COMPLETED",
        failed="FAILED",
        cancelled="CANCELLED",
        skipped="SKIPPED",
        error_codes=False,
        table={
            "PENDING": RunStatus.QUEUED,
            "RUNNING": RunStatus.RUNNING,
            "COMPLETED": RunStatus.SUCCEEDED,
            "FAILED": RunStatus.FAILED,
            "CANCELLED": RunStatus.CANCELLED,
            "SKIPPED": RunStatus.SKIPPED,
        },
        step_labels=tuple(f"step_{index + 1}" for index in range(5)),
        step_names={
            StepStatus.SUCCEEDED: "COMPLETED",
            StepStatus.FAILED: "FAILED",
            StepStatus.CANCELLED: "CANCELLED",
            StepStatus.SKIPPED: "SKIPPED",
            StepStatus.NOT_STARTED: "PENDING",
            StepStatus.UNFINISHED: "RUNNING",
        },
        step_table={
            "PENDING": StepStatus.NOT_STARTED,
            "RUNNING": StepStatus.UNFINISHED,
            "COMPLETED": StepStatus.SUCCEEDED,
            "FAILED": StepStatus.FAILED,
            "CANCELLED": StepStatus.CANCELLED,
            "SKIPPED": StepStatus.SKIPPED,
        },
        step_times=True,
    )
    page_zero_default: ClassVar[PageZero] = "as_first"
    variants: ClassVar[Mapping[str, ApiVariant]] = {
        # Where the docs name no single-run path, or none at all, and a node dated ahead.
        "lookups_absent": ApiVariant(lookups="absent"),
        "clock_ahead": ApiVariant(clock_ahead=True),
        "oldest_first": ApiVariant(order="oldest_first"),
        "first_page_0": ApiVariant(first_page=0),
        "page_zero_empty": ApiVariant(page_zero="empty"),
        "page_cap": ApiVariant(page_cap=CAPPED),
        # Seed 004 shows run timestamps as bare dates.
        "date_only": ApiVariant(timestamps="date_only"),
        "no_offset": ApiVariant(timestamps="no_offset"),
        "oldest_first_capped": ApiVariant(order="oldest_first", page_cap=CAPPED, first_page=0),
        # Runs are addressed under their workflow; nothing says their ids are unique across
        # workflows.
        "per_workflow_ids": ApiVariant(run_ids="per_workflow"),
        "control_char_ids": ApiVariant(run_ids="control_chars"),
        # Totals the docs never promise to be right (see the Plextera simulator).
        "totals_low": ApiVariant(totals="low", first_page=0),
        "totals_negative": ApiVariant(totals="negative"),
        "totals_absurd": ApiVariant(totals="absurd", order="oldest_first"),
        "huge_numbers": ApiVariant(huge_numbers=True),
    }

    def __init__(self, *, origins: tuple[str, ...] = DEFAULT_ORIGINS, **kwargs: Any) -> None:
        """`origins`: the runs' origins, spread evenly (TEST only when asked for: a client's
        default leaves those out, and the shared tests compare with the world's whole truth)."""
        super().__init__(**kwargs)
        self.world.origins = origins

    _hidden: ClassVar[tuple[dict[str, Any], ...]] = (
        {"id": "wf-disabled", "name": "Old intake", "enabled": False, "deleted": False},
        {"id": "wf-deleted", "name": "Removed flow", "enabled": True, "deleted": True},
    )

    @property
    def base_url(self) -> str:
        return self.root_url

    def source_settings(self) -> dict[str, Any]:
        return {"app_id": self.app_id}

    def authorized(self, headers: Mapping[str, str]) -> bool:
        return headers.get("authorization") == f"Bearer {self.api_key}"

    def rate_limited(self, wait: float) -> Response:
        return self.error(429, "", "Too many requests")

    def is_list(self, request: Request) -> bool:
        return request.path.endswith("/runs")

    def list_items(self, body: Any) -> list[dict[str, Any]] | None:
        return body if isinstance(body, list) else None

    def break_record(self, item: dict[str, Any]) -> None:
        item["created_at"] = {"not": "a date"}

    def endpoint_of(self, request: Request) -> str:
        parts = request.path.strip("/").split("/")
        if len(parts) == 3:
            return "/apps/{app}/workflows"
        if len(parts) == 5:
            return "/apps/{app}/workflows/{id}/runs"
        return "/apps/{app}/workflows/{id}/runs/{run}"

    def error(self, status: int, code: str, message: str) -> Response:
        return Response(status, {"status": status, "message": message})

    def route(self, request: Request) -> Response:
        parts = request.path.strip("/").split("/")
        if request.method != "GET" or parts[:1] != ["apps"] or len(parts) < 3:
            return self.error(404, "", "Not found")
        if parts[1] != self.app_id or parts[2] != "workflows":
            return self.error(404, "", "App not found")
        if len(parts) == 3:
            with self.world.lock:  # run counts of one moment, not of one half-way through advance()
                rows = [self._workflow_json(w) for w in self.world.workflows]
            return self._paged(rows + list(self._hidden), request.query)
        workflow = next((w for w in self.world.workflows if w.id == parts[3]), None)
        if workflow is None:
            return self.error(404, "", "Workflow not found")
        if len(parts) == 5 and parts[4] == "runs":
            return self._runs(workflow, request.query)
        if len(parts) == 6 and parts[4] == "runs":
            run = self.world.run_of(unquote(parts[5]), workflow.id)
            if run is None or run.workflow.id != workflow.id:
                return self.error(404, "", "Run not found")
            return Response(body=self.render(run))
        return self.error(404, "", "Not found")

    def _runs(self, workflow: SimWorkflow, query: Mapping[str, str]) -> Response:
        status = query.get("status", "ALL")
        with self.world.lock:
            runs = [r for r in self.listed_runs() if r.workflow.id == workflow.id]
            if status != "ALL":
                runs = [r for r in runs if r.native_status == status]
            origin = query.get("origin", "ALL")
            if origin != "ALL":
                runs = [r for r in runs if self.world.origin_of(r) == origin]
            # Only the page's runs are rendered: a workflow with 100,000 runs is served a page
            # at a time without building every run's body for each page.
            return self._paged(runs, query, self.render)

    def _paged(
        self,
        rows: list[Any],
        query: Mapping[str, str],
        render: Callable[[Any], Any] = lambda row: row,
    ) -> Response:
        try:
            page = int(query.get("page", str(self.first_page)))
            take = int(query.get("take", str(DEFAULT_TAKE)))
        except ValueError:
            return self.error(400, "", "page and take must be integers")
        take = max(1, min(take, MAX_TAKE))
        window = self.page_window(page, take)
        if window is None:
            return self.error(400, "", f"page must be at least {self.first_page}")
        count, pages = reported_totals(self.variant, len(rows), max(1, window.pages(len(rows))))
        return Response(
            body=[render(row) for row in rows[window.start : window.stop]],
            headers={
                "pagination-page": str(window.page),
                "pagination-take": str(take),
                # A count no integer parser takes: the client has no total to go by.
                "pagination-count": "1e400" if self.variant.huge_numbers else str(count),
                "pagination-pages": str(pages),
            },
        )

    def _workflow_json(self, workflow: SimWorkflow) -> dict[str, Any]:
        count = sum(1 for r in self.world.runs.values() if r.workflow.id == workflow.id)
        return {
            "id": workflow.id,
            "name": workflow.name,
            "enabled": True,
            "deleted": False,
            "runs_count": count,
        }

    def _output(self, run: SimRun) -> dict[str, Any]:
        """Step outputs keyed by step key; start and end in epoch milliseconds, as seen."""
        v = self.vocabulary
        output: dict[str, Any] = {}
        for index, state in enumerate(run.step_states()):
            key = v.step_label(index)
            start, end = run.step_spans[index] if index < len(run.step_spans) else (None, None)
            if start is None and state is StepStatus.UNFINISHED:
                start = run.started_at  # the step running now began no later than its run
            output[key] = {
                "status": v.step_native(state),
                "type": "code" if index % 2 else "llm",
                "key": key,
                "start": self.number(_millis(start), f"{run.id}-{index}", 0),
                "end": self.number(_millis(end), f"{run.id}-{index}", 1),
            }
        return output

    def render(self, run: SimRun) -> dict[str, Any]:
        status = self.vocabulary.canonical(run.native_status)
        return {
            "id": run.id,
            "input": {},
            "output": "garbled" if run.steps_broken else self._output(run),
            "status": run.native_status,
            "origin": self.world.origin_of(run),
            "error": run.error_message if status is RunStatus.FAILED else None,
            "started_at": self.number(self.stamp(run.started_at), run.id, 0),
            "ended_at": self.number(self.stamp(run.finished_at), run.id, 1),
            "created_at": self.stamp(run.created_at),
            "updated_at": self.stamp(run.updated_at),
            "workflow_id": run.workflow.id,
            "workflow_version": {"id": f"wv-{run.workflow.id[:8]}", "version": 1},
        }


def _millis(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)
