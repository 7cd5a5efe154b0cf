"""Sends queued events to each Alertmanager (`POST /api/v2/alerts`), batched and paced.

A failed batch stays queued and its target backs off (doubling, capped), so an Alertmanager that
is down for hours gets everything when it returns, oldest first. A crash between Alertmanager's
answer and the commit that records it resends that batch once; Alertmanager identifies alerts by
their labels, so the resend updates the same alert instead of notifying twice.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import httpx

from exporter import __version__
from exporter.alerting.events import AlertEvent, as_sent
from exporter.alerting.outbox import Outbox
from exporter.config.alerting import AlertingSettings, AlertmanagerTarget
from exporter.core.logs import get_logger, register_secret

log = get_logger("exporter.alerting")

BACKOFF_START = 1.0
BACKOFF_MAX = 300.0


class DeliveryObserver(Protocol):
    def sent(self, kind: str, count: int) -> None: ...
    def failed(self, reason: str, count: int) -> None: ...


@dataclass
class _TargetState:
    target: AlertmanagerTarget
    client: httpx.Client
    tokens: float
    refilled: float
    backoff: float = 0.0
    retry_at: float = 0.0


def _client(target: AlertmanagerTarget) -> httpx.Client:
    headers = {"User-Agent": f"workflow-runs-exporter/{__version__}"}
    auth: httpx.BasicAuth | None = None
    token = target.secret(target.bearer_token, target.bearer_token_file)
    if token:
        register_secret(token)
        headers["Authorization"] = f"Bearer {token}"
    password = target.secret(target.password, target.password_file)
    if target.username is not None:
        if password:
            register_secret(password)
        auth = httpx.BasicAuth(target.username, password or "")
    verify: ssl.SSLContext | bool = True
    if target.insecure_skip_verify:
        verify = False
    elif target.ca_file or target.cert_file:
        context = ssl.create_default_context(cafile=str(target.ca_file) if target.ca_file else None)
        if target.cert_file and target.key_file:
            context.load_cert_chain(str(target.cert_file), str(target.key_file))
        verify = context
    return httpx.Client(
        base_url=target.url,
        headers=headers,
        auth=auth,
        verify=verify,
        timeout=target.timeout.total_seconds(),
        # A redirect could carry the credentials to another host.
        follow_redirects=False,
    )


@dataclass
class Sender:
    settings: AlertingSettings
    outbox: Outbox
    observer: DeliveryObserver
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _targets: list[_TargetState] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        now = self.clock()
        self._targets = [
            _TargetState(t, _client(t), float(self.settings.max_per_minute), now)
            for t in self.settings.alertmanagers
        ]

    @property
    def target_urls(self) -> list[str]:
        return [t.target.url for t in self._targets]

    def flush(self) -> int:
        """Sends what is due to every target; returns how many events were accepted."""
        with self._lock:  # one flush at a time: a slow Alertmanager must not double-send
            return sum(self._flush_target(state) for state in self._targets)

    def _flush_target(self, state: _TargetState) -> int:
        accepted = 0
        while True:
            now = self.clock()
            if now < state.retry_at:
                return accepted
            self._refill(state, now)
            room = min(self.settings.batch_size, int(state.tokens))
            if room < 1:
                return accepted  # the rate cap: the rest waits for the next flush
            batch = self.outbox.pending(state.target.url, room)
            if not batch:
                return accepted
            taken, refused, reason = self._send(state, batch)
            settled = taken + refused
            if settled:
                state.tokens -= len(settled)
                # A refused event can never be delivered: it leaves the queue, loudly, instead
                # of holding back every event behind it.
                self.outbox.accepted(state.target.url, [e.key for e in settled], self.target_urls)
                for kind, count in Counter(event.kind for event in taken).items():
                    self.observer.sent(kind, count)
                accepted += len(taken)
            if refused:
                self.observer.failed("invalid", len(refused))
                log.error(
                    "alertmanager refused alerts as invalid; they are dropped",
                    alertmanager=state.target.url,
                    events=[e.key for e in refused],
                )
            if reason is not None:
                state.backoff = min(BACKOFF_MAX, max(BACKOFF_START, state.backoff * 2))
                state.retry_at = now + state.backoff
                unsent = len(batch) - len(settled)
                self.observer.failed(reason, unsent)
                log.warning(
                    "alertmanager did not take the alerts; they stay queued",
                    alertmanager=state.target.url,
                    reason=reason,
                    alerts=unsent,
                    retry_in_seconds=state.backoff,
                )
                return accepted
            state.backoff = 0.0

    def _send(
        self, state: _TargetState, batch: list[AlertEvent]
    ) -> tuple[list[AlertEvent], list[AlertEvent], str | None]:
        """Posts a batch: (taken, refused as invalid, why the rest was not sent or None).

        Alertmanager answers 400 for a whole batch when one alert in it is invalid; halving the
        batch until the bad alert stands alone delivers the others (log2(batch) extra posts)."""
        now = self.wall_clock()
        reason = self._post(state, [as_sent(e, now, self._lifetime(e)) for e in batch])
        if reason is None:
            return batch, [], None
        if reason != "400":
            return [], [], reason
        if len(batch) == 1:
            return [], batch, None
        middle = len(batch) // 2
        taken, refused, reason = self._send(state, batch[:middle])
        if reason is not None:
            return taken, refused, reason
        more_taken, more_refused, reason = self._send(state, batch[middle:])
        return taken + more_taken, refused + more_refused, reason

    def _lifetime(self, event: AlertEvent) -> timedelta:
        if event.kind == "failed":
            return self.settings.failed.resolve_after
        return 2 * self.settings.refresh_every  # as an open alert's refresh would give it

    def _refill(self, state: _TargetState, now: float) -> None:
        rate = self.settings.max_per_minute / 60.0
        # The bucket holds a minute's worth: a burst after a quiet spell stays within the cap.
        state.tokens = min(
            float(self.settings.max_per_minute), state.tokens + (now - state.refilled) * rate
        )
        state.refilled = now

    @staticmethod
    def _post(state: _TargetState, alerts: list[dict[str, object]]) -> str | None:
        """None when accepted, else why not (an HTTP status or `error`)."""
        try:
            response = state.client.post("/api/v2/alerts", json=alerts)
        except httpx.HTTPError as exc:
            log.debug("alertmanager unreachable", error=type(exc).__name__)
            return "error"
        if response.status_code // 100 == 2:
            return None
        if response.status_code == 400:
            log.debug("alertmanager refused the batch", detail=response.text[:300])
        return str(response.status_code)

    def close(self) -> None:
        for state in self._targets:
            state.client.close()
