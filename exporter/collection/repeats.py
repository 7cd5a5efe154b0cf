"""A warning that would repeat every cycle (the same invalid record re-read, an oddity the API
shows each time) said once, then summed up at most once per interval: a log that says the same
line every minute hides everything else in it. Counters count every occurrence; only the log
is thinned here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

# How often a condition still seen is summed up in the log.
SUMMARY_INTERVAL = 3600.0
# Conditions remembered per source (their keys are reasons, facts, statuses: few); past it the
# memory starts over, so a condition is at worst said once more.
MAX_CONDITIONS = 1000


@dataclass(slots=True)
class _Seen:
    since: float  # when it was last said
    times: int = 0  # occurrences since


class RepeatedWarnings:
    """One per source: `warn(key, message, **fields)` says the first occurrence of `key` as it
    is; later ones are counted, and the first one past `interval` after the last line says
    `still seen: <message>` with how many times, and its own fields (the latest detail)."""

    def __init__(
        self,
        log: Any,
        interval: float = SUMMARY_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._interval = interval
        self._clock = clock
        self._seen: dict[Hashable, _Seen] = {}
        self._lock = threading.Lock()

    def warn(self, key: Hashable, message: str, **fields: Any) -> None:
        self.say(key, "warning", message, **fields)

    def say(self, key: Hashable, level: str, message: str, **fields: Any) -> None:
        """As `warn`, at `level` (`info` for what is news rather than trouble)."""
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is None:
                if len(self._seen) >= MAX_CONDITIONS:
                    self._seen.clear()
                self._seen[key] = _Seen(since=now)
                times = 0
            else:
                seen.times += 1
                if now - seen.since < self._interval:
                    return
                times, seen.times, seen.since = seen.times, 0, now
        emit = getattr(self._log, level)
        if times == 0:
            emit(message, **fields)
        else:
            emit(
                f"still seen: {message}",
                times=times,
                in_the_last_seconds=round(self._interval),
                **fields,
            )
