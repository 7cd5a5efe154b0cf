"""The webhook self-metrics.

`workflow_exporter_webhooks_received_total` is rendered at scrape time for the sources that
take webhooks now: every result at zero from the start (an alert's `increase()` sees the first
refusal), and a source removed by a reload disappears with it. With shards forwarding to one
another, every replica renders every such source: any may receive its events, and forwards them
(`workflow_exporter_webhooks_forwarded_total`, by what the owner answered).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporter.webhooks.routing import Forwarded
from exporter.webhooks.verify import Result

RECEIVED = "workflow_exporter_webhooks_received"
FORWARDED = "workflow_exporter_webhooks_forwarded"
QUEUE_DEPTH = "workflow_exporter_webhook_queue_depth"
LATENCY = "workflow_exporter_webhook_hint_latency_seconds"
# Results only a replica forwarding between shards can count.
_FORWARDING_RESULTS = (Result.FORWARDED, Result.MISROUTED)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class WebhookMetrics(Collector):
    def __init__(
        self,
        registry: CollectorRegistry,
        sources: Callable[[], Iterable[str]],
        depth: Callable[[str], int],
        *,
        forwarding: bool = False,
    ) -> None:
        self._sources = sources
        self._depth = depth
        # The forwarding families and results are rendered only where events may be forwarded
        # (shards with peers): elsewhere they would be series that never move.
        self._forwarding = forwarding
        self._counts: Counter[tuple[str, str]] = Counter()
        self._forwarded: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        # Collected here rather than registered on its own, so that a source a reload removed
        # loses its histogram with its other series.
        self.latency = Histogram(
            LATENCY,
            "Seconds from a webhook hint's arrival to the commit of its run's lookup.",
            ["source"],
            buckets=LATENCY_BUCKETS,
            registry=None,
        )
        self._observed: set[str] = set()
        registry.register(self)

    def received(self, source: str, result: Result) -> None:
        with self._lock:
            self._counts[(source, result.value)] += 1

    def forwarded(self, source: str, result: Forwarded) -> None:
        with self._lock:
            self._forwarded[(source, result.value)] += 1

    def observe_latency(self, source: str, seconds: float) -> None:
        with self._lock:
            self._observed.add(source)
            self.latency.labels(source).observe(seconds)

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(RECEIVED, "", labels=["source", "result"])
        yield CounterMetricFamily(FORWARDED, "", labels=["source", "result"])
        yield GaugeMetricFamily(QUEUE_DEPTH, "", labels=["source"])
        yield from self.latency.describe()

    def collect(self) -> Iterator[Metric]:
        received = CounterMetricFamily(
            RECEIVED,
            "Webhook requests received, by what became of them.",
            labels=["source", "result"],
        )
        forwarded = CounterMetricFamily(
            FORWARDED,
            "Verified webhook events sent on to the replica owning their source, by its answer.",
            labels=["source", "result"],
        )
        depth = GaugeMetricFamily(
            QUEUE_DEPTH, "Webhook hints waiting for their lookup.", labels=["source"]
        )
        sources = sorted(self._sources())
        with self._lock:
            counts = dict(self._counts)
            forwards = dict(self._forwarded)
            for gone in self._observed - set(sources):
                self.latency.remove(gone)
                self._observed.discard(gone)
        results = [r for r in Result if self._forwarding or r not in _FORWARDING_RESULTS]
        for source in sources:
            for result in results:
                received.add_metric([source, result.value], counts.get((source, result.value), 0))
            for outcome in Forwarded:
                key = (source, outcome.value)
                forwarded.add_metric([source, outcome.value], forwards.get(key, 0))
            depth.add_metric([source], self._depth(source))
        yield received
        if self._forwarding:
            yield forwarded
        yield depth
        yield from self.latency.collect()
