"""The webhook endpoint wired to a running exporter through a narrow interface (`WebhookHost`):
its sources' settings, its shard, hints applied under a source's cycle lock, a poll, a health
reason, the stop event. It never sees the exporter's fields."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from exporter.config.webconfig import WebConfig
from exporter.config.webhooks import WebhookSettings
from exporter.core.logs import get_logger
from exporter.core.sharding import Shard
from exporter.providers import SourceSettings
from exporter.web.server import ServerLimits
from exporter.webhooks.listener import WebhookListener
from exporter.webhooks.service import WebhookService

log = get_logger("exporter.webhooks")


class WebhookHost(Protocol):
    """What the webhook service may ask of the running exporter, and all it may."""

    @property
    def stop_event(self) -> threading.Event:
        """Set at shutdown; setting it interrupts the exporter's requests in flight."""
        ...

    @property
    def registry(self) -> CollectorRegistry:
        """Where the webhook families are registered."""
        ...

    def webhook_settings(self) -> WebhookSettings: ...

    def source_settings(self, name: str) -> SourceSettings | None:
        """A configured source's settings; None: not (or no longer) configured."""
        ...

    def configured_sources(self) -> list[SourceSettings]: ...

    @property
    def shard(self) -> Shard:
        """This replica's shard: an event for another shard's source is forwarded there."""
        ...

    def every_source(self) -> list[SourceSettings]:
        """Every source of the configuration, the other shards' too: an event is verified by
        whichever replica it reaches."""
        ...

    def apply_hints(
        self, name: str, run_ids: list[str], payloads: Mapping[str, Any] | None = None
    ) -> object:
        """Looks up and commits the runs hints named, under the source's cycle lock."""
        ...

    def poll(self, name: str) -> object:
        """A cycle of one source now (a hint that names no run), if it is still configured."""
        ...

    def add_health_check(self, check: Callable[[], list[str]]) -> None:
        """A further reason /healthz may fail."""
        ...


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """`--webhook.listen-address` and `--webhook.config.file` (TLS only)."""

    listen: str
    web_config: WebConfig | None = None


@dataclass
class RunningWebhooks:
    service: WebhookService
    listener: WebhookListener
    # Interrupts the exporter's requests (its stop event): a hint's lookup in flight ends now
    # instead of holding the shutdown for the workers' whole wait.
    cancel: Callable[[], None]

    def stop(self) -> None:
        """At shutdown only: no more requests, the lookups in flight cancelled, nothing queued
        started (polling finds those runs at the next start)."""
        self.listener.stop()
        self.cancel()
        self.service.stop()


def webhook_service(host: WebhookHost) -> WebhookService:
    # Forwarding between shards, any replica verifies the events of any source and sends them
    # on; otherwise a replica takes the events of the sources running here alone (one that
    # failed to start takes none, and another shard's is unknown here: 404).
    settings = host.webhook_settings()
    forwarding = host.shard.sharded and settings.peer_url_template is not None
    sources = host.every_source if forwarding else host.configured_sources

    def source_settings(name: str) -> SourceSettings | None:
        if not forwarding:
            return host.source_settings(name)
        return next((s for s in sources() if s.name == name), None)

    return WebhookService(
        settings,
        host.registry,
        source_settings=source_settings,
        configured=sources,
        apply_hints=host.apply_hints,
        poll=host.poll,
        shard=host.shard,
    )


def start_webhooks(
    host: WebhookHost, endpoint: WebhookEndpoint | None, limits: ServerLimits | None
) -> RunningWebhooks | None:
    if endpoint is None:
        return None
    service = webhook_service(host)
    for name in service.sources():
        service.accepts(name)  # reads each secret now, so it is redacted before any request
    if service.shard.sharded and service.settings.peer_url_template is None:
        log.warning(
            "sharded without webhooks.peer_url_template: events for another shard's sources "
            "are answered 404",
            shard_index=service.shard.index,
            shard_count=service.shard.count,
        )
    listener = WebhookListener(endpoint.listen, service, endpoint.web_config, limits)
    listener.start()
    host.add_health_check(service.health)
    log.info(
        "serving webhooks",
        url=listener.url("/webhooks/<source>"),
        sources=service.sources(),
    )
    return RunningWebhooks(service, listener, host.stop_event.set)
