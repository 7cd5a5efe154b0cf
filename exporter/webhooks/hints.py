"""A bounded queue of hints per source and the thread that works it off.

The listener answers as soon as a hint is queued; the lookups run here, one source at a time,
in batches: hints that pile up while a poll holds the source's lock go out together, and a run
named twice while waiting is looked up once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exporter.core.logs import get_logger

log = get_logger("exporter.webhooks")

# A hint that names no run (a payload delivered as a download URL): poll the source now.
POLL = ""


@dataclass(frozen=True, slots=True)
class Batch:
    source: str
    run_ids: list[str]
    poll: bool
    # `time.monotonic()` of each run id's first hint still waiting (for the latency histogram).
    received: dict[str, float]
    # The run as its latest event carried it, where kept: counted from it if the run is gone.
    payloads: dict[str, Any]


class HintQueue:
    """One source's waiting hints, by run id, in arrival order (a repeat keeps its first place
    and its first arrival time, so latency is measured from the first hint)."""

    def __init__(self, source: str, capacity: int) -> None:
        self.source = source
        self.capacity = capacity
        self._waiting: dict[str, tuple[float, Any]] = {}
        self._ready = threading.Condition()

    def offer(self, run_id: str, now: float, payload: Any = None) -> bool:
        """False when full (the platform is told to retry later)."""
        with self._ready:
            waiting = self._waiting.get(run_id)
            if waiting is not None:
                self._waiting[run_id] = (waiting[0], payload if payload is not None else waiting[1])
                return True
            if len(self._waiting) >= self.capacity:
                return False
            self._waiting[run_id] = (now, payload)
            self._ready.notify()
            return True

    def take(self, limit: int, timeout: float) -> Batch | None:
        with self._ready:
            if not self._waiting and not self._ready.wait(timeout):
                return None
            taken = dict(list(self._waiting.items())[:limit])
            for run_id in taken:
                del self._waiting[run_id]
        poll = taken.pop(POLL, None) is not None
        return Batch(
            self.source,
            list(taken),
            poll,
            {run_id: at for run_id, (at, _) in taken.items()},
            {run_id: p for run_id, (_, p) in taken.items() if p is not None},
        )

    def __len__(self) -> int:
        with self._ready:
            return len(self._waiting)


class HintWorkers:
    """A queue and a daemon thread per source, created on its first hint."""

    def __init__(
        self,
        capacity: int,
        handle: Callable[[Batch], None],
        batch_limit: Callable[[str], int],
    ) -> None:
        self.capacity = capacity
        self._handle = handle
        self._batch_limit = batch_limit
        self._queues: dict[str, HintQueue] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def queue(self, source: str) -> HintQueue:
        """The source's queue, its worker started (again, if it ended: see `dead`)."""
        with self._lock:
            found = self._queues.get(source)
            if found is None:
                found = self._queues[source] = HintQueue(source, self.capacity)
            thread = self._threads.get(source)
            if not self._stop.is_set() and (thread is None or not thread.is_alive()):
                if thread is not None:
                    log.error("webhook hint worker had stopped; starting it again", source=source)
                thread = self._threads[source] = threading.Thread(
                    target=self._work, args=(found,), name=f"hints-{source}", daemon=True
                )
                thread.start()
            return found

    def dead(self) -> list[str]:
        """Sources whose worker ended while not told to stop: their hints wait unworked (and
        are refused with 429 once the queue is full) until the next hint starts it again."""
        if self._stop.is_set():
            return []
        with self._lock:
            threads = dict(self._threads)
        return sorted(source for source, thread in threads.items() if not thread.is_alive())

    def depth(self, source: str) -> int:
        with self._lock:
            found = self._queues.get(source)
        return len(found) if found is not None else 0

    def _work(self, queue: HintQueue) -> None:
        while not self._stop.is_set():
            # A bug must not end the thread (the poll still finds the runs): neither in the
            # batch's size nor in its handling.
            try:
                batch = queue.take(max(1, self._batch_limit(queue.source)), timeout=0.5)
                if batch is not None:
                    self._handle(batch)
            except Exception:
                log.exception("webhook hints failed", source=queue.source)
                self._stop.wait(0.1)  # a failure that repeats at once does not spin
            except BaseException:
                log.exception("webhook hint worker stopped", source=queue.source)
                raise

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
