"""Signed webhook events from a simulator, with the faults a real platform's deliveries show:
dropped, duplicated, delayed (so out of order), and an occasional run deleted right after.

Each provider's simulator says what an event looks like and how it is signed
(`webhook_event`, `webhook_headers`); this module renders it when a run finishes (under the
world's lock, so the body is the run as it finished) and sends it from its own thread.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from exporter.simulator.records import SimRun

# (event type, body) for a finished run; None: the provider sends nothing for it.
EventOf = Callable[[SimRun, str], tuple[str, dict[str, Any]] | None]
# Signature headers for a raw body signed at a Unix time.
HeadersOf = Callable[[bytes, int, bytes], dict[str, str]]


@dataclass(frozen=True)
class WebhookFaults:
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    # Each delivery waits a random 0..max_delay seconds: later events can overtake earlier ones.
    max_delay: float = 0.0


@dataclass
class WebhookStats:
    sent: int = 0
    dropped: int = 0
    duplicated: int = 0
    failed: int = 0
    answers: dict[int, int] = field(default_factory=dict)


class WebhookSender:
    def __init__(
        self,
        url: str,
        secret: str,
        event_of: EventOf,
        headers_of: HeadersOf,
        faults: WebhookFaults | None = None,
        seed: int = 1,
    ) -> None:
        self.url = url
        self.secret = secret.encode()
        self.event_of = event_of
        self.headers_of = headers_of
        self.faults = faults or WebhookFaults()
        self.stats = WebhookStats()
        self._rng = random.Random(seed)
        self._ids = itertools.count(1)
        self._due: list[tuple[float, int, bytes]] = []
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send_loop, name="webhooks", daemon=True)
        self._thread.start()

    def run_finished(self, run: SimRun) -> None:
        """Called by the world as a run finishes (under its lock): render now, send later."""
        event = self.event_of(run, f"evt_{next(self._ids):08d}")
        if event is None:
            return
        raw = json.dumps(event[1]).encode()
        with self._wake:
            if self._rng.random() < self.faults.drop_rate:
                self.stats.dropped += 1
                return
            copies = 1
            if self._rng.random() < self.faults.duplicate_rate:
                copies = 2
                self.stats.duplicated += 1
            for _ in range(copies):
                due = time.monotonic() + self._rng.random() * self.faults.max_delay
                heapq.heappush(self._due, (due, next(self._ids), raw))
            self._wake.notify()

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                now = time.monotonic()
                if not self._due or self._due[0][0] > now:
                    wait = self._due[0][0] - now if self._due else 0.5
                    self._wake.wait(min(wait, 0.5))
                    continue
                _, _, raw = heapq.heappop(self._due)
            self._post(raw)

    def _post(self, raw: bytes) -> None:
        headers = {"Content-Type": "application/json"}
        headers.update(self.headers_of(raw, int(time.time()), self.secret))
        request = urllib.request.Request(self.url, data=raw, headers=headers, method="POST")  # noqa: S310 - a configured http(s) URL
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
                status = int(answer.status)
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            self.stats.failed += 1
            return
        self.stats.sent += 1
        self.stats.answers[status] = self.stats.answers.get(status, 0) + 1

    def pending(self) -> int:
        with self._wake:
            return len(self._due)

    def stop(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify()
        self._thread.join(2)
