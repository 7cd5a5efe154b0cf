"""The cyclic garbage collector, tuned for a long-running exporter.

Reference counting frees almost everything a cycle builds (pages, wire dicts, runs: none holds a
cycle). The cyclic collector only finds what reference counting cannot, yet with Python's
defaults it runs after every 700 new containers, and each of its older collections walks every
long-lived object again: the state's mirrors, the recent runs, the runs a cycle has seen so far.
At 100,000 runs in one cycle that walking was over a tenth of the cycle's CPU.

Three measures, as long-running services take them:
- `tune_collector` (once, at start-up): a young generation of `YOUNG_THRESHOLD` containers, so
  a collection runs after tens of thousands of new objects instead of hundreds.
- `settle_start_up` (once, when serving starts): what start-up built is frozen.
- `settle_after_cycle` (after each cycle): what the cycle left alive is collected once and then
  frozen, so the next cycle's collections never walk it again. A frozen object that later dies
  in a cycle with others would never be freed: every `FULL_EVERY_SECONDS` everything is
  unfrozen first, so such garbage lives an hour at most.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable

# New containers between two young collections (Python's default is 700). Only cyclic garbage
# waits longer for it: at most this many containers (a few MB), never what reference counting
# frees at once.
YOUNG_THRESHOLD = 50_000
# Young collections between two of the middle generation, and middle ones between two full
# ones (Python's defaults: 10 and 10). A full collection also waits until the objects that
# survived since the last one are a quarter of those it walked.
MIDDLE_THRESHOLD = 20
OLD_THRESHOLD = 10
# How often a settle first unfreezes everything, so that garbage among frozen objects is found.
FULL_EVERY_SECONDS = 3600.0


def tune_collector() -> None:
    """The collector's thresholds for a process that keeps a large, settled heap."""
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)


class HeapSettler:
    """Collects and freezes what a cycle left alive; unfreezes everything first once an hour."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()  # sources' cycles end on their own threads
        self._last_full = clock()

    def settle_after_cycle(self) -> None:
        with self._lock:
            now = self._clock()
            if now - self._last_full >= FULL_EVERY_SECONDS:
                self._last_full = now
                gc.unfreeze()
            # Walks only what is not frozen: what came since the last settle (or, once an hour,
            # everything), so a cycle of garbage alive now is not frozen with the rest.
            gc.collect()
            gc.freeze()


# Set by the first `settle_start_up` of the process.
_settled = threading.Event()


def settle_start_up() -> None:
    """Moves every object alive now out of the cyclic garbage collector's reach, once per process.

    Serving starts once start-up is done: modules, models and the state loaded stay for the
    life of the process, yet each full collection would walk them all again, and a scrape that
    triggers one pauses for it (tens of milliseconds: most of a large scrape's p99). Objects
    freed by reference counting are still freed; only cycles among them would stay, which is why
    this happens once (a process starting several servers, a test run, does not freeze again).
    What each cycle leaves alive is settled after it (`HeapSettler`).
    """
    if not _settled.is_set():
        _settled.set()
        gc.freeze()
