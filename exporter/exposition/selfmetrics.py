"""The exporter's own health metrics, instrumented directly (they describe this process).

Over 300 lines with no named split: the instruments are declared once, with their help texts,
beside the per-source and alerting handles that record into them.

Domain metrics live in `exporter.exposition.metrics` and render from the state store; these do
not need to survive a restart, as is usual for a process's own counters.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from exporter import __version__

API_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
COLLECTION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# Native status values are chosen by the provider, so the label needs a bound of its own.
MAX_NATIVE_STATUS_VALUES = 20
# What a scan can find that does not add up (see exporter.providers.paging and the providers).
SCAN_INCONSISTENCIES = (
    "fewer_than_total",
    "page_repeated",
    "runs_count_mismatch",
    "change_without_update",
    "order_contradicts_setting",
    "clock_ahead",
    "total_below_items",
    "total_negative",
    "total_unreachable",
    "cursor_cycle",
    "workflow_name_collision",
)
SOURCE_FACTS = ("list_order", "first_page", "page_size", "timestamps", "lookups")
# Why the audit walk counted a run the fast incremental scan had missed (see
# exporter.collection.audit).
FOUND_LATE_REASONS = ("below_floor", "missed_by_scan", "active_untracked")
AUDIT_RESULTS = ("completed", "aborted")


class SelfMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.source_up = Gauge(
            "workflow_exporter_source_up",
            "1 if the last collection of the source succeeded, else 0.",
            ["source", "provider"],
            registry=registry,
        )
        self.last_success = Gauge(
            "workflow_exporter_last_success_timestamp_seconds",
            "Unix time of the source's last successful collection.",
            ["source"],
            registry=registry,
        )
        self.collection_duration = Histogram(
            "workflow_exporter_collection_duration_seconds",
            "Duration of one collection cycle of a source.",
            ["source"],
            buckets=COLLECTION_BUCKETS,
            registry=registry,
        )
        self.collections = Counter(
            "workflow_exporter_collections",
            "Collection cycles by result (success, error).",
            ["source", "result"],
            registry=registry,
        )
        self.collection_overruns = Counter(
            "workflow_exporter_collection_overruns",
            "Cycles of a source skipped because its previous one was still running when they "
            "were due (a collection slower than its interval).",
            ["source"],
            registry=registry,
        )
        self.api_requests = Counter(
            "workflow_exporter_api_requests",
            "Requests to provider APIs by endpoint and HTTP status (`error` = transport failure).",
            ["source", "endpoint", "code"],
            registry=registry,
        )
        self.api_duration = Histogram(
            "workflow_exporter_api_request_duration_seconds",
            "Latency of provider API requests.",
            ["source", "endpoint"],
            buckets=API_LATENCY_BUCKETS,
            registry=registry,
        )
        self.api_retries = Counter(
            "workflow_exporter_api_retries",
            "Retried provider API requests by reason.",
            ["source", "reason"],
            registry=registry,
        )
        self.runs_ingested = Counter(
            "workflow_exporter_runs_ingested",
            "Run records received from the provider API and accepted.",
            ["source"],
            registry=registry,
        )
        self.invalid_records = Counter(
            "workflow_exporter_invalid_records",
            "Run records skipped because they did not match the API's documented shape.",
            ["source", "reason"],
            registry=registry,
        )
        self.unknown_status = Counter(
            "workflow_exporter_unknown_status",
            "Runs whose native status the status mapping does not know (mapped to `unknown`).",
            ["source", "native_status"],
            registry=registry,
        )
        self.label_values_dropped = Counter(
            "workflow_exporter_label_values_dropped",
            "Label values folded into `other` because a cardinality bound was reached.",
            ["source", "label"],
            registry=registry,
        )
        self.runs_vanished = Counter(
            "workflow_exporter_runs_vanished",
            "Active runs the API no longer knows (deleted before they finished); not counted.",
            ["source"],
            registry=registry,
        )
        self.scan_inconsistencies = Counter(
            "workflow_exporter_scan_inconsistencies",
            "Scans whose answers did not add up (fewer runs than the API's own total, a page "
            "repeated, a change its cursor missed, a total not to be believed, a cursor going "
            "round): counts may be off until the cause is fixed.",
            ["source", "reason"],
            registry=registry,
        )
        self.state_write_errors = Counter(
            "workflow_exporter_state_write_errors",
            "State writes of the source that failed (disk full, read-only, I/O error): nothing "
            "of them was kept, and the source counts nothing until a write goes through.",
            ["source"],
            registry=registry,
        )
        self.runs_found_late = Counter(
            "workflow_exporter_runs_found_late",
            "Runs the periodic audit walk found that the fast incremental scan had missed, "
            "counted then; 0 in a world where every guess about the API holds.",
            ["source", "reason"],
            registry=registry,
        )
        self.details_unavailable = Counter(
            "workflow_exporter_failure_details_unavailable",
            "Failed runs counted with code `unspecified` because their failure detail could not "
            "be had (the single-run endpoint is absent or the run was gone).",
            ["source"],
            registry=registry,
        )
        self.audits = Counter(
            "workflow_exporter_audits",
            "Audit walks that read the whole list down to the retention window, by result.",
            ["source", "result"],
            registry=registry,
        )
        self.audit_last_completed = Gauge(
            "workflow_exporter_audit_last_completed_timestamp_seconds",
            "When the source's last audit walk completed (Unix seconds).",
            ["source"],
            registry=registry,
        )
        self.source_info = Gauge(
            "workflow_exporter_source_info",
            "What the source's API turned out to do where its docs are silent; always 1.",
            ["source", "provider", *SOURCE_FACTS],
            registry=registry,
        )
        build_info = Gauge(
            "workflow_exporter_build_info",
            "Build information; the value is always 1.",
            ["version"],
            registry=registry,
        )
        build_info.labels(version=__version__).set(1)
        self._shard_info = Gauge(
            "workflow_exporter_shard_info",
            "This replica's shard (index of count); the value is always 1.",
            ["index", "count"],
            registry=registry,
        )

    def shard(self, index: int, count: int) -> None:
        self._shard_info.clear()
        self._shard_info.labels(index=str(index), count=str(count)).set(1)

    def for_source(self, source: str, provider: str) -> SourceInstruments:
        return SourceInstruments(self, source, provider)

    def remove_source(self, source: str, provider: str) -> None:
        """Drops every series of a source that was removed from the configuration."""
        for metric in (
            self.source_up,
            self.last_success,
            self.collection_duration,
            self.collections,
            self.collection_overruns,
            self.api_requests,
            self.api_duration,
            self.api_retries,
            self.runs_ingested,
            self.invalid_records,
            self.unknown_status,
            self.label_values_dropped,
            self.runs_vanished,
            self.scan_inconsistencies,
            self.state_write_errors,
            self.source_info,
            self.runs_found_late,
            self.details_unavailable,
            self.audits,
            self.audit_last_completed,
        ):
            names = metric._labelnames  # the public API offers no listing of children
            children: set[tuple[str, ...]] = set()
            for family in metric.collect():
                for sample in family.samples:
                    if sample.labels.get("source") == source:
                        children.add(tuple(sample.labels[name] for name in names))
            for labels in children:
                with contextlib.suppress(KeyError):
                    metric.remove(*labels)


class SourceInstruments:
    """One source's view of the self-metrics: an `ApiObserver` for its HTTP client and the
    counters behind its provider's events. Pre-creates the series alerts rely on."""

    def __init__(self, metrics: SelfMetrics, source: str, provider: str) -> None:
        self._m = metrics
        self.source = source
        self.provider = provider
        self._native_seen: set[str] = set()
        self._lock = threading.Lock()
        # For diagnostics (`check`), not exported.
        self.rate_limit_headers: dict[str, str] = {}
        self.first_request: tuple[str, str, float] | None = None  # endpoint, code, seconds
        # The first answer that says whether the key was taken (2xx, 401, 403): a first request
        # refused for another reason (a probe of page 0 answered 400) says nothing about it.
        self.first_key_answer: tuple[str, str, float] | None = None
        metrics.source_up.labels(source, provider)
        for result in ("success", "error"):
            metrics.collections.labels(source, result)
        metrics.collection_overruns.labels(source)
        for reason in ("rate_limited", "server_error", "transport", "bad_payload"):
            metrics.api_retries.labels(source, reason)
        metrics.runs_ingested.labels(source)
        metrics.runs_vanished.labels(source)
        for reason in SCAN_INCONSISTENCIES:
            metrics.scan_inconsistencies.labels(source, reason)
        metrics.state_write_errors.labels(source)
        for reason in FOUND_LATE_REASONS:
            metrics.runs_found_late.labels(source, reason)
        metrics.details_unavailable.labels(source)
        for result in AUDIT_RESULTS:
            metrics.audits.labels(source, result)
        self._facts: tuple[str, ...] | None = None
        # Requests made so far and when the API last asked to slow down: what the audit walk
        # spends and when it steps aside (read in the source's own thread).
        self.requests_made = 0
        self.rate_limited_at: float | None = None

    # ApiObserver
    def request(self, endpoint: str, code: str, seconds: float) -> None:
        if self.first_request is None:
            self.first_request = (endpoint, code, seconds)
        if self.first_key_answer is None and (code.startswith("2") or code in ("401", "403")):
            self.first_key_answer = (endpoint, code, seconds)
        self.requests_made += 1
        self._m.api_requests.labels(self.source, endpoint, code).inc()
        self._m.api_duration.labels(self.source, endpoint).observe(seconds)

    def retry(self, reason: str) -> None:
        if reason == "rate_limited":
            self.rate_limited_at = time.monotonic()
        self._m.api_retries.labels(self.source, reason).inc()

    def response_headers(self, endpoint: str, headers: Mapping[str, str]) -> None:
        """Remembers rate-limit headers the API sends, for `check`'s diagnostics."""
        for name, value in headers.items():
            lowered = name.lower()
            if "ratelimit" in lowered or "rate-limit" in lowered or lowered == "retry-after":
                self.rate_limit_headers[lowered] = value[:100]

    # Counters behind provider events
    def invalid_record(self, reason: str, count: int = 1) -> None:
        self._m.invalid_records.labels(self.source, reason).inc(count)

    def unknown_status(self, native_status: str) -> None:
        with self._lock:
            if native_status not in self._native_seen:
                if len(self._native_seen) >= MAX_NATIVE_STATUS_VALUES:
                    native_status = "other"
                self._native_seen.add(native_status)
        self._m.unknown_status.labels(self.source, native_status).inc()

    def scan_inconsistency(self, reason: str) -> None:
        self._m.scan_inconsistencies.labels(self.source, reason).inc()

    def facts(self, facts: Mapping[str, str]) -> None:
        """One `source_info` series, with what is known now (the old one goes)."""
        values = tuple(facts.get(name, "unknown")[:40] for name in SOURCE_FACTS)
        with self._lock:
            if values == self._facts:
                return
            if self._facts is not None:
                with contextlib.suppress(KeyError):
                    self._m.source_info.remove(self.source, self.provider, *self._facts)
            self._facts = values
        self._m.source_info.labels(self.source, self.provider, *values).set(1)

    def labels_dropped(self, label: str, count: int) -> None:
        self._m.label_values_dropped.labels(self.source, label).inc(count)

    def ingested(self, count: int) -> None:
        self._m.runs_ingested.labels(self.source).inc(count)

    def found_late(self, reason: str, count: int) -> None:
        self._m.runs_found_late.labels(self.source, reason).inc(count)

    def details_unavailable(self, count: int) -> None:
        self._m.details_unavailable.labels(self.source).inc(count)

    def audit(self, result: str, at: float) -> None:
        self._m.audits.labels(self.source, result).inc()
        if result == "completed":
            self._m.audit_last_completed.labels(self.source).set(at)

    def vanished(self, count: int) -> None:
        self._m.runs_vanished.labels(self.source).inc(count)

    def state_write_refused(self) -> None:
        self._m.state_write_errors.labels(self.source).inc()

    def overrun(self) -> None:
        self._m.collection_overruns.labels(self.source).inc()

    def collection(self, ok: bool, seconds: float, finished_at: float) -> None:
        self._m.collection_duration.labels(self.source).observe(seconds)
        self._m.collections.labels(self.source, "success" if ok else "error").inc()
        self._m.source_up.labels(self.source, self.provider).set(1 if ok else 0)
        if ok:
            self._m.last_success.labels(self.source).set(finished_at)


class AlertInstruments:
    """The alerting agent's own metrics (exporter/alerting/delivery.py reports here)."""

    def __init__(self, registry: CollectorRegistry, queued: Callable[[], int]) -> None:
        self._sent = Counter(
            "workflow_exporter_alerts_sent_total",
            "Alerts Alertmanager accepted, by event (failed, stuck, review); each target counts.",
            ["event"],
            registry=registry,
        )
        self._failed = Counter(
            "workflow_exporter_alerts_failed_total",
            "Alerts Alertmanager did not take, by reason: `error` (unreachable) or the HTTP "
            "status, and they stay queued; `invalid` (refused on their own), and they are dropped.",
            ["reason"],
            registry=registry,
        )
        queue = Gauge(
            "workflow_exporter_alerts_queued",
            "Alert events waiting in the state file for an Alertmanager to take them.",
            registry=registry,
        )
        queue.set_function(lambda: float(queued()))
        for event in ("failed", "stuck", "review"):
            self._sent.labels(event)
        for reason in ("error", "invalid"):
            self._failed.labels(reason)
        self.registry = registry
        self._metrics = (self._sent, self._failed, queue)

    def sent(self, kind: str, count: int) -> None:
        self._sent.labels(kind).inc(count)

    def failed(self, reason: str, count: int) -> None:
        self._failed.labels(reason).inc(count)

    def unregister(self) -> None:
        for metric in self._metrics:
            self.registry.unregister(metric)
