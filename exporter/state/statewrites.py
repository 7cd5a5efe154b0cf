"""Whether the state file takes a part's writes: each refusal counted, each change of that
condition said once (not a traceback per cycle), the refusal a /healthz reason while it lasts.

A refused write was rolled back whole (exporter.state.store), and whoever made it does the work
again (a cycle keeps its cursor and reads the same ground), so counting resumes, exactly, with
the first write the file takes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from exporter.core.errors import StateWriteError


class StateWrites:
    """One part's writes (a source's cycles and hints, the alert outbox)."""

    def __init__(self, what: str, log: Any, refused: Callable[[], None] = lambda: None) -> None:
        self.what = what
        self._log = log
        self._refused = refused
        self._lock = threading.Lock()
        # Why the last write was refused; None: the last write went through (or none was made).
        self.problem: str | None = None

    def failed(self, error: StateWriteError) -> None:
        self._refused()
        with self._lock:
            before, self.problem = self.problem, error.detail
        if before != error.detail:
            self._log.warning(
                "state not writable: nothing of this write was kept; the work is done again "
                "once the state file takes writes (free space, make it writable)",
                part=self.what,
                error=error.detail,
            )

    def succeeded(self) -> None:
        with self._lock:
            before, self.problem = self.problem, None
        if before is not None:
            self._log.warning("state writable again; counting goes on", part=self.what, was=before)
