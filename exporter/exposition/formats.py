"""The Prometheus text format, byte for byte as prometheus_client writes it, but faster.

prometheus_client validates and escapes every label name of every sample; with tens of thousands
of samples that is most of a scrape's time. The label names and values of this exporter repeat
endlessly (source, provider, workflow, status, le), so escaping each distinct string once and
remembering it gives the same bytes in a fraction of the time. A test compares the two outputs.

A collector can go further and yield a `TextFamily`: its sample lines come already written (with
`series_line`), so a scrape of the classic text format creates no `Sample` objects at all; its
`samples` are built only when something else reads them (OpenMetrics, `get_sample_value`).

Which format and coding a scrape gets: `encoder_for` and `gzip_wanted`. client_python's
`choose_encoder` would echo the version a client asks for in the content type, whatever it wrote,
and its `gzip_accepted` reads no quality.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

_ESCAPING = openmetrics.UNDERSCORES
_OM_SUFFIXES = ("_created", "_gsum", "_gcount")
_TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}


@lru_cache(maxsize=8192)
def _metric_name(name: str) -> str:
    return openmetrics.escape_metric_name(name, _ESCAPING)


@lru_cache(maxsize=8192)
def _label_name(name: str) -> str:
    return openmetrics.escape_label_name(name, _ESCAPING)


@lru_cache(maxsize=65536)
def _label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


@lru_cache(maxsize=65536)
def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{_label_name(k)}="{_label_value(v)}"' for k, v in sorted(pairs)) + "}"


@lru_cache(maxsize=65536)
def _value(value: float) -> str:
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


def series_line(name: str, pairs: tuple[tuple[str, str], ...], value: float) -> str:
    """One sample line without a timestamp, exactly as the writer below writes it."""
    return f"{_metric_name(name)}{_labels(pairs)} {_value(float(value))}\n"


class TextFamily(Metric):
    """A metric family that brings its sample lines written, and its samples only on demand."""

    def __init__(
        self,
        name: str,
        documentation: str,
        typ: str,
        text: str,
        samples: Callable[[], Sequence[Sample]],
    ) -> None:
        self._build_samples = samples
        self._samples: list[Sample] | None = None
        super().__init__(name, documentation, typ)
        # The sample lines of the classic text format, in the order `samples` has them.
        self.text = text

    @property
    def samples(self) -> list[Sample]:
        if self._samples is None:
            self._samples = list(self._build_samples())
        return self._samples

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        # Metric.__init__ sets an empty list: that means "not built yet" here.
        self._samples = value or None


def _sample_line(sample: Sample) -> str:
    timestamp = ""
    if sample.timestamp is not None:
        timestamp = f" {int(float(sample.timestamp) * 1000):d}"
    labels = _labels(tuple(sample.labels.items()))
    return f"{_metric_name(sample.name)}{labels} {_value(float(sample.value))}{timestamp}\n"


def generate_text(registry: Collector) -> bytes:
    """What `prometheus_client.generate_latest(registry)` returns, with memoised escaping."""
    output: list[str] = []
    for metric in registry.collect():
        name, kind = metric.name, metric.type
        if kind == "counter":
            name += "_total"
        elif kind == "info":
            name += "_info"
        kind = _TYPES.get(kind, kind)
        help_text = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        output.append(f"# HELP {_metric_name(name)} {help_text}\n")
        output.append(f"# TYPE {_metric_name(name)} {kind}\n")
        if isinstance(metric, TextFamily):
            output.append(metric.text)
            continue
        extra: dict[str, list[str]] = {}
        for sample in metric.samples:
            for suffix in _OM_SUFFIXES:
                if sample.name == metric.name + suffix:
                    extra.setdefault(suffix, []).append(_sample_line(sample))
                    break
            else:
                output.append(_sample_line(sample))
        for suffix, lines in sorted(extra.items()):
            output.append(f"# HELP {_metric_name(metric.name + suffix)} {help_text}\n")
            output.append(f"# TYPE {_metric_name(metric.name + suffix)} gauge\n")
            output.extend(lines)
    # Every text reaching a label is cleaned where it enters (providers/sanitize.py); should one
    # slip through, a lone surrogate becomes `?` here instead of failing the whole scrape.
    return "".join(output).encode("utf-8", "replace")


# The two formats written, each named by the version actually written: a client asking for
# another version (OpenMetrics 2.0.0, the text format 1.0.0) gets one of these, labelled as it is.
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
CLASSIC_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def encoder_for(accept: str) -> tuple[Callable[[Collector], bytes], str]:
    """The writer and content type for an `Accept` header: OpenMetrics 1.0.0 where the client
    accepts `application/openmetrics-text` (in whatever version it names) at least as much as
    `text/plain`, the classic text format 0.0.4 (the fast writer) otherwise."""
    qualities = {"application/openmetrics-text": 0.0, "text/plain": 0.0}
    for entry in accept.split(","):
        media_type, *params = (part.strip() for part in entry.split(";"))
        media_type = media_type.lower()
        if media_type in qualities:
            qualities[media_type] = max(qualities[media_type], _quality(params))
    openmetrics_q = qualities["application/openmetrics-text"]
    if openmetrics_q > 0 and openmetrics_q >= qualities["text/plain"]:
        return openmetrics.generate_latest, OPENMETRICS_CONTENT_TYPE
    return generate_text, CLASSIC_CONTENT_TYPE


def gzip_wanted(accept_encoding: str) -> bool:
    """Whether the client accepts gzip. client_python's `gzip_accepted` matches the coding's name
    the same way but reads no quality, so it would send gzip to `gzip;q=0`, which refuses it
    (RFC 9110, section 12.5.3). `*` is not taken as gzip: identity is always acceptable."""
    for entry in accept_encoding.split(","):
        coding, *params = (part.strip() for part in entry.split(";"))
        if coding.lower() == "gzip":
            return _quality(params) > 0
    return False


def _quality(params: Sequence[str]) -> float:
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                return float(value.strip())
            except ValueError:
                return 1.0  # malformed: as if absent
    return 1.0
