"""The text of one sample line, written once and shared by both exposition formats.

A sample line reads the same in the classic text format (0.0.4) and in OpenMetrics 1.0.0:
`name{labels} value`, the labels sorted by name, names escaped to the legacy character set,
values escaped for `\\`, newline and `"`, numbers as Go writes them (prometheus_client's rules).
Only what follows the value differs: a timestamp (milliseconds in the classic text, seconds in
OpenMetrics) and, in OpenMetrics alone, an exemplar.

The label names and values of this exporter repeat endlessly (source, provider, workflow,
status, le), so each distinct string, label set and number is escaped once and remembered; the
bounds keep the memory bounded whatever the label values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache

from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.samples import Timestamp
from prometheus_client.utils import floatToGoString

# Names outside the legacy character set are written with `_` for each character that is not in
# it, as prometheus_client does by default.
_ESCAPING = openmetrics.UNDERSCORES

Pairs = tuple[tuple[str, str], ...]


@lru_cache(maxsize=8192)
def metric_name(name: str) -> str:
    return openmetrics.escape_metric_name(name, _ESCAPING)


@lru_cache(maxsize=8192)
def _label_name(name: str) -> str:
    return openmetrics.escape_label_name(name, _ESCAPING)


@lru_cache(maxsize=65536)
def label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


@lru_cache(maxsize=65536)
def label_set(pairs: Pairs) -> str:
    """`{a="1",b="2"}` with the pairs sorted by name; empty for no pairs."""
    if not pairs:
        return ""
    return "{" + ",".join(f'{_label_name(k)}="{label_value(v)}"' for k, v in sorted(pairs)) + "}"


def number(value: float) -> str:
    # 0.0 and -0.0 are one key to a cache (they compare equal) but two texts.
    if value == 0.0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    return _number(value)


@lru_cache(maxsize=65536)
def _number(value: float) -> str:
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


def series_line(name: str, pairs: Pairs, value: float) -> str:
    """One sample line without timestamp or exemplar, newline included."""
    return f"{metric_name(name)}{label_set(pairs)} {number(float(value))}\n"


def help_classic(documentation: str) -> str:
    return documentation.replace("\\", r"\\").replace("\n", r"\n")


def help_openmetrics(documentation: str) -> str:
    # OpenMetrics escapes `"` in a HELP text too.
    return label_value(documentation)


def exemplar_suffix(
    labels: Mapping[str, str], value: float, timestamp: float | Timestamp | None
) -> str:
    """` # {run_id="..."} 7.0 1700000000.5`: what follows an OpenMetrics sample's value when the
    sample carries an exemplar (its labels sorted, its timestamp in seconds as Python writes it)."""
    written = ",".join(f'{k}="{label_value(v)}"' for k, v in sorted(labels.items()))
    at = "" if timestamp is None else f" {timestamp}"
    return f" # {{{written}}} {number(float(value))}{at}"
