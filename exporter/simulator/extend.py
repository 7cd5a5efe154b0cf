"""Extend's API: Bearer key plus `x-extend-api-version`, cursor pages (`nextPageToken`), summaries
without failure reasons, details by id. Reads are limited to 10 requests per second (429 with
Retry-After), as documented for the smallest plan.

The cursor is a keyset position (sort key of the last item), so a run that changes while a client
pages jumps to the front of the list behind the client's back, as it would on the real API.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import unquote

from exporter.core.model import RunStatus, StepStatus
from exporter.simulator.exchange import Request, Response
from exporter.simulator.records import SimRun, Vocabulary
from exporter.simulator.server import SimulatorServer
from exporter.simulator.variant import ApiVariant

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 1000
API_VERSION = "2026-02-09"


class ExtendSimulator(SimulatorServer):
    provider: ClassVar[str] = "extend"
    run_endpoint: ClassVar[str] = "/workflow_runs/{id}"
    cursor_field: ClassVar[str] = "updatedAt"
    documented_rate_limit: ClassVar[tuple[int, float] | None] = (10, 1.0)
    vocabulary = Vocabulary(
        queued="PENDING",
        running="PROCESSING",
        succeeded="PROCESSED",
        failed="FAILED",
        cancelled="CANCELLED",
        review="NEEDS_REVIEW",
        rejected="REJECTED",
        table={
            "PENDING": RunStatus.QUEUED,
            "PROCESSING": RunStatus.RUNNING,
            "CANCELLING": RunStatus.RUNNING,
            "NEEDS_REVIEW": RunStatus.NEEDS_REVIEW,
            "PROCESSED": RunStatus.SUCCEEDED,
            "FAILED": RunStatus.FAILED,
            "REJECTED": RunStatus.REJECTED,
            "CANCELLED": RunStatus.CANCELLED,
        },
        step_labels=("PARSE", "EXTRACT", "CLASSIFY", "SPLIT"),
        step_names={
            StepStatus.SUCCEEDED: "PROCESSED",
            StepStatus.FAILED: "FAILED",
            StepStatus.CANCELLED: "CANCELLED",
            StepStatus.SKIPPED: "PENDING",
            StepStatus.NOT_STARTED: "PENDING",
            StepStatus.UNFINISHED: "PROCESSING",
        },
        step_table={
            "PENDING": StepStatus.NOT_STARTED,
            "WAITING": StepStatus.UNFINISHED,
            "PROCESSING": StepStatus.UNFINISHED,
            "PROCESSED": StepStatus.SUCCEEDED,
            "FAILED": StepStatus.FAILED,
            "CANCELLED": StepStatus.CANCELLED,
        },
    )
    variants: ClassVar[Mapping[str, ApiVariant]] = {
        # Where the docs name no single-run path, or none at all, and a node dated ahead.
        "lookups_absent": ApiVariant(lookups="absent"),
        "lookups_refused": ApiVariant(lookups="refused"),
        "clock_ahead": ApiVariant(clock_ahead=True),
        "no_offset": ApiVariant(timestamps="no_offset"),
        "stale_updated_at": ApiVariant(stale_updated_at=True),
        # Ids are opaque strings: nothing keeps a control character out of them.
        "control_char_ids": ApiVariant(run_ids="control_chars"),
        # The docs say to stop when nextPageToken is absent; nothing promises it ever is.
        "cursor_cycle": ApiVariant(cursor_cycle=True),
    }

    def authorized(self, headers: Mapping[str, str]) -> bool:
        return headers.get("authorization") == f"Bearer {self.api_key}"

    def check_request(self, request: Request) -> Response | None:
        if request.headers.get("x-extend-api-version") != API_VERSION:
            return self.error(400, "INVALID_API_VERSION", "missing or unknown x-extend-api-version")
        return None

    def is_list(self, request: Request) -> bool:
        return request.path == "/workflow_runs"

    def list_items(self, body: Any) -> list[dict[str, Any]] | None:
        return body.get("data") if isinstance(body, dict) else None

    def break_record(self, item: dict[str, Any]) -> None:
        item["updatedAt"] = "last tuesday"

    def endpoint_of(self, request: Request) -> str:
        return request.path if self.is_list(request) else "/workflow_runs/{id}"

    def error(self, status: int, code: str, message: str) -> Response:
        return Response(
            status,
            {"code": code, "message": message, "retryable": status == 429 or status >= 500},
        )

    def route(self, request: Request) -> Response:
        if request.method != "GET":
            return self.error(404, "NOT_FOUND", "no such endpoint")
        if request.path == "/workflow_runs":
            return self._list(request.query)
        if request.path.startswith("/workflow_runs/"):
            with self.world.lock:  # render a consistent run, not one half-way through advance()
                run = self.world.run_of(unquote(request.path.rsplit("/", 1)[1]))
                if run is not None:
                    return Response(body=self.render(run, detailed=True))
            return self.error(404, "NOT_FOUND", "workflow run not found")
        return self.error(404, "NOT_FOUND", "no such endpoint")

    def _list(self, query: Mapping[str, str]) -> Response:
        sort_by = query.get("sortBy", "updatedAt")
        descending = query.get("sortDir", "desc") == "desc"
        try:
            size = int(query.get("maxPageSize", str(DEFAULT_PAGE_SIZE)))
        except ValueError:
            return self.error(400, "INVALID_REQUEST", "maxPageSize must be an integer")
        if not 1 <= size <= MAX_PAGE_SIZE or sort_by not in ("updatedAt", "createdAt"):
            return self.error(400, "INVALID_REQUEST", "invalid maxPageSize or sortBy")
        by_update = sort_by == "updatedAt" and not self.variant.stale_updated_at
        with self.world.lock:
            ascending, keys = self.world.sorted_ascending("updated" if by_update else "created")
            if "status" in query or "workflowId" in query:
                pairs = [
                    (k, r)
                    for k, r in zip(keys, ascending, strict=True)
                    if query.get("status", r.native_status) == r.native_status
                    and query.get("workflowId", r.workflow.id) == r.workflow.id
                ]
                keys = [k for k, _ in pairs]
                ascending = [r for _, r in pairs]
            token = query.get("nextPageToken")
            position = _decode(token) if token else None
            if token and position is None:
                return self.error(400, "INVALID_REQUEST", "invalid nextPageToken")
            # Keyset pagination: the page after the last key the client saw, in either order.
            if descending:
                end = bisect.bisect_left(keys, position) if position else len(keys)
                page = ascending[max(0, end - size) : end][::-1]
                more = end - size > 0
            else:
                start = bisect.bisect_right(keys, position) if position else 0
                page = ascending[start : start + size]
                more = start + size < len(keys)
            body: dict[str, Any] = {
                "object": "list",
                "data": [self.render(r, detailed=False) for r in page],
            }
            if page and (more or self.variant.cursor_cycle):
                # Past the last page a cycling cursor leads back to the first page's token.
                last = page[-1] if more else self._first_page_end(ascending, size, descending)
                stamp = last.updated_at if by_update else last.created_at
                body["nextPageToken"] = _encode((stamp.timestamp(), last.id))
        return Response(body=body)

    @staticmethod
    def _first_page_end(ascending: list[SimRun], size: int, descending: bool) -> SimRun:
        """The last run of the list's first page: its position is the first page's token."""
        if descending:
            return ascending[max(0, len(ascending) - size)]
        return ascending[min(size, len(ascending)) - 1]

    def webhook_event(self, run: SimRun, event_id: str) -> tuple[str, dict[str, Any]] | None:
        return _webhook_event(self, run, event_id)

    def webhook_headers(self, raw: bytes, timestamp: int, secret: bytes) -> dict[str, str]:
        stamp = str(timestamp).encode()
        signature = hmac.new(secret, b"v0:" + stamp + b":" + raw, hashlib.sha256).hexdigest()
        return {
            "x-extend-request-timestamp": str(timestamp),
            "x-extend-request-signature": signature,
        }

    def updated_at(self, run: SimRun) -> datetime:
        """The run's updatedAt as this API reports it."""
        return run.created_at if self.variant.stale_updated_at else run.updated_at

    def render(self, run: SimRun, *, detailed: bool) -> dict[str, Any]:
        status = self.vocabulary.canonical(run.native_status)
        summary: dict[str, Any] = {
            "object": "workflow_run",
            "id": run.id,
            "status": run.native_status,
            "workflow": {"object": "workflow", "id": run.workflow.id, "name": run.workflow.name},
            "workflowVersion": {"id": f"wv-{run.workflow.id[:8]}", "version": "1"},
            "dashboardUrl": f"https://dashboard.extend.ai/workflows/runs/{run.id}",
            "initialRunAt": self.stamp(run.started_at),
            "startTime": self.stamp(run.started_at),
            "endTime": self.stamp(run.finished_at),
            "batchId": None,
            "rejectionNote": "not a valid document" if status is RunStatus.REJECTED else None,
            "reviewedAt": self.stamp(run.finished_at) if status is RunStatus.REJECTED else None,
            "files": [{"object": "file", "id": f"file-{run.id[:8]}", "name": "document.pdf"}],
            "createdAt": self.stamp(run.created_at),
            "updatedAt": self.stamp(self.updated_at(run)),
            "usage": {"credits": 1},
        }
        if not detailed:
            return summary
        failed = status is RunStatus.FAILED
        return {
            **summary,
            "failureReason": run.error_code if failed else None,
            "failureMessage": run.error_message if failed else None,
            "stepRuns": "garbled"
            if run.steps_broken
            else [
                {
                    "object": "step_run",
                    "id": f"{run.id}-step-{index}",
                    "stepType": self.vocabulary.step_label(index),
                    "status": self.vocabulary.step_native(state),
                }
                for index, state in enumerate(run.step_states())
            ],
        }


WEBHOOK_EVENTS = {
    RunStatus.SUCCEEDED: "workflow_run.completed",
    RunStatus.FAILED: "workflow_run.failed",
    RunStatus.REJECTED: "workflow_run.rejected",
    RunStatus.CANCELLED: "workflow_run.cancelled",
}


def _webhook_event(sim: ExtendSimulator, run: SimRun, event_id: str) -> tuple[str, Any] | None:
    event_type = WEBHOOK_EVENTS.get(sim.vocabulary.canonical(run.native_status))
    if event_type is None:
        return None
    body = {"eventId": event_id, "eventType": event_type, "payload": sim.render(run, detailed=True)}
    return event_type, body


def _encode(position: tuple[float, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def _decode(token: str) -> tuple[float, str] | None:
    try:
        stamp, run_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return (float(stamp), str(run_id))
    except (ValueError, TypeError):
        return None
