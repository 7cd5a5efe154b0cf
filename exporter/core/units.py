"""Value types shared by configuration, accounting, providers and rendering: durations, and the
histograms' keys and default buckets.

A leaf: it imports nothing of the exporter, so reading a configuration never loads the renderer
or a provider's machinery.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator

# The two histograms, by the key that observations, stored buckets and settings share.
QUEUE_WAIT = "queue_wait"
DURATION = "duration"
# Keyed by (source, workflow, step): the step stands where the run histograms keep a status.
STEP_DURATION = "step_duration"

DEFAULT_BUCKETS: Mapping[str, tuple[float, ...]] = {
    # Document workflows take seconds to hours.
    DURATION: (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800),
    QUEUE_WAIT: (0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200),
    # A step is one model call or one function: well under a second to tens of minutes.
    STEP_DURATION: (0.25, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> timedelta:
    """`30s`, `5m`, `1h`, `2d`, `250ms`, or a bare number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=float(value))
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"])
    raise ValueError(f"invalid duration {value!r}: use a number with a unit, e.g. 30s, 5m, 1h")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
