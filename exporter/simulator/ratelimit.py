"""The provider's documented request rate, enforced as a sliding window."""

from __future__ import annotations

import threading
import time


class RateLimit:
    """The provider's documented limit: at most `limit` requests in any `per` seconds."""

    def __init__(self, limit: int, per: float) -> None:
        self.limit = limit
        self.per = per
        self._times: list[float] = []
        self._lock = threading.Lock()
        self.rejected = 0

    def admit(self) -> float | None:
        """None if the request may pass, else the seconds until it would."""
        now = time.monotonic()
        with self._lock:
            self._times = [t for t in self._times if now - t < self.per]
            if len(self._times) < self.limit:
                self._times.append(now)
                return None
            self.rejected += 1
            return self.per - (now - self._times[0])
