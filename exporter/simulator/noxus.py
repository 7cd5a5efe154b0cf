"""Noxus's API: `X-API-Key`, fastapi-pagination pages (`items,total,page,size,pages`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar
from urllib.parse import unquote

from exporter.core.model import RunStatus
from exporter.simulator.exchange import Request, Response
from exporter.simulator.records import SimRun, SimWorkflow, Vocabulary
from exporter.simulator.server import SimulatorServer
from exporter.simulator.variant import HUGE, ApiVariant, reported_totals

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 50
CAPPED = 25  # a silent cap well below the 100 the docs allow

JSON = dict[str, Any]
Row = TypeVar("Row", SimRun, SimWorkflow)


class NoxusSimulator(SimulatorServer):
    provider: ClassVar[str] = "noxus"
    run_endpoint: ClassVar[str] = "/v1/runs/{id}"
    vocabulary = Vocabulary(
        queued="queued",
        running="running",
        succeeded="completed",
        failed="failed",
        cancelled="stopped",
        review="awaiting_human_feedback",
        error_codes=False,
        table={
            "queued": RunStatus.QUEUED,
            "running": RunStatus.RUNNING,
            "awaiting_human_feedback": RunStatus.NEEDS_REVIEW,
            "completed": RunStatus.SUCCEEDED,
            "failed": RunStatus.FAILED,
            "stopped": RunStatus.CANCELLED,
        },
    )
    variants: ClassVar[Mapping[str, ApiVariant]] = {
        # Where the docs name no single-run path, or none at all, and a node dated ahead.
        "lookups_absent": ApiVariant(lookups="absent"),
        "lookups_refused": ApiVariant(lookups="refused"),
        "clock_ahead": ApiVariant(clock_ahead=True),
        "oldest_first": ApiVariant(order="oldest_first"),
        "first_page_0": ApiVariant(first_page=0),
        "page_cap": ApiVariant(page_cap=CAPPED),
        "no_offset": ApiVariant(timestamps="no_offset"),
        "no_started_at": ApiVariant(omit_started_at=True),
        "oldest_first_capped": ApiVariant(order="oldest_first", page_cap=CAPPED, first_page=0),
        # Ids are opaque strings: nothing keeps a control character out of them.
        "control_char_ids": ApiVariant(run_ids="control_chars"),
        # Totals the docs never promise to be right (see the Plextera simulator).
        "totals_low": ApiVariant(totals="low"),
        "totals_negative": ApiVariant(totals="negative", first_page=0),
        "totals_absurd": ApiVariant(totals="absurd", order="oldest_first"),
        "huge_numbers": ApiVariant(huge_numbers=True),
    }

    def authorized(self, headers: Mapping[str, str]) -> bool:
        return headers.get("x-api-key") == self.api_key

    def is_list(self, request: Request) -> bool:
        return request.path in ("/v1/runs",) or (
            request.path.startswith("/v1/workflows/") and request.path.endswith("/runs")
        )

    def list_items(self, body: Any) -> list[dict[str, Any]] | None:
        return body.get("items") if isinstance(body, dict) else None

    def break_record(self, item: dict[str, Any]) -> None:
        item["created_at"] = "yesterday-ish"

    def endpoint_of(self, request: Request) -> str:
        if request.path in ("/v1/runs", "/v1/workflows"):
            return request.path
        if request.path.startswith("/v1/runs/"):
            return "/v1/runs/{id}"
        return "/v1/workflows/{id}/runs"

    def error(self, status: int, code: str, message: str) -> Response:
        if status == 401:
            return Response(status, {"detail": "Invalid API key"})
        return Response(status, {"detail": message})

    def route(self, request: Request) -> Response:
        if request.method != "GET":
            return self.error(405, "METHOD", "Method Not Allowed")
        # One lock for selecting and rendering: a page is a snapshot of one moment of the world.
        with self.world.lock:
            return self._route(request.path, request.query)

    def _route(self, path: str, query: Mapping[str, str]) -> Response:
        if path == "/v1/runs":
            return self._paged(self.listed_runs(), query, self.render)
        if path.startswith("/v1/runs/"):
            run = self.world.run_of(unquote(path.rsplit("/", 1)[1]))
            return Response(body=self.render(run)) if run else self.error(404, "", "Run not found")
        if path == "/v1/workflows":
            return self._paged(list(self.world.workflows), query, self._workflow_json)
        parts = path.split("/")
        if len(parts) == 5 and parts[:3] == ["", "v1", "workflows"] and parts[4] == "runs":
            runs = [r for r in self.listed_runs() if r.workflow.id == parts[3]]
            return self._paged(runs, query, self.render)
        return self.error(404, "", "Not Found")

    def _paged(
        self, rows: Sequence[Row], query: Mapping[str, str], render: Callable[[Row], JSON]
    ) -> Response:
        problems = []
        page = _int(query.get("page", str(self.first_page)))
        size = _int(query.get("size", str(DEFAULT_PAGE_SIZE)))
        size_ok = size is not None and 1 <= size <= MAX_PAGE_SIZE
        # FastAPI judges each parameter alone: a bad size does not hide a bad page number.
        window = None
        if page is not None:
            window = self.page_window(page, size if size is not None and size_ok else 1)
        if window is None:
            problems.append(
                {
                    "loc": ["query", "page"],
                    "msg": f"ensure this value is greater than or equal to {self.first_page}",
                    "type": "value_error",
                }
            )
        if not size_ok:
            problems.append(
                {
                    "loc": ["query", "size"],
                    "msg": "ensure this value is between 1 and 100",
                    "type": "value_error",
                }
            )
        if problems or window is None or size is None:
            return Response(422, {"detail": problems})
        items = [render(row) for row in rows[window.start : window.stop]]
        total, pages = reported_totals(self.variant, len(rows), window.pages(len(rows)))
        return Response(
            body={
                "items": items,
                "total": total,
                "page": window.page,
                "size": size,
                "pages": HUGE if self.variant.huge_numbers else pages,
            }
        )

    def _workflow_json(self, workflow: SimWorkflow) -> JSON:
        return {"id": workflow.id, "group_id": workflow.id, "name": workflow.name, "type": "flow"}

    def render(self, run: SimRun) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": run.id,
            "group_id": run.workflow.id,
            "workflow_id": run.workflow.id,
            "input": {},
            "node_ids": [f"node-{i}" for i in range(run.steps_total)],
            "status": run.native_status,
            "progress": self.number(round(run.progress * 100), run.id, 0),
            "definitions": {},
            "created_at": self.stamp(run.created_at),
            "started_at": self.stamp(run.started_at),
            "finished_at": self.stamp(run.finished_at),
            "workflow": {
                "id": run.workflow.id,
                "group_id": run.workflow.id,
                "name": run.workflow.name,
                "type": "flow",
            },
            "source": "api",
        }
        if self.variant.omit_started_at:
            del body["started_at"]
        return body


def _int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None
