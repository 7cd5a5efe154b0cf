"""How rows of label values become metric families: counters and gauges written as text at once,
histogram samples built one label dict per series with a recent run as the exemplar, and the text
of a histogram series kept until its buckets change."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.samples import Exemplar, Sample

from exporter.exposition.formats import TextFamily, series_line
from exporter.state.snapshot import Histogram

# Label values of one series, and its value.
Row = tuple[tuple[str, ...], float]


class WrittenHistogram:
    """The text lines of one histogram series, and the buckets they were written from."""

    __slots__ = ("counts", "sum", "text")

    def __init__(self, counts: list[int], total: float, text: str) -> None:
        self.counts = counts
        self.sum = total
        self.text = text

    @classmethod
    def of(cls, name: str, pairs: tuple[tuple[str, str], ...], hist: Histogram) -> WrittenHistogram:
        # The order and values HistogramMetricFamily gives: cumulative buckets, _count, _sum.
        bucket = name + "_bucket"
        lines = [series_line(bucket, (*pairs, ("le", le)), count) for le, count in _buckets(hist)]
        lines.append(series_line(name + "_count", pairs, hist.count))
        lines.append(series_line(name + "_sum", pairs, hist.sum))
        return cls(list(hist.counts), hist.sum, "".join(lines))

    def same(self, hist: Histogram) -> bool:
        return self.counts == hist.counts and self.sum == hist.sum


def simple_family(
    kind: str, name: str, documentation: str, labelnames: tuple[str, ...], rows: list[Row]
) -> TextFamily:
    """A counter or gauge family: its text written now, its samples only if asked for."""
    sample_name = name + "_total" if kind == "counter" else name
    text = "".join(
        series_line(sample_name, tuple(zip(labelnames, values, strict=True)), value)
        for values, value in rows
    )

    def samples() -> list[Sample]:
        family: CounterMetricFamily | GaugeMetricFamily
        if kind == "counter":
            family = CounterMetricFamily(name, documentation, labels=labelnames)
        else:
            family = GaugeMetricFamily(name, documentation, labels=labelnames)
        for values, value in rows:
            family.add_metric(list(values), value)
        return family.samples

    return TextFamily(name, documentation, kind, text, samples)


def add_histogram(
    family: HistogramMetricFamily,
    values: list[str],
    hist: Histogram,
    exemplars: Mapping[int, tuple[str, float, float]] | None = None,
) -> None:
    """What `HistogramMetricFamily.add_metric` adds, built with one label dict per series instead
    of one per bucket: histograms are most of a large scrape. A bucket with a recent run carries
    it as an exemplar `{run_id="..."}`."""
    labels = dict(zip(family._labelnames, values, strict=True))
    bucket_name = family.name + "_bucket"
    recent = exemplars or {}
    family.samples.extend(
        Sample(bucket_name, {**labels, "le": le}, count, None, _exemplar(recent.get(index)))
        for index, (le, count) in enumerate(_buckets(hist))
    )
    family.samples.append(Sample(family.name + "_count", labels, hist.count, None, None))
    family.samples.append(Sample(family.name + "_sum", dict(labels), hist.sum, None, None))


def _exemplar(recent: tuple[str, float, float] | None) -> Exemplar | None:
    if recent is None:
        return None
    run_id, value, at = recent
    # OpenMetrics allows 128 characters of exemplar labels in all.
    return Exemplar({"run_id": run_id[:100]}, value, at or None)


def _buckets(hist: Histogram) -> Sequence[tuple[str, float]]:
    cumulative = 0
    out: list[tuple[str, float]] = []
    for upper, count in zip([*hist.bounds, float("inf")], hist.counts, strict=True):
        cumulative += count
        out.append(("+Inf" if upper == float("inf") else _le(upper), cumulative))
    return out


def _le(value: float) -> str:
    return repr(float(value))
