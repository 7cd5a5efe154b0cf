"""Which label names and values a source's static `labels` may use (pure: settings import it).

Static labels are added to every series of their source at exposition time and to its per-run
alerts (see `exporter.exposition.staticlabels` and `exporter.alerting.events`). A name the
exporter already uses would either be overwritten or overwrite a real dimension, so those are
refused, as are the names Prometheus keeps for itself (`__` prefix) or sets on every target
(`job`, `instance`).
`tests/unit/config/test_static_labels.py` reads the label names of a running exporter's own
metrics and alerts and fails when one is missing here, so this list cannot fall behind the code.
"""

from __future__ import annotations

import re

# The exporter's own label names: its domain and self metrics, the step metrics, the client
# library's (`le`, `quantile`), the shard and build info, the alerting agent's metrics and the
# labels of the alerts it sends.
RESERVED_LABEL_NAMES = frozenset(
    {
        # domain metrics (exporter.exposition.metrics) and the step metrics named in
        # shared/metrics.md
        "source",
        "provider",
        "workflow",
        "status",
        "code",
        "step",
        # histograms and summaries
        "le",
        "quantile",
        # self metrics (exporter.exposition.selfmetrics)
        "endpoint",
        "result",
        "reason",
        "label",
        "native_status",
        "version",
        "index",
        "count",
        "event",
        "list_order",
        "first_page",
        "page_size",
        "timestamps",
        "lookups",
        # the alerts sent to Alertmanager (exporter.alerting.events)
        "alertname",
        "severity",
        "run_id",
        # what Prometheus attaches to every scraped series
        "job",
        "instance",
    }
)
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
MAX_STATIC_LABELS = 16
MAX_LABEL_VALUE_LENGTH = 128
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_label_name(name: str) -> str:
    """A static label's name, or ValueError saying why it cannot be one."""
    if not LABEL_NAME.match(name):
        raise ValueError("not a Prometheus label name (letters, digits and _, not first a digit)")
    if name.startswith("__"):
        raise ValueError("names starting with __ are reserved by Prometheus")
    if name in RESERVED_LABEL_NAMES:
        raise ValueError("the exporter uses this label name itself; choose another")
    return name


def check_label_value(value: str) -> str:
    """A static label's value: a short printable string (an empty value would drop the label)."""
    if not value:
        raise ValueError("must not be empty (Prometheus drops a label with an empty value)")
    if len(value) > MAX_LABEL_VALUE_LENGTH:
        raise ValueError(f"at most {MAX_LABEL_VALUE_LENGTH} characters")
    if _CONTROL.search(value):
        raise ValueError("must not hold control characters")
    return value
