"""A metric family with its sample lines written, for both exposition formats at once.

Every family /metrics serves becomes a `WrittenFamily` once per rendering: the domain families
are built as one (`exposition.families`), with each source's static labels already in their
label sets; any other collector's family (the self-metrics, the process and platform families,
a plugin's) is turned into one by `written`, its static labels added to its label set before it
is written. The writers in `exposition.formats` then only put headers around the lines: neither
format builds a `Sample` for the domain families, and neither edits written text.

A `WrittenFamily` is still a prometheus_client `Metric`, so a registry holding one works with
prometheus_client's own writers and `get_sample_value`: its `samples` are built from the same
data when something reads them, and never on a scrape.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from exporter.exposition.lines import exemplar_suffix, label_set, metric_name, number

# Samples the classic text format cannot hold in their family: it writes each set of them as a
# gauge family of its own after the family (prometheus_client's rule), OpenMetrics in place.
OPENMETRICS_ONLY_SUFFIXES = ("_created", "_gsum", "_gcount")

Labels = Mapping[str, Mapping[str, str]]


class WrittenFamily(Metric):
    """A family's header facts and its sample lines: `classic_lines` for the classic text format,
    `openmetrics_lines` for OpenMetrics (the same text unless some sample carries an exemplar, a
    timestamp or an OpenMetrics-only suffix), and `classic_trailing`: per OpenMetrics-only suffix,
    the classic lines written after the family."""

    def __init__(
        self,
        name: str,
        documentation: str,
        typ: str,
        samples: Callable[[], Sequence[Sample]],
        *,
        classic_lines: str,
        openmetrics_lines: str | None = None,
        classic_trailing: tuple[tuple[str, str], ...] = (),
        unit: str = "",
    ) -> None:
        self._build_samples = samples
        self._samples: list[Sample] | None = None
        super().__init__(name, documentation, typ, unit)
        self.classic_lines = classic_lines
        self.openmetrics_lines = classic_lines if openmetrics_lines is None else openmetrics_lines
        self.classic_trailing = classic_trailing

    @property
    def samples(self) -> list[Sample]:
        if self._samples is None:
            self._samples = list(self._build_samples())
        return self._samples

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        # Metric.__init__ sets an empty list: that means "not built yet" here.
        self._samples = value or None

    def restricted(self, names: Collection[str]) -> WrittenFamily | None:
        """The family with only the lines of the sample names given (a scrape's `name[]`), or
        None when it has none of them."""
        written = {metric_name(name) for name in names}
        classic = _lines_named(self.classic_lines, written)
        trailing = tuple(
            (suffix, kept)
            for suffix, lines in self.classic_trailing
            if (kept := _lines_named(lines, written))
        )
        if not classic and not trailing:
            return None
        kept_names = frozenset(names)
        return WrittenFamily(
            self.name,
            self.documentation,
            self.type,
            lambda: [s for s in self.samples if s.name in kept_names],
            classic_lines=classic,
            openmetrics_lines=_lines_named(self.openmetrics_lines, written),
            classic_trailing=trailing,
            unit=self.unit,
        )


def _lines_named(lines: str, names: Collection[str]) -> str:
    # A line starts with its sample's name, ended by its label set's `{` or by the space before
    # the value; a label value may hold a space, but only after the `{`. Lines end at newlines
    # alone (a label value may hold a carriage return or U+2028; a newline is escaped).
    return "".join(
        line + "\n"
        for line in lines.split("\n")[:-1]
        if line.partition(" ")[0].partition("{")[0] in names
    )


def written(metric: Metric, by_source: Labels | None = None) -> WrittenFamily:
    """Any collector's family, written for both formats, each sample of a source in `by_source`
    carrying that source's static labels (its own labels win a clash of names)."""
    samples = metric.samples
    if by_source:
        samples = [_labelled(sample, by_source) for sample in samples]
    classic: list[str] = []
    openmetrics: list[str] = []
    trailing: dict[str, list[str]] = {}
    for sample in samples:
        if sample.native_histogram is not None:
            continue  # neither text format of these versions can say it (client_python skips it)
        head = (
            f"{metric_name(sample.name)}{label_set(tuple(sample.labels.items()))} "
            f"{number(float(sample.value))}"
        )
        stamp = sample.timestamp
        classic_line = head if stamp is None else f"{head} {int(float(stamp) * 1000):d}"
        openmetrics.append(
            (head if stamp is None else f"{head} {stamp}") + _exemplar(metric, sample) + "\n"
        )
        suffix = _openmetrics_only(metric.name, sample.name)
        (trailing.setdefault(suffix, []) if suffix else classic).append(classic_line + "\n")
    return WrittenFamily(
        metric.name,
        metric.documentation,
        metric.type,
        lambda: samples,
        classic_lines="".join(classic),
        openmetrics_lines="".join(openmetrics),
        classic_trailing=tuple(
            (suffix, "".join(lines)) for suffix, lines in sorted(trailing.items())
        ),
        unit=metric.unit,
    )


def _labelled(sample: Sample, by_source: Labels) -> Sample:
    extra = by_source.get(sample.labels.get("source", ""))
    return sample._replace(labels={**extra, **sample.labels}) if extra else sample


def _openmetrics_only(family: str, sample: str) -> str | None:
    for suffix in OPENMETRICS_ONLY_SUFFIXES:
        if sample == family + suffix:
            return suffix
    return None


def _exemplar(metric: Metric, sample: Sample) -> str:
    exemplar = sample.exemplar
    if not exemplar:
        return ""
    # OpenMetrics 1.0 allows exemplars on counters' `_total` and histogram buckets only; a
    # family breaking the rule fails the scrape loudly, as prometheus_client's writer does.
    kind, name = metric.type, sample.name
    if not (
        (kind == "counter" and name.endswith("_total"))
        or (kind in ("histogram", "gaugehistogram") and name.endswith("_bucket"))
    ):
        raise ValueError(
            f"Metric {metric.name} has exemplars, but is not a histogram bucket or counter"
        )
    return exemplar_suffix(exemplar.labels, exemplar.value, exemplar.timestamp)
