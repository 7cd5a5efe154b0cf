"""What the webhook endpoint does with a request: which source, verified or refused, queued as a
hint; and what a batch of hints does: the runs looked up and committed through the exporter's
own decide-and-commit, under the source's cycle lock (`Exporter.apply_hints`).

HTTP is the listener's; this module answers in status codes so it can be tested without it.
With shards, an event for a source another replica owns is verified here, then forwarded to
that replica (`routing` decides, `forward` sends) and its answer passed back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from exporter.config.webhooks import WebhookSettings
from exporter.core.logs import get_logger, register_secret
from exporter.core.sharding import UNSHARDED, Shard
from exporter.providers import SourceSettings, registry
from exporter.providers.webhooks import Dialect
from exporter.webhooks.forward import PeerAnswer, PeerForwarder
from exporter.webhooks.hints import POLL, Batch, HintWorkers
from exporter.webhooks.metrics import WebhookMetrics
from exporter.webhooks.routing import FORWARDED_BY, Decision, Forwarded, forwarded_headers, route
from exporter.webhooks.verify import ReplayGuard, Result, Verdict, verify

log = get_logger("exporter.webhooks")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)


ANSWERS = {
    Result.ACCEPTED: Answer(202),
    Result.REPLAYED: Answer(200),  # a retry of what was taken: done, stop retrying
    Result.UNKNOWN_EVENT: Answer(200),
    Result.BAD_SIGNATURE: Answer(401),
    Result.STALE: Answer(401),  # why is not said: a prober learns nothing
    Result.INVALID: Answer(400),
    Result.OVERSIZED: Answer(413),
    Result.QUEUE_FULL: Answer(429, {"Retry-After": "5"}),
}
NOT_FOUND = Answer(404)
# The owner of an event's source cannot take it now (not reachable, or the replicas disagree
# about who owns it): the platform retries, and the poll reconciles meanwhile.
RETRY_LATER = Answer(503, {"Retry-After": "10"})
# A body sent with a Content-Encoding (compressed): never inflated, refused before it is read.
COMPRESSED = Answer(415, {"Accept-Encoding": "identity"})
# A run's payload is kept with its hint up to this size (a full queue of them stays small); a
# larger one is looked up only.
MAX_KEPT_PAYLOAD = 64 * 1024


@dataclass
class _Secret:
    """A source's secret, re-read when its file changes (checked by its modification time)."""

    settings: SourceSettings
    value: bytes
    stamp: tuple[int, int] | None


class WebhookService:
    def __init__(
        self,
        settings: WebhookSettings,
        registry: CollectorRegistry,
        *,
        source_settings: Callable[[str], SourceSettings | None],
        configured: Callable[[], Iterable[SourceSettings]],
        apply_hints: Callable[[str, list[str], Mapping[str, Any]], object],
        poll: Callable[[str], object],
        shard: Shard = UNSHARDED,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`source_settings` and `configured` know every source of the configuration, this
        shard's and the others' (an event is verified wherever it arrives); `apply_hints` and
        `poll` only this shard's."""
        self.settings = settings
        self._source_settings = source_settings
        self._configured = configured
        self._apply_hints = apply_hints
        self._poll = poll
        self._clock = clock
        self._secrets: dict[str, _Secret] = {}
        self._guards: dict[str, ReplayGuard] = {}
        self._lock = threading.Lock()
        self.shard = shard
        self._forwarder = (
            PeerForwarder(settings.forward_timeout.total_seconds())
            if shard.sharded and settings.peer_url_template is not None
            else None
        )
        self.workers = HintWorkers(settings.queue_size, self._handle, self._batch_limit)
        self.metrics = WebhookMetrics(
            registry, self.sources, self.workers.depth, forwarding=self._forwarder is not None
        )

    def sources(self) -> list[str]:
        """The configured sources that take webhooks (with a secret, on a signing provider)."""
        return [
            s.name
            for s in self._configured()
            if dialect_of(s.provider) is not None and (s.webhook_secret or s.webhook_secret_file)
        ]

    def accepts(self, source: str) -> bool:
        return self._secret(source) is not None

    def oversized(self, source: str) -> Answer:
        self.metrics.received(source, Result.OVERSIZED)
        return ANSWERS[Result.OVERSIZED]

    def compressed(self, source: str) -> Answer:
        self.metrics.received(source, Result.INVALID)
        return COMPRESSED

    def receive(self, source: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """`headers` with lower-case names. The caller has checked `accepts` and the size."""
        secret = self._secret(source)
        settings = self._source_settings(source)
        dialect = dialect_of(settings.provider) if settings is not None else None
        if secret is None or settings is None or dialect is None:
            return NOT_FOUND
        if len(body) > self.settings.max_body_bytes:
            return self.oversized(source)
        now = self._clock()
        verdict = verify(
            dialect,
            headers,
            body,
            secret,
            now=now,
            tolerance=self.settings.tolerance.total_seconds(),
            run_id_paths=settings.webhook_run_id_paths,
        )
        result = verdict.result
        if result is Result.ACCEPTED and self.shard.sharded:
            assert verdict.event is not None
            elsewhere = self._elsewhere(source, settings, verdict.event.workflow_id, headers, body)
            if elsewhere is not None:
                return elsewhere
        if verdict.replay_key is not None and result in (Result.ACCEPTED, Result.UNKNOWN_EVENT):
            keep = len(body) <= MAX_KEPT_PAYLOAD
            result = self._admit(source, verdict.replay_key, verdict, now, keep)
        self.metrics.received(source, result)
        if result is Result.UNKNOWN_EVENT and verdict.event is not None:
            log.debug("webhook event ignored", source=source, event_type=verdict.event.event_type)
        return ANSWERS[result]

    def _elsewhere(
        self,
        source: str,
        settings: SourceSettings,
        workflow_id: str | None,
        headers: Mapping[str, str],
        body: bytes,
    ) -> Answer | None:
        """The answer for a verified event another shard owns; None: this one takes it."""
        provider = registry().get(settings.provider)
        found = route(
            self.shard,
            source,
            by_workflow=provider is not None and provider.shards_by_workflow,
            workflow_id=workflow_id,
            forwarded=FORWARDED_BY in headers,
        )
        if found.decision is Decision.TAKE:
            return None
        if found.decision is Decision.MISROUTED:
            self.metrics.received(source, Result.MISROUTED)
            return RETRY_LATER
        url = self.settings.peer_url(found.owner, source)
        if url is None or self._forwarder is None:
            return NOT_FOUND  # no peers configured: as before, only the owner takes its events
        answer = self._forwarder.forward(url, forwarded_headers(headers, self.shard.index), body)
        self.metrics.received(source, Result.FORWARDED)
        self.metrics.forwarded(source, answer.result)
        return _relayed(answer)

    def _admit(
        self, source: str, key: str, verdict: Verdict, now: float, keep_payload: bool
    ) -> Result:
        """Replay check, queueing and remembering the key as one step per source: a key is
        only remembered once its hint is queued, so a refused (429) event's retry is taken."""
        with self._lock:
            guard = self._guards.get(source)
            if guard is None:
                guard = self._guards[source] = ReplayGuard(
                    self.settings.tolerance.total_seconds(), self.settings.replay_memory
                )
            if guard.seen(key, now):
                return Result.REPLAYED
            if verdict.result is Result.ACCEPTED:
                assert verdict.event is not None
                run_id = verdict.event.run_id or POLL
                payload = verdict.event.payload if keep_payload else None
                if not self.workers.queue(source).offer(run_id, time.monotonic(), payload):
                    return Result.QUEUE_FULL
            guard.remember(key, now)
            return verdict.result

    def _secret(self, source: str) -> bytes | None:
        settings = self._source_settings(source)
        if settings is None or dialect_of(settings.provider) is None:
            return None
        if settings.webhook_secret is None and settings.webhook_secret_file is None:
            return None
        stamp = _file_stamp(settings.webhook_secret_file)
        cached = self._secrets.get(source)
        if cached is not None and cached.settings is settings and cached.stamp == stamp:
            return cached.value
        try:
            value = settings.read_webhook_secret()
        except ValueError as exc:
            log.warning(
                "webhook secret unreadable; keeping the current one", source=source, error=str(exc)
            )
            if cached is None:
                return None
            # Said once per change of the file, not once per request.
            self._secrets[source] = _Secret(settings, cached.value, stamp)
            return cached.value
        if value is None:
            return None
        register_secret(value)
        if cached is not None and cached.settings is settings:
            log.info("webhook secret file changed; using the new secret", source=source)
        self._secrets[source] = _Secret(settings, value.encode(), stamp)
        return value.encode()

    def _batch_limit(self, source: str) -> int:
        settings = self._source_settings(source)
        return settings.lookup_budget if settings is not None else 1

    def _handle(self, batch: Batch) -> None:
        if batch.poll:
            self._poll(batch.source)
        if batch.run_ids:
            self._apply_hints(batch.source, batch.run_ids, batch.payloads)
        done = time.monotonic()
        for received in batch.received.values():
            self.metrics.observe_latency(batch.source, done - received)

    def health(self) -> list[str]:
        """For /healthz: a source's hint worker that ended (its hints would wait unworked)."""
        return [
            f"source {source}: webhook hint worker stopped (see the log)"
            for source in self.workers.dead()
        ]

    def stop(self) -> None:
        self.workers.stop()
        if self._forwarder is not None:
            self._forwarder.close()


def _relayed(answer: PeerAnswer) -> Answer:
    """The owner's answer, for the platform: its 2xx and 4xx as they were (a 429's Retry-After
    too); no answer, or a 5xx, as retryable."""
    if answer.result is Forwarded.UNAVAILABLE or answer.status is None:
        return RETRY_LATER
    # Passed on only as the seconds our own listener sends, whatever the peer's says.
    wait = answer.retry_after
    headers = {"Retry-After": wait} if wait and wait.isdigit() and len(wait) <= 5 else {}
    return Answer(answer.status, headers)


def dialect_of(provider: str) -> Dialect | None:
    """How the provider signs its webhooks, from its class; None: it sends none (or is unknown)."""
    found = registry().get(provider)
    return found.webhook_dialect if found is not None else None


def _file_stamp(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size)
