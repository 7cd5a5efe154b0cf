"""Plextera's public API: `Authorization: api-key <key>`, page/size pages with `pageInfo`."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar
from urllib.parse import unquote

from exporter.core.model import RunStatus, StepStatus
from exporter.simulator.exchange import Request, Response
from exporter.simulator.records import SimRun, Vocabulary
from exporter.simulator.server import SimulatorServer
from exporter.simulator.variant import HUGE, ApiVariant, reported_totals

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
CAPPED = 25  # a silent cap well below the 100 a client may ask for


class PlexteraSimulator(SimulatorServer):
    provider: ClassVar[str] = "plextera"
    run_endpoint: ClassVar[str] = "/workflow-runs/{id}"
    cursor_field: ClassVar[str] = "createdAt"
    path_prefix: ClassVar[str] = "/api/public/v1"
    vocabulary = Vocabulary(
        queued="QUEUED",
        running="PROCESSING",
        succeeded="COMPLETED",
        failed="FAILED",
        cancelled="CLOSED",
        table={
            "QUEUED": RunStatus.QUEUED,
            "PROCESSING": RunStatus.RUNNING,
            "COMPLETED": RunStatus.SUCCEEDED,
            "FAILED": RunStatus.FAILED,
            "CLOSED": RunStatus.CANCELLED,
        },
        step_labels=("document_insights", "web_function"),
        # Only QUEUED, COMPLETED and FAILED are seen in the docs: a step a closed run never
        # finished stays QUEUED.
        step_names={
            StepStatus.SUCCEEDED: "COMPLETED",
            StepStatus.FAILED: "FAILED",
            StepStatus.CANCELLED: "QUEUED",
            StepStatus.SKIPPED: "QUEUED",
            StepStatus.NOT_STARTED: "QUEUED",
            StepStatus.UNFINISHED: "PROCESSING",
        },
        step_table={
            "QUEUED": StepStatus.NOT_STARTED,
            "PROCESSING": StepStatus.UNFINISHED,
            "COMPLETED": StepStatus.SUCCEEDED,
            "FAILED": StepStatus.FAILED,
        },
    )
    variants: ClassVar[Mapping[str, ApiVariant]] = {
        # Where the docs name no single-run path, or none at all, and a node dated ahead.
        "lookups_absent": ApiVariant(lookups="absent"),
        "clock_ahead": ApiVariant(clock_ahead=True),
        "oldest_first": ApiVariant(order="oldest_first"),
        "first_page_0": ApiVariant(first_page=0),
        "page_zero_empty": ApiVariant(page_zero="empty"),
        "page_cap": ApiVariant(page_cap=CAPPED),
        "no_offset": ApiVariant(timestamps="no_offset"),
        "rejected": ApiVariant(rejected=True),
        "oldest_first_capped": ApiVariant(order="oldest_first", page_cap=CAPPED, first_page=0),
        # The docs do not say whether nested runs are in the top-level list too.
        "nested_listed": ApiVariant(nested_runs="listed"),
        "nested_unlisted": ApiVariant(nested_runs="unlisted"),
        # Ids are opaque strings: nothing keeps a control character out of them.
        "control_char_ids": ApiVariant(run_ids="control_chars"),
        # Totals the docs never promise to be right: none while items are listed (from a list
        # counting from 0), negative, absurd (with an oldest-first list, which would read
        # backwards from them).
        "totals_low": ApiVariant(totals="low", first_page=0),
        "totals_negative": ApiVariant(totals="negative"),
        "totals_absurd": ApiVariant(totals="absurd", order="oldest_first"),
        "huge_numbers": ApiVariant(huge_numbers=True),
    }

    @classmethod
    def vocabulary_for(cls, variant: ApiVariant) -> Vocabulary:
        if not variant.rejected:
            return cls.vocabulary
        # Seed 001: `error` is present "only for failed or rejected" runs, so rejections carry one.
        return replace(
            cls.vocabulary,
            rejected="REJECTED",
            rejection_codes=True,
            table={**cls.vocabulary.table, "REJECTED": RunStatus.REJECTED},
        )

    def authorized(self, headers: Mapping[str, str]) -> bool:
        return headers.get("authorization") == f"api-key {self.api_key}"

    def is_list(self, request: Request) -> bool:
        return request.path == "/workflow-runs"

    def list_items(self, body: Any) -> list[dict[str, Any]] | None:
        return body.get("data") if isinstance(body, dict) else None

    def break_record(self, item: dict[str, Any]) -> None:
        item["createdAt"] = "not-a-date"

    def endpoint_of(self, request: Request) -> str:
        return "/workflow-runs" if self.is_list(request) else "/workflow-runs/{id}"

    def error(self, status: int, code: str, message: str) -> Response:
        request_id = str(uuid.uuid4())
        return Response(
            status,
            {
                "error": {
                    "code": code,
                    "message": message,
                    "requestId": request_id,
                    "retryable": status == 429 or status >= 500,
                    "details": None,
                }
            },
            {"X-Request-Id": request_id},
        )

    def finalize(self, request: Request, response: Response) -> Response:
        # Every answer carries X-Request-Id, the client's own when it sent one, and an error body
        # names the same id, so a client's log line and the provider's can be matched.
        request_id = (
            request.headers.get("x-request-id")
            or response.headers.get("X-Request-Id")
            or str(uuid.uuid4())
        )
        response.headers["X-Request-Id"] = request_id
        error = response.body.get("error") if isinstance(response.body, dict) else None
        if isinstance(error, dict):
            error["requestId"] = request_id
        return response

    def route(self, request: Request) -> Response:
        if request.method != "GET":
            return self.error(404, "NOT_FOUND", "no such endpoint")
        if request.path == "/workflow-runs":
            return self._list(request.query)
        if request.path.startswith("/workflow-runs/"):
            with self.world.lock:  # render a consistent run, not one half-way through advance()
                run = self.world.run_of(unquote(request.path.rsplit("/", 1)[1]))
                if run is not None:
                    return Response(body=self.render(run))
            return self.error(404, "NOT_FOUND", "workflow run not found")
        return self.error(404, "NOT_FOUND", "no such endpoint")

    def _list(self, query: Mapping[str, str]) -> Response:
        try:
            page = int(query.get("page", str(self.first_page)))
            size = int(query.get("size", str(DEFAULT_PAGE_SIZE)))
        except ValueError:
            return self.error(400, "INVALID_REQUEST", "page and size must be integers")
        size = min(size, MAX_PAGE_SIZE)
        window = self.page_window(page, size) if size >= 1 else None
        if window is None:
            return self.error(400, "INVALID_REQUEST", "page and size must be positive")
        with self.world.lock:
            runs = self.listed_runs()
            if "status" in query:
                runs = [r for r in runs if r.native_status == query["status"]]
            if "workflowId" in query:
                runs = [r for r in runs if r.workflow.id == query["workflowId"]]
            chunk = [self.render(r) for r in runs[window.start : window.stop]]
        total_items, total_pages = reported_totals(self.variant, len(runs), window.pages(len(runs)))
        return Response(
            body={
                "data": chunk,
                "pageInfo": {
                    "page": window.page,
                    "size": size,
                    "totalItems": total_items,
                    "totalPages": HUGE if self.variant.huge_numbers else total_pages,
                },
            }
        )

    def webhook_event(self, run: SimRun, event_id: str) -> tuple[str, dict[str, Any]] | None:
        # Only completions and failures are documented events; the envelope is a guess.
        event_type = {
            RunStatus.SUCCEEDED: "workflow.run.completed",
            RunStatus.FAILED: "workflow.run.failed",
        }.get(self.vocabulary.canonical(run.native_status))
        if event_type is None:
            return None
        return event_type, {"id": event_id, "type": event_type, "data": self.render(run)}

    def webhook_headers(self, raw: bytes, timestamp: int, secret: bytes) -> dict[str, str]:
        signature = hmac.new(secret, f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()
        return {"X-Plextera-Signature": f"t={timestamp},v1={signature}"}

    def render(self, run: SimRun) -> dict[str, Any]:
        errored = self.vocabulary.canonical(run.native_status) in (
            RunStatus.FAILED,
            RunStatus.REJECTED,
        )
        return {
            "id": run.id,
            "status": run.native_status,
            "createdAt": self.stamp(run.created_at),
            "updatedAt": self.stamp(run.updated_at),
            "startedAt": self.stamp(run.started_at),
            "completedAt": self.stamp(run.finished_at),
            "error": {"code": run.error_code, "message": run.error_message} if errored else None,
            "workflow": {"id": run.workflow.id, "name": run.workflow.name},
            "progress": {
                "stepsCompleted": self.number(run.steps_completed, run.id, 0),
                "stepsTotal": self.number(run.steps_total, run.id, 3),
            },
            "durationMs": self.number(run.duration_ms, run.id, 1),
            "computedDurationMs": self.number(run.duration_ms, run.id, 2),
            "steps": "garbled" if run.steps_broken else self.render_steps(run),
        }

    def render_steps(self, run: SimRun) -> list[dict[str, Any]]:
        v = self.vocabulary
        return [
            {
                "id": f"{run.id}-step-{index}",
                "name": f"Step {index + 1}",
                "type": v.step_label(index),
                "status": v.step_native(state),
                "message": None,
                "output": None,
                "nestedRuns": self._nested(run) if index == 0 else {"count": 0, "data": []},
            }
            for index, state in enumerate(run.step_states())
        ]

    def _nested(self, run: SimRun) -> dict[str, Any]:
        children = [self.world.runs[c] for c in run.children if c in self.world.runs]
        return {"count": len(children), "data": [self.render(child) for child in children]}
