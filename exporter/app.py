"""Wires one process together: store, sources (provider + client + collector), registry.

A thin shell: the work happens in `collect`, `accounting`, `store` and `metrics`; when it runs is
`schedule`'s, and what a new configuration changes is `reload`'s.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, disable_created_metrics
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from exporter.alerting.agent import AlertAgent
from exporter.collection.cycle import CycleReport, HintReport, SourceCollector, utc_now
from exporter.collection.schedule import Schedule
from exporter.collection.sourceevents import SourceEvents
from exporter.collection.summary import cycle_summary
from exporter.config.alerting import AlertingSettings
from exporter.config.reload import plan_reload
from exporter.config.settings import Config
from exporter.core.accounting import SeriesBudget
from exporter.core.errors import Cancelled, StateWriteError
from exporter.core.logs import get_logger, register_secret
from exporter.core.model import ACTIVE_STATUSES, RunStatus
from exporter.exposition.metrics import RunsCollector, step_series, workflow_series
from exporter.exposition.selfmetrics import AlertInstruments, SelfMetrics
from exporter.exposition.staticlabels import LabelledRegistry, StaticLabels
from exporter.providers import Provider, SourceSettings, registry
from exporter.providers.client import ApiClient, RetryPolicy, TokenBucket
from exporter.state.recent import RecentRuns
from exporter.state.snapshot import Snapshot
from exporter.state.statewrites import StateWrites
from exporter.state.store import Store
from exporter.web.health import Collecting, Due, Unwritable, collection_bound, problems

log = get_logger("exporter")

# `_created` samples double the series of every counter and histogram for little use here.
disable_created_metrics()  # type: ignore[no-untyped-call]


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


class Exporter:
    def __init__(
        self,
        config: Config,
        *,
        state_path: str | None = None,
        clock: Callable[[], datetime] = utc_now,
        cycle_summaries: bool = False,
    ) -> None:
        """`cycle_summaries`: one info line per source per cycle, for a person watching."""
        self.config = config
        self.stop_event = threading.Event()
        # More reasons /healthz may fail, from parts wired on afterwards (the webhook workers).
        self.health_checks: list[Callable[[], list[str]]] = []
        self.store = Store(
            state_path or str(config.app.state_path), config.app.buckets.as_mapping()
        )
        self.recent = RecentRuns()
        self.store.on_commit(
            lambda source, changes: self.recent.record(source, changes.finished_runs, clock())
        )
        self._cycle_summaries = cycle_summaries
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.selfmetrics = SelfMetrics(self.registry)
        # What /metrics serves: the registry with each source's static labels added.
        self.static_labels = StaticLabels()
        self.exposed = LabelledRegistry(self.registry, self.static_labels)
        self._clock = clock
        # Each workflow also reserves its (workflow, code="other") error series, and the budget
        # starts with the `other` workflow's series reserved, so folding never overshoots it.
        self.workflow_cost = workflow_series(config.app.buckets.as_mapping()) + 1
        self.step_cost = step_series(config.app.buckets.as_mapping())
        self.series = SeriesBudget(
            config.app.max_series,
            self.workflow_cost + self.store.series_in_use(self.workflow_cost, self.step_cost),
        )
        self.alerting: AlertAgent | None = None
        # The alert outbox's writes (a delivered alert leaves it) share the state file.
        self._outbox_writes = StateWrites("alert outbox", log)
        self._alert_instruments: AlertInstruments | None = None
        self._set_alerting(config.app.alerting)
        self.shard = config.shard
        self.selfmetrics.shard(self.shard.index, self.shard.count)
        self.sources: dict[str, SourceRuntime] = {}
        for settings in config.own_sources():
            self.sources[settings.name] = self._build_source(settings, clock)
        self._set_static_labels()
        if self.shard.sharded:
            log.info(
                "sharded",
                shard_index=self.shard.index,
                shard_count=self.shard.count,
                sources=sorted(self.sources),
            )
        self.registry.register(
            RunsCollector(
                self._configured_snapshot,
                clock=lambda: clock().timestamp(),
                active_statuses=self._active_statuses,
                new_series_hold=config.app.new_series_hold.total_seconds(),
            )
        )
        self._schedule: Schedule | None = None
        self._lock = threading.Lock()
        # Moves after every cycle and reload: a rendered /metrics older than that is stale.
        self._generations = itertools.count(1)
        self.generation = 0

    def _build_source(
        self, settings: SourceSettings, clock: Callable[[], datetime]
    ) -> SourceRuntime:
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
            alerts=lambda: self.alerting,
            step_cost=self.step_cost,
        )
        return SourceRuntime(settings, collector, client, api_key, events, provider_cls)

    # Alerting agent ------------------------------------------------------------------------

    def _set_alerting(self, settings: AlertingSettings | None) -> None:
        """Starts, replaces or stops the agent. Its queue lives in the store, so nothing queued
        is lost when the Alertmanagers change."""
        if settings is not None and self._alert_instruments is None:
            self._alert_instruments = AlertInstruments(self.registry, self._outbox_depth)
        old = self.alerting
        self.alerting = (
            AlertAgent(settings, self.store, self._alert_instruments)
            if settings is not None and self._alert_instruments is not None
            else None
        )
        if old is not None:
            old.close()

    def _outbox_depth(self) -> int:
        agent = self.alerting
        return agent.outbox.depth() if agent is not None else 0

    def flush_alerts(self) -> int:
        agent = self.alerting
        if agent is None:
            return 0
        try:
            flushed = agent.flush()
        except StateWriteError as exc:
            # What was sent stays queued and is sent again: Alertmanager folds the repeat.
            self._outbox_writes.failed(exc)
            return 0
        except Exception:  # a bug in delivery must not stop collection; the queue keeps all
            log.exception("alert delivery crashed; the events stay queued")
            return 0
        self._outbox_writes.succeeded()
        return flushed

    def _active_statuses(self, source: str) -> list[str]:
        runtime = self.sources.get(source)
        if runtime is None:
            return [RunStatus.QUEUED.value, RunStatus.RUNNING.value]
        statuses = runtime.provider_cls.canonical_statuses(runtime.settings) & ACTIVE_STATUSES
        return sorted(s.value for s in statuses)

    # Collection ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _at_work(self, runtime: SourceRuntime) -> Iterator[None]:
        """A cycle's or a batch of hints' hold on a source: its lock, its key fresh, and the
        wait and the work on record for /healthz (a held lock counts as hung)."""
        started = time.monotonic()
        runtime.running_since.append(started)
        try:
            with runtime.lock:
                self._refresh_key(runtime)
                yield
        finally:
            runtime.running_since.remove(started)

    def collect_source(self, name: str) -> CycleReport:
        runtime = self.sources[name]
        with self._at_work(runtime):
            return self._collect_locked(runtime)

    def _collect_locked(self, runtime: SourceRuntime) -> CycleReport:
        name = runtime.name
        before = self.recent.totals(name) if self._cycle_summaries else None
        try:
            report = runtime.collector.collect()
        except Cancelled:
            report = CycleReport(name, runtime.settings.provider, ok=False, error="shutting down")
        except Exception as exc:  # a bug in one source must not stop the others
            log.exception("collection crashed", source=name)
            runtime.collector.instruments.collection(False, 0.0, time.time())
            report = CycleReport(name, runtime.settings.provider, ok=False, error=repr(exc))
        runtime.last_report = report
        runtime.attempts += 1
        if before is not None and report.ok:
            log.info(cycle_summary(name, self.recent.totals(name), before, report.active))
        self.generation = next(self._generations)
        return report

    def apply_hints(
        self, name: str, run_ids: list[str], payloads: Mapping[str, Any] | None = None
    ) -> HintReport | None:
        """Webhook hints for one source: its runs looked up and committed under the cycle lock,
        so a hint and a poll never decide at once. None: the source is gone (a reload), or the
        process is shutting down."""
        runtime = self.sources.get(name)
        if runtime is None:
            return None
        with self._at_work(runtime):
            try:
                report = runtime.collector.apply_hints(run_ids, payloads or {})
            except Cancelled:
                return None  # shutting down: nothing was committed; the poll finds the runs
            self.generation = next(self._generations)
        if report.counted:
            self.flush_alerts()  # a failed run's alert leaves now, not at the next flush
        return report

    def collect_all(self) -> list[CycleReport]:
        return [self.collect_source(name) for name in self.sources]

    def _refresh_key(self, runtime: SourceRuntime) -> None:
        """Re-reads `api_key_file` so a rotated key is used without a restart."""
        if runtime.settings.api_key_file is None:
            return
        try:
            key = runtime.settings.read_api_key()
        except ValueError as exc:
            log.warning("api key file unreadable; keeping the current key", error=str(exc))
            return
        if key != runtime.api_key:
            register_secret(key)
            provider_cls = registry()[runtime.settings.provider]
            runtime.client.set_headers(provider_cls.auth_headers(runtime.settings, key))
            runtime.api_key = key
            log.info("api key file changed; using the new key", source=runtime.name)

    # Scheduling and reload ------------------------------------------------------------------

    def _overrun(self, name: str) -> None:
        runtime = self.sources.get(name)
        if runtime is None:
            return
        runtime.collector.instruments.overrun()
        log.warning(
            "collection still running when the next one was due; that one is skipped",
            source=name,
            interval_seconds=self.config.interval_for(runtime.settings).total_seconds(),
        )

    def start(self) -> None:
        self._schedule = Schedule(overrun=self._overrun)
        for index, runtime in enumerate(self.sources.values()):
            self._schedule_source(runtime, delay=0.2 * index)
        self._schedule_alerts()
        self._schedule.start()

    def _schedule_alerts(self) -> None:
        assert self._schedule is not None
        agent = self.alerting
        every = agent.settings.flush_interval if agent is not None else None
        self._schedule.deliver_alerts(self.flush_alerts, every)

    def _schedule_source(self, runtime: SourceRuntime, delay: float) -> None:
        assert self._schedule is not None
        self._schedule.collect(
            runtime.name,
            self.collect_source,
            interval=self.config.interval_for(runtime.settings),
            jitter_ratio=self.config.app.jitter_ratio,
            delay=delay,
        )

    def reload(self, config: Config) -> list[str]:
        """Applies a new configuration: sources added, removed or changed; the unchanged ones are
        left running untouched. Counts live in the store by source name, so a changed source
        continues its counters. Returns what changed, for the log."""
        with self._lock:
            plan = plan_reload(
                self.config,
                config,
                {name: runtime.settings for name, runtime in self.sources.items()},
                self.alerting.settings if self.alerting else None,
            )
            self.config = plan.config
            if plan.alerting_changed:
                self._set_alerting(plan.config.app.alerting)
                if self._schedule is not None:
                    self._schedule_alerts()
            for name in plan.removed:
                self._drop_source(name)
                self.recent.forget(name)
            for settings in plan.relabelled:
                runtime = self.sources[settings.name]
                with runtime.lock:  # between cycles: a cycle's alerts use one set of labels
                    runtime.settings = runtime.collector.settings = settings
            self._set_static_labels()
            for index, settings in plan.rebuilt:
                if settings.name in self.sources:
                    self._drop_source(settings.name)
                runtime = self._build_source(settings, self._clock)
                self.sources[settings.name] = runtime
                if self._schedule is not None:
                    self._schedule_source(runtime, delay=0.2 * index)
            self.generation = next(self._generations)
        return plan.changes

    def _set_static_labels(self) -> None:
        """From the configuration as it now is: a reload that changes only a source's labels
        changes them here, at the next scrape."""
        self.static_labels.set({s.name: s.labels for s in self.config.sources})

    def _drop_source(self, name: str) -> None:
        runtime = self.sources.pop(name)
        if self._schedule is not None:
            self._schedule.stop_collecting(name)
        with runtime.lock:  # let a running cycle finish first
            runtime.client.close()
        self.selfmetrics.remove_source(name, runtime.settings.provider)

    def _configured_snapshot(self) -> Snapshot:
        """Only configured sources are exported; a removed source's state stays in the store,
        so adding it back continues its counters."""
        snapshot = self.store.snapshot()
        configured = set(self.sources)
        if set(snapshot.providers) <= configured:
            return snapshot
        return snapshot.only(configured)

    def shutdown(self) -> None:
        """Stops scheduling, interrupts waits, lets a running cycle end, closes the store."""
        self.stop_event.set()
        if self._schedule is not None:
            self._schedule.shutdown()
            self._schedule = None
        for runtime in self.sources.values():
            runtime.client.close()
        if self.alerting is not None:
            self.alerting.close()
        self.store.close()

    # Status for /readyz and the landing page -----------------------------------------------

    def health(self) -> list[str]:
        """Why /healthz fails (see `exporter.web.health`); empty: healthy."""
        now = time.monotonic()
        collecting = []
        for runtime in list(self.sources.values()):
            since = min(runtime.running_since, default=None)
            bound = self.config.app.hung_after
            collecting.append(
                Collecting(
                    runtime.name,
                    None if since is None else now - since,
                    bound.total_seconds()
                    if bound is not None
                    else collection_bound(
                        self.config.interval_for(runtime.settings), runtime.settings
                    ),
                )
            )
        more = [problem for check in list(self.health_checks) for problem in check()]
        writes = [r.collector.state_writes for r in list(self.sources.values())]
        unwritable = [
            Unwritable(w.what, w.problem)
            for w in (*writes, self._outbox_writes)
            if w.problem is not None
        ]
        schedule = self._schedule
        if schedule is None:
            return problems(collecting, None, [], unwritable) + more
        due = [
            Due(job, overdue, interval) for job, overdue, interval in schedule.overdue(utc_now())
        ]
        return problems(collecting, schedule.running(), due, unwritable) + more

    def ready(self) -> bool:
        return all(r.attempts > 0 for r in self.sources.values())

    def status(self) -> list[SourceRuntime]:
        return list(self.sources.values())
