"""Faults queued for the next API requests, and how a spoiled answer looks: the kinds a test may
inject, the plan that hands them out in order, and the bodies they put in a response's place."""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from exporter.simulator.exchange import Response

FAULT_KINDS = (
    "status",
    "delay",
    "malformed_json",
    "truncated",
    "reset",
    "drip",
    "endless",
    "gzip_bomb",
)
# Faults answered by the connection handler itself rather than with a response.
STREAM_FAULTS = ("reset", "drip", "endless", "gzip_bomb")
# Faults that spoil the body of whatever answer the request would otherwise get.
BODY_FAULTS = ("malformed_json", "truncated")


@dataclass
class Fault:
    kind: str
    params: dict[str, Any]


class FaultPlan:
    """Faults queued for the next API requests, applied in order, counted when applied."""

    def __init__(self) -> None:
        self._queue: list[Fault] = []
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()

    def inject(self, kind: str, count: int = 1, **params: Any) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r} (one of {', '.join(FAULT_KINDS)})")
        with self._lock:
            self._queue.extend(Fault(kind, dict(params)) for _ in range(count))

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def take(self) -> Fault | None:
        with self._lock:
            if not self._queue:
                return None
            fault = self._queue.pop(0)
            self.injected[fault.kind] += 1
            return fault

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)


class BadRecords:
    """List answers still to carry one broken item, and which of three ways the next one breaks."""

    def __init__(self) -> None:
        self._pending = 0
        self._broken = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self._pending += n

    def clear(self) -> None:
        with self._lock:
            self._pending = 0

    def take(self) -> int | None:
        """None: this answer stays whole; else 0, 1 or 2 in turn (wrong shape, null, missing)."""
        with self._lock:
            if self._pending <= 0:
                return None
            self._pending -= 1
            self._broken += 1
            return self._broken % 3


def fault_response(fault: Fault, response: Response) -> Response:
    if fault.kind == "malformed_json":
        return Response(200, b"{'data': [oops", {"Content-Type": "application/json"})
    raw = json.dumps(response.body).encode()
    return Response(200, raw[: max(1, len(raw) // 2)], {"Content-Type": "application/json"})


def code_name(status: int) -> str:
    return {
        400: "INVALID_REQUEST",
        401: "UNAUTHORIZED",
        404: "NOT_FOUND",
        429: "RATE_LIMITED",
        500: "INTERNAL",
        502: "BAD_GATEWAY",
        503: "UNAVAILABLE",
    }.get(status, "ERROR")
