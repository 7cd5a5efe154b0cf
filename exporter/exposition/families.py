"""How rows of label values become written metric families: counters and gauges written at once,
histogram series written once and kept until their buckets (or, in OpenMetrics, their exemplars)
change. Each row's label set takes its source's static labels as it is built; its samples are
built only if something reads them (prometheus_client's writers, `get_sample_value`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prometheus_client.samples import Exemplar, Sample

from exporter.exposition.lines import Pairs, exemplar_suffix, series_line
from exporter.exposition.staticlabels import with_static
from exporter.exposition.written import Labels, WrittenFamily
from exporter.state.snapshot import Histogram

# Label values of one series (the source first), and its value.
Row = tuple[tuple[str, ...], float]
# The runs behind a histogram series' buckets: bucket index -> (run id, value, Unix time).
Exemplars = Mapping[int, tuple[str, float, float]]

# OpenMetrics allows 128 characters of exemplar labels in all.
_RUN_ID_CHARS = 100


def label_pairs(labelnames: tuple[str, ...], values: tuple[str, ...], by_source: Labels) -> Pairs:
    """A series' label set: its own labels, and its source's (`values[0]`) static ones."""
    own = tuple(zip(labelnames, values, strict=True))
    static = by_source.get(values[0])
    return with_static(own, static) if static else own


class WrittenHistogram:
    """The lines of one histogram series, the buckets they were written from, and its OpenMetrics
    lines for the exemplars last asked for."""

    __slots__ = ("_openmetrics", "counts", "sum", "text")

    def __init__(self, counts: list[int], total: float, text: str) -> None:
        self.counts = counts
        self.sum = total
        self.text = text  # a line per bucket in order, then _count and _sum
        # The exemplars last written and the lines with them, in one reference: two renderings
        # at once may each write their own, but never pair one's exemplars with the other's text.
        self._openmetrics: tuple[Exemplars, str] = ({}, text)

    @classmethod
    def of(cls, name: str, pairs: Pairs, hist: Histogram) -> WrittenHistogram:
        # The order and values HistogramMetricFamily gives: cumulative buckets, _count, _sum.
        bucket = name + "_bucket"
        lines = [series_line(bucket, (*pairs, ("le", le)), count) for le, count in _buckets(hist)]
        lines.append(series_line(name + "_count", pairs, hist.count))
        lines.append(series_line(name + "_sum", pairs, hist.sum))
        return cls(list(hist.counts), hist.sum, "".join(lines))

    def same(self, hist: Histogram) -> bool:
        return self.counts == hist.counts and self.sum == hist.sum

    def openmetrics(self, exemplars: Exemplars) -> str:
        """The lines with each bucket's exemplar, if any, after its value. Written again only
        when the exemplars change (a run of the series finished): the lines are split then
        rather than kept apart, which would hold every histogram's text twice."""
        written, text = self._openmetrics
        if exemplars != written:
            # Split at newlines alone: a label value may hold a carriage return or U+2028.
            lines = self.text.split("\n")[:-1]
            buckets = len(lines) - 2
            for index, recent in exemplars.items():
                if 0 <= index < buckets:
                    lines[index] += _exemplar_suffix(recent)
            text = "\n".join(lines) + "\n"
            self._openmetrics = (dict(exemplars), text)
        return text


def _exemplar_suffix(recent: tuple[str, float, float]) -> str:
    run_id, value, at = recent
    return exemplar_suffix({"run_id": run_id[:_RUN_ID_CHARS]}, value, at or None)


def simple_family(
    kind: str,
    name: str,
    documentation: str,
    labelnames: tuple[str, ...],
    rows: list[Row],
    by_source: Labels,
) -> WrittenFamily:
    """A counter or gauge family: its lines written now, the same in both formats."""
    sample_name = name + "_total" if kind == "counter" else name
    text = "".join(
        series_line(sample_name, label_pairs(labelnames, values, by_source), value)
        for values, value in rows
    )

    def samples() -> list[Sample]:
        return [
            Sample(sample_name, dict(label_pairs(labelnames, values, by_source)), float(value))
            for values, value in rows
        ]

    return WrittenFamily(name, documentation, kind, samples, classic_lines=text)


def histogram_samples(
    name: str, labels: dict[str, str], hist: Histogram, exemplars: Exemplars
) -> list[Sample]:
    """What `HistogramMetricFamily.add_metric` adds for one series, a bucket with a recent run
    carrying it as an exemplar `{run_id="..."}`."""
    bucket_name = name + "_bucket"
    out = [
        Sample(bucket_name, {**labels, "le": le}, count, None, _exemplar(exemplars.get(index)))
        for index, (le, count) in enumerate(_buckets(hist))
    ]
    out.append(Sample(name + "_count", labels, hist.count, None, None))
    out.append(Sample(name + "_sum", dict(labels), hist.sum, None, None))
    return out


def _exemplar(recent: tuple[str, float, float] | None) -> Exemplar | None:
    if recent is None:
        return None
    run_id, value, at = recent
    return Exemplar({"run_id": run_id[:_RUN_ID_CHARS]}, value, at or None)


def _buckets(hist: Histogram) -> Sequence[tuple[str, float]]:
    cumulative = 0
    out: list[tuple[str, float]] = []
    for upper, count in zip([*hist.bounds, float("inf")], hist.counts, strict=True):
        cumulative += count
        out.append(("+Inf" if upper == float("inf") else _le(upper), cumulative))
    return out


def _le(value: float) -> str:
    return repr(float(value))
