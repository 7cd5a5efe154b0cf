"""The one writer of /metrics: the classic text format 0.0.4 and OpenMetrics 1.0.0, from the same
written families (`exposition.written`), byte for byte as prometheus_client writes them.

A rendering collects the families once (`collected`) and each format only puts its headers
around the lines already written: the classic text names a counter `<name>_total` in its HELP and
TYPE lines, an info family `<name>_info` as a gauge, and writes `_created` samples as gauges of
their own; OpenMetrics keeps the family's own name and type, adds its `UNIT`, exemplars and
`# EOF`. One difference from prometheus_client is deliberate: a metric name with a `:` keeps it
in OpenMetrics sample lines too (client_python writes it as `_` there but not in the family's
HELP and TYPE lines, so its samples are read as a family of their own, of no type).

Which format and coding a scrape gets: `format_for` and `gzip_wanted`. client_python's
`choose_encoder` would echo the version a client asks for in the content type, whatever it wrote,
and its `gzip_accepted` reads no quality.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.metrics_core import Metric

from exporter.exposition.lines import help_classic, help_openmetrics, metric_name
from exporter.exposition.written import WrittenFamily, written

__all__ = [
    "CLASSIC",
    "CLASSIC_CONTENT_TYPE",
    "OPENMETRICS",
    "OPENMETRICS_CONTENT_TYPE",
    "Families",
    "TextFormat",
    "WrittenFamily",
    "collected",
    "format_for",
    "generate_openmetrics",
    "generate_text",
    "gzip_wanted",
    "write_classic",
    "write_openmetrics",
]

_CLASSIC_TYPES = {
    "info": "gauge",
    "stateset": "gauge",
    "gaugehistogram": "histogram",
    "unknown": "untyped",
}
_CLASSIC_SUFFIXES = {"counter": "_total", "info": "_info"}


class Families(Protocol):
    """A registry, a collector, or anything else that yields metric families."""

    def collect(self) -> Iterable[Metric]: ...


def collected(source: Families) -> list[WrittenFamily]:
    """The families of a registry, written (those it yields written as they are)."""
    return [
        metric if isinstance(metric, WrittenFamily) else written(metric)
        for metric in source.collect()
    ]


def write_classic(families: Iterable[WrittenFamily]) -> bytes:
    """The classic text format, version 0.0.4."""
    output: list[str] = []
    for family in families:
        kind = family.type
        name = metric_name(family.name + _CLASSIC_SUFFIXES.get(kind, ""))
        help_text = help_classic(family.documentation)
        kind = _CLASSIC_TYPES.get(kind, kind)
        output.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")
        output.append(family.classic_lines)
        for suffix, lines in family.classic_trailing:
            gauge = metric_name(family.name + suffix)
            output.append(f"# HELP {gauge} {help_text}\n# TYPE {gauge} gauge\n")
            output.append(lines)
    return _encoded(output)


def write_openmetrics(families: Iterable[WrittenFamily]) -> bytes:
    """OpenMetrics, version 1.0.0."""
    output: list[str] = []
    for family in families:
        name = metric_name(family.name)
        output.append(
            f"# HELP {name} {help_openmetrics(family.documentation)}\n# TYPE {name} {family.type}\n"
        )
        if family.unit:
            output.append(f"# UNIT {name} {family.unit}\n")
        output.append(family.openmetrics_lines)
    output.append("# EOF\n")
    return _encoded(output)


def _encoded(output: list[str]) -> bytes:
    # Every text reaching a label is cleaned where it enters (providers/sanitize.py); should one
    # slip through, a lone surrogate becomes `?` here instead of failing the whole scrape.
    return "".join(output).encode("utf-8", "replace")


def generate_text(source: Families) -> bytes:
    """What `prometheus_client.generate_latest(source)` returns."""
    return write_classic(collected(source))


def generate_openmetrics(source: Families) -> bytes:
    """What `prometheus_client.openmetrics.exposition.generate_latest(source)` returns."""
    return write_openmetrics(collected(source))


# The two formats written, each named by the version actually written: a client asking for
# another version (OpenMetrics 2.0.0, the text format 1.0.0) gets one of these, labelled as it is.
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
CLASSIC_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class TextFormat:
    content_type: str
    write: Callable[[Iterable[WrittenFamily]], bytes]


CLASSIC = TextFormat(CLASSIC_CONTENT_TYPE, write_classic)
OPENMETRICS = TextFormat(OPENMETRICS_CONTENT_TYPE, write_openmetrics)


def format_for(accept: str) -> TextFormat:
    """The format for an `Accept` header: OpenMetrics 1.0.0 where the client accepts
    `application/openmetrics-text` (in whatever version it names) at least as much as
    `text/plain`, the classic text format 0.0.4 otherwise."""
    qualities = {"application/openmetrics-text": 0.0, "text/plain": 0.0}
    for entry in accept.split(","):
        media_type, *params = (part.strip() for part in entry.split(";"))
        media_type = media_type.lower()
        if media_type in qualities:
            qualities[media_type] = max(qualities[media_type], _quality(params))
    openmetrics_q = qualities["application/openmetrics-text"]
    if openmetrics_q > 0 and openmetrics_q >= qualities["text/plain"]:
        return OPENMETRICS
    return CLASSIC


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
