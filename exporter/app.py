"""A running exporter's lifecycle: start, schedule, collect, take hints, reload, shut down.

The parts it runs are built by `exporter.wiring` (the registry, each source, the alerting agent);
the work happens in `collection`, `accounting`, `store` and `metrics`; when it runs is
`schedule`'s, and what a new configuration changes is `reload`'s. The webhook service sees it only
through `exporter.webhooks.wiring.WebhookHost`.

Over 300 lines with no named split: start, reload and shutdown act on the same running sources
under one lock; building them is `exporter.wiring`'s.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import disable_created_metrics

from exporter.alerting.agent import AlertAgent
from exporter.collection.cycle import CycleReport, HintReport, utc_now
from exporter.collection.schedule import Schedule
from exporter.collection.summary import cycle_summary
from exporter.config.reload import plan_reload
from exporter.config.settings import Config
from exporter.config.webhooks import WebhookSettings
from exporter.core.accounting import SeriesBudget
from exporter.core.errors import Cancelled
from exporter.core.heap import HeapSettler, tune_collector
from exporter.core.logs import get_logger, register_secret
from exporter.core.model import ACTIVE_STATUSES, RunStatus
from exporter.exposition.metrics import RunsCollector, step_series, workflow_series
from exporter.exposition.selfmetrics import SelfMetrics
from exporter.exposition.staticlabels import LabelledRegistry, StaticLabels
from exporter.providers import SourceSettings, registry
from exporter.state.recent import RecentRuns
from exporter.state.snapshot import Snapshot
from exporter.state.store import Store
from exporter.web.health import Collecting, Due, Unwritable, collection_bound, problems
from exporter.wiring import Alerting, SourceFactory, SourceRuntime, process_registry

log = get_logger("exporter")

# `_created` samples double the series of every counter and histogram for little use here.
disable_created_metrics()  # type: ignore[no-untyped-call]


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
        # Start-up sets the collector once for the process; each cycle then settles its heap.
        tune_collector()
        self._heap = HeapSettler()
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
        self.registry = process_registry()
        self.selfmetrics = SelfMetrics(self.registry)
        # What /metrics serves: the registry's families written, each source's static labels
        # in their label sets (the domain families are built with them: see below).
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
        self._alerting = Alerting(self.store, self.registry)
        self._alerting.set(config.app.alerting)
        self.shard = config.shard
        self.selfmetrics.shard(self.shard.index, self.shard.count)
        self._sources_factory = SourceFactory(
            store=self.store,
            selfmetrics=self.selfmetrics,
            series=self.series,
            workflow_cost=self.workflow_cost,
            step_cost=self.step_cost,
            shard=self.shard,
            stop_event=self.stop_event,
            alerts=lambda: self.alerting,
        )
        self.sources: dict[str, SourceRuntime] = {}
        for settings in config.own_sources():
            self.sources[settings.name] = self._sources_factory.build(settings, clock)
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
                static_labels=self.static_labels.current,
            )
        )
        self._schedule: Schedule | None = None
        self._lock = threading.Lock()
        # Moves after every cycle and reload: a rendered /metrics older than that is stale.
        self._generations = itertools.count(1)
        self.generation = 0

    # Alerting agent ------------------------------------------------------------------------

    @property
    def alerting(self) -> AlertAgent | None:
        return self._alerting.agent

    def flush_alerts(self) -> int:
        return self._alerting.flush()

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
        self._heap.settle_after_cycle()
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

    # What the webhook service may ask (`exporter.webhooks.wiring.WebhookHost`) -----------------

    def webhook_settings(self) -> WebhookSettings:
        return self.config.app.webhooks

    def source_settings(self, name: str) -> SourceSettings | None:
        runtime = self.sources.get(name)
        return runtime.settings if runtime is not None else None

    def configured_sources(self) -> list[SourceSettings]:
        return [runtime.settings for runtime in list(self.sources.values())]

    def every_source(self) -> list[SourceSettings]:
        return list(self.config.sources)

    def poll(self, name: str) -> CycleReport | None:
        """A cycle of one source now, if it is still configured (a reload may have removed it)."""
        return self.collect_source(name) if name in self.sources else None

    def add_health_check(self, check: Callable[[], list[str]]) -> None:
        """A further reason /healthz may fail, from a part wired on afterwards."""
        self.health_checks.append(check)

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
                self._alerting.set(plan.config.app.alerting)
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
                runtime = self._sources_factory.build(settings, self._clock)
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
        self._alerting.close()
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
            for w in (*writes, self._alerting.outbox_writes)
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
