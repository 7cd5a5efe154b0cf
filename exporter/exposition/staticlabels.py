"""A source's static `labels` on every series that carries its `source` label, added in one place.

prometheus_client's metrics have fixed label names, and each source may add other names, so the
labels are not part of any metric: a wrapper around the registry adds them to the samples as a
scrape collects them. Every path out of the exporter goes through it: the classic text format,
OpenMetrics (exemplars and timestamps ride along on the samples), and `name[]` restricted scrapes
(filtered here from the labelled families).
Static labels add no series (each series keeps its identity, only longer), so the series budget is
untouched; they cost bytes per sample line.

A family with no sample of a labelled source passes through as it is; one with such samples is
copied with the labels added: a pre-written family (`exposition.TextFamily`) has them written into
its lines, so the classic format still builds no sample objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample

from exporter.exposition.formats import TextFamily

Labels = Mapping[str, Mapping[str, str]]


class StaticLabels:
    """Each configured source's static labels; replaced whole on reload (one reference swap, so a
    scrape sees the old mapping or the new one, never half of each)."""

    def __init__(self, by_source: Labels | None = None) -> None:
        self._by_source: Labels = {}
        self.set(by_source or {})

    def set(self, by_source: Labels) -> None:
        self._by_source = {source: dict(labels) for source, labels in by_source.items() if labels}

    def current(self) -> Labels:
        return self._by_source

    def of(self, source: str) -> Mapping[str, str]:
        return self._by_source.get(source, {})


class LabelledRegistry(Collector):
    """What /metrics renders: the registry's families with the static labels added."""

    def __init__(self, registry: CollectorRegistry, labels: StaticLabels) -> None:
        self._registry = registry
        self._labels = labels

    def collect(self) -> Iterator[Metric]:
        return labelled(self._registry.collect(), self._labels.current())

    def restricted_registry(self, names: Iterable[str]) -> Collector:
        return _Restricted(self, frozenset(names))


class _Restricted(Collector):
    """The samples named by a scrape's `name[]`. Filtered from a whole collection rather than
    with client_python's `restricted_registry`, which finds a collector by the names it
    describes: the store-backed collector describes none (so that registering it reads no
    state), and would never be found."""

    def __init__(self, whole: Collector, names: frozenset[str]) -> None:
        self._whole = whole
        self._names = names

    def collect(self) -> Iterator[Metric]:
        for metric in self._whole.collect():
            samples = [s for s in metric.samples if s.name in self._names]
            if samples:
                kept = Metric(metric.name, metric.documentation, metric.type, metric.unit)
                kept.samples = samples
                yield kept


def labelled(metrics: Iterable[Metric], by_source: Labels) -> Iterator[Metric]:
    """The families with each sample of a labelled source carrying that source's labels too."""
    if not by_source:
        yield from metrics
        return
    needles = _needles(by_source)
    for metric in metrics:
        if isinstance(metric, TextFamily):
            yield _labelled_text_family(metric, by_source, needles)
            continue
        if not any(sample.labels.get("source") in by_source for sample in metric.samples):
            yield metric
            continue
        copy = Metric(metric.name, metric.documentation, metric.type, metric.unit)
        copy.samples = _labelled_samples(metric.samples, by_source)
        yield copy


def _labelled_samples(samples: Iterable[Sample], by_source: Labels) -> list[Sample]:
    out = []
    for sample in samples:
        extra = by_source.get(sample.labels.get("source", ""))
        # The sample's own labels win: a static name never replaces a real dimension (settings
        # refuse the exporter's own names; a third-party collector's might clash).
        out.append(sample._replace(labels={**extra, **sample.labels}) if extra else sample)
    return out


def _needles(by_source: Labels) -> list[tuple[tuple[str, ...], str]]:
    """Per labelled source: the ways its `source` label can appear in a written sample line
    (first or later in the sorted label set, last or not), and the text to add."""
    out = []
    for source, labels in by_source.items():
        pair = f'source="{_escape(source)}"'
        needles = tuple(f"{a}{pair}{b}" for a in "{," for b in ",}")
        added = "".join(f',{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        out.append((needles, added))
    return out


def _labelled_text_family(
    family: TextFamily, by_source: Labels, needles: list[tuple[tuple[str, ...], str]]
) -> Metric:
    """A pre-written family with the labels written into its lines, without building samples:
    the fast writer's point. A label value is escaped (`"` as `\\"`), so `,source="x"` can only
    be the label itself, and the line's last `}` closes its label set (the value is a number)."""
    lines = family.text.splitlines(keepends=True)
    changed = False
    for index, line in enumerate(lines):
        for candidates, added in needles:
            if any(needle in line for needle in candidates):
                close = line.rindex("}")
                lines[index] = line[:close] + added + line[close:]
                changed = True
                break
    if not changed:
        return family
    return TextFamily(
        family.name,
        family.documentation,
        family.type,
        "".join(lines),
        lambda: _labelled_samples(family.samples, by_source),
    )


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
