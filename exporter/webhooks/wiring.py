"""The webhook endpoint wired to a running exporter: its sources, its cycle lock, its registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from exporter.app import Exporter
from exporter.config.webconfig import WebConfig
from exporter.core.logs import get_logger
from exporter.providers import SourceSettings
from exporter.web.server import ServerLimits
from exporter.webhooks.listener import WebhookListener
from exporter.webhooks.service import WebhookService

log = get_logger("exporter.webhooks")


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


def webhook_service(exporter: Exporter) -> WebhookService:
    def settings_of(name: str) -> SourceSettings | None:
        runtime = exporter.sources.get(name)
        return runtime.settings if runtime is not None else None

    return WebhookService(
        exporter.config.app.webhooks,
        exporter.registry,
        source_settings=settings_of,
        configured=lambda: [r.settings for r in list(exporter.sources.values())],
        apply_hints=exporter.apply_hints,
        poll=lambda name: exporter.collect_source(name) if name in exporter.sources else None,
    )


def start_webhooks(
    exporter: Exporter, endpoint: WebhookEndpoint | None, limits: ServerLimits | None
) -> RunningWebhooks | None:
    if endpoint is None:
        return None
    service = webhook_service(exporter)
    for name in service.sources():
        service.accepts(name)  # reads each secret now, so it is redacted before any request
    listener = WebhookListener(endpoint.listen, service, endpoint.web_config, limits)
    listener.start()
    exporter.health_checks.append(service.health)
    log.info(
        "serving webhooks",
        url=listener.url("/webhooks/<source>"),
        sources=service.sources(),
    )
    return RunningWebhooks(service, listener, exporter.stop_event.set)
