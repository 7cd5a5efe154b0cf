"""A source's static `labels` on every series that carries its `source` label.

prometheus_client's metrics have fixed label names, and each source may add other names, so the
labels are not part of any metric: they join a series' label set when its family is written.
The domain families are built with them (`exposition.metrics` reads `StaticLabels.current()`
once per rendering); every other family of the registry (the self-metrics, a plugin's) has them
added by `LabelledRegistry` as it is written (`exposition.written.written`). Either way the label
set is built, sorted and escaped once, so both formats, exemplars and `name[]` scrapes carry the
same labels, and no written line is ever edited.

Static labels add no series (each series keeps its identity, only longer), so the series budget is
untouched; they cost bytes per sample line.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.registry import Collector

from exporter.exposition.lines import Pairs
from exporter.exposition.written import Labels, WrittenFamily, written


class StaticLabels:
    """Each configured source's static labels; replaced whole on reload (one reference swap, so a
    family is written with the old mapping or the new one, never half of each; the reload moves
    the generation, so the next rendering has the new one throughout)."""

    def __init__(self, by_source: Labels | None = None) -> None:
        self._by_source: Labels = {}
        self.set(by_source or {})

    def set(self, by_source: Labels) -> None:
        self._by_source = {source: dict(labels) for source, labels in by_source.items() if labels}

    def current(self) -> Labels:
        return self._by_source

    def of(self, source: str) -> Mapping[str, str]:
        return self._by_source.get(source, {})


def with_static(own: Pairs, static: Mapping[str, str]) -> Pairs:
    """A series' own label pairs and its source's static ones. The own labels win: a static name
    never replaces a real dimension (settings refuse the exporter's own names; a third-party
    collector's might clash)."""
    names = {name for name, _ in own}
    return own + tuple((name, value) for name, value in static.items() if name not in names)


class LabelledRegistry(Collector):
    """What /metrics renders: the registry's families, written, with the static labels in them.
    A family the registry yields written (the domain families) was built with them already."""

    def __init__(self, registry: Collector, labels: StaticLabels) -> None:
        self._registry = registry
        self._labels = labels

    def collect(self) -> Iterator[WrittenFamily]:
        by_source = self._labels.current()
        for metric in self._registry.collect():
            yield metric if isinstance(metric, WrittenFamily) else written(metric, by_source)
