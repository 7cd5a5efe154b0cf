"""A verified event sent on to the replica that owns its source, once.

The original body and headers go as they came, so the owner verifies the signature itself
(with the secret it already has) and keeps its own replay guard: forwarding adds no trust
between replicas and no secret of its own. One attempt per event, bounded by a timeout; the
platform's own retries are the only retries. A peer that did not answer is not tried again for
`PEER_BACKOFF` seconds: each event meanwhile is refused at once as retryable instead of holding
a listener worker for the whole timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from exporter.core.logs import get_logger
from exporter.webhooks.routing import Forwarded

log = get_logger("exporter.webhooks")

PEER_BACKOFF = 5.0


@dataclass(frozen=True, slots=True)
class PeerAnswer:
    result: Forwarded
    # The owner's status and Retry-After, passed back to the platform (a 4xx or 2xx only).
    status: int | None = None
    retry_after: str | None = None


class PeerForwarder:
    def __init__(
        self,
        timeout: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._clock = clock
        # No proxy from the environment (a forward stays inside the cluster), no redirects (a
        # peer's answer is final), no pool kept beyond a few connections per peer.
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 1.0)),
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=4),
            transport=transport,
        )
        self._down_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def forward(self, url: str, headers: Mapping[str, str], body: bytes) -> PeerAnswer:
        peer = httpx.URL(url).netloc.decode("ascii", "replace")
        with self._lock:
            if self._down_until.get(peer, 0.0) > self._clock():
                return PeerAnswer(Forwarded.UNAVAILABLE)
        try:
            # Streamed and left unread: only the status and Retry-After matter, so the peer's
            # body, however large, is never taken in.
            with self._client.stream("POST", url, content=body, headers=dict(headers)) as answer:
                status, retry_after = answer.status_code, answer.headers.get("retry-after")
        except httpx.HTTPError as exc:
            self._mark_down(peer, type(exc).__name__)
            return PeerAnswer(Forwarded.UNAVAILABLE)
        with self._lock:
            self._down_until.pop(peer, None)
        if status >= 500:
            # It answered, so it is up: only this event is refused (the platform retries it).
            return PeerAnswer(Forwarded.UNAVAILABLE, status, retry_after)
        if 200 <= status < 300:
            return PeerAnswer(Forwarded.DELIVERED, status)
        return PeerAnswer(Forwarded.REFUSED, status, retry_after)

    def _mark_down(self, peer: str, why: str) -> None:
        with self._lock:
            first = self._down_until.get(peer, 0.0) <= self._clock()
            self._down_until[peer] = self._clock() + PEER_BACKOFF
        if first:
            log.warning(
                "webhook peer unavailable; its events are refused as retryable",
                peer=peer,
                error=why,
                retry_in=PEER_BACKOFF,
            )

    def close(self) -> None:
        self._client.close()
