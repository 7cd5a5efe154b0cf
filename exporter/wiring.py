"""Builds the parts a running exporter is made of: the registry, each source (its API client,
provider, events and collector) and the alerting agent with its outbox. Nothing here decides when
anything runs: that is the lifecycle's (`exporter.app`)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from exporter.alerting.agent import AlertAgent
from exporter.collection.cycle import CycleReport, SourceCollector
from exporter.collection.sourceevents import SourceEvents
from exporter.config.alerting import AlertingSettings
from exporter.core.accounting import SeriesBudget
from exporter.core.errors import StateWriteError
from exporter.core.logs import get_logger, register_secret
from exporter.core.sharding import Shard
from exporter.exposition.selfmetrics import AlertInstruments, SelfMetrics
from exporter.providers import Provider, SourceSettings, registry
from exporter.providers.client import ApiClient, RetryPolicy, TokenBucket
from exporter.state.statewrites import StateWrites
from exporter.state.store import Store

log = get_logger("exporter")


@dataclass
class SourceRuntime:
    settings: SourceSettings
    collector: SourceCollector
    client: ApiClient
    api_key: str
    # What the source's provider reported: learned facts, oddities, unknown statuses (`check`).
    events: SourceEvents
    # The provider's class, for what it says of itself (hints, statuses), not its internals.
    provider_cls: type[Provider[Any]]
    last_report: CycleReport | None = None
    attempts: int = 0
    # `time.monotonic()` at which each of its collections now running began (usually none or
    # one), from before the lock is taken: a collection stuck waiting for it is hung too.
    running_since: list[float] = field(default_factory=list)
    # Held for a whole cycle: a reload swaps a source only between cycles.
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.settings.name


def process_registry() -> CollectorRegistry:
    """The registry with the process, platform and garbage-collector families every exporter
    serves."""
    found = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=found)
    PlatformCollector(registry=found)
    GCCollector(registry=found)
    return found


@dataclass(frozen=True, slots=True)
class SourceFactory:
    """What every source of one process is built with: the shared store, self-metrics, series
    budget and stop event."""

    store: Store
    selfmetrics: SelfMetrics
    series: SeriesBudget
    workflow_cost: int
    step_cost: int
    shard: Shard
    stop_event: threading.Event
    alerts: Callable[[], AlertAgent | None]

    def build(self, settings: SourceSettings, clock: Callable[[], datetime]) -> SourceRuntime:
        provider_cls = registry()[settings.provider]
        api_key = settings.read_api_key()
        register_secret(api_key)
        # Redacted from the start (and from a reload that adds or changes the source), whether
        # or not a webhook has been received yet: the service reads it again per request.
        with contextlib.suppress(ValueError):
            register_secret(settings.read_webhook_secret() or "")
        instruments = self.selfmetrics.for_source(settings.name, settings.provider)
        source_log = log.bind(source=settings.name, provider=settings.provider)
        client = ApiClient(
            source=settings.name,
            base_url=settings.base_url,
            headers=provider_cls.auth_headers(settings, api_key),
            timeout=settings.timeout.total_seconds(),
            retry=RetryPolicy(max_retries=settings.max_retries),
            observer=instruments,
            rate_limiter=TokenBucket(settings.rate_limit) if settings.rate_limit else None,
            stop=self.stop_event,
            max_response_bytes=settings.max_response_bytes,
            deadline=settings.request_deadline.total_seconds(),
        )
        events = SourceEvents(instruments, source_log)
        provider = provider_cls(settings, client, events, shard=self.shard)
        collector = SourceCollector(
            settings,
            provider,
            self.store,
            instruments,
            source_log,
            clock=clock,
            series=self.series,
            workflow_cost=self.workflow_cost,
            alerts=self.alerts,
            step_cost=self.step_cost,
        )
        return SourceRuntime(settings, collector, client, api_key, events, provider_cls)


class Alerting:
    """The alerting agent as configured now (or none), and whether its outbox takes writes."""

    def __init__(self, store: Store, registry: CollectorRegistry) -> None:
        self._store = store
        self._registry = registry
        self.agent: AlertAgent | None = None
        # The alert outbox's writes (a delivered alert leaves it) share the state file.
        self.outbox_writes = StateWrites("alert outbox", log)
        self._instruments: AlertInstruments | None = None

    def set(self, settings: AlertingSettings | None) -> None:
        """Starts, replaces or stops the agent. Its queue lives in the store, so nothing queued
        is lost when the Alertmanagers change."""
        if settings is not None and self._instruments is None:
            self._instruments = AlertInstruments(self._registry, self._outbox_depth)
        old = self.agent
        self.agent = (
            AlertAgent(settings, self._store, self._instruments)
            if settings is not None and self._instruments is not None
            else None
        )
        if old is not None:
            old.close()

    def _outbox_depth(self) -> int:
        agent = self.agent
        return agent.outbox.depth() if agent is not None else 0

    def flush(self) -> int:
        agent = self.agent
        if agent is None:
            return 0
        try:
            flushed = agent.flush()
        except StateWriteError as exc:
            # What was sent stays queued and is sent again: Alertmanager folds the repeat.
            self.outbox_writes.failed(exc)
            return 0
        except Exception:  # a bug in delivery must not stop collection; the queue keeps all
            log.exception("alert delivery crashed; the events stay queued")
            return 0
        self.outbox_writes.succeeded()
        return flushed

    def close(self) -> None:
        if self.agent is not None:
            self.agent.close()
