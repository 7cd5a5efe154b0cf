"""Steps of a run: reading a provider's step items into canonical `Step`s.

Providers hand their raw step items here (no second request is ever made for steps: only what a
page, or a detail already fetched, carries). A step item that cannot be read is counted, never a
reason to lose the run. Durations come only from a step's own start and end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard, TypeVar

from exporter.core.model import Step, StepStatus

T = TypeVar("T")

# A step timestamp given as a number larger than this is in milliseconds (1e11 seconds is the
# year 5138; 1e11 milliseconds is 1973): the two readings never overlap for real instants.
_MILLIS_ABOVE = 1e11
# Milliseconds below 2**32 seconds (the year 2106): there `value / 1000` lies within half a
# microsecond of the exact instant, so `datetime` reads every whole millisecond exactly and a
# duration can be taken from the numbers themselves. Beyond, each is read in full.
_MILLIS_BELOW = 2**32 * 1000
# A step lasting longer than this is a wrong pair of numbers, not a step.
_MAX_STEP_SECONDS = 366 * 86400.0


@dataclass(frozen=True, slots=True)
class StepsRead:
    steps: tuple[Step, ...]
    invalid: int  # items that were not steps (counted on invalid records, reason `step`)


class StepMapper:
    """Native step status -> canonical; an unmapped value is `unknown` and reported once per
    read through `unknown` (the provider counts it on `unknown_status` as `step:<value>`)."""

    def __init__(self, table: Mapping[str, StepStatus], unknown: Callable[[str], None]) -> None:
        self._table = table
        self._unknown = unknown

    def map(self, native: str) -> StepStatus:
        status = self._table.get(native)
        if status is None:
            self._unknown(native)
            return StepStatus.UNKNOWN
        return status


def step_instant(value: Any) -> datetime | None:
    """A step's start or end: Unix milliseconds (what the Cortex simulator sends), Unix seconds,
    or an ISO 8601 string; None for anything else (a missing end: the step has no duration)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        if isinstance(value, int | float):
            seconds = value / 1000 if abs(value) > _MILLIS_ABOVE else float(value)
            return datetime.fromtimestamp(seconds, tz=UTC)
        if isinstance(value, str) and value:
            if value.lstrip("-").replace(".", "", 1).isdigit():
                return step_instant(float(value))
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def step_duration(start: Any, end: Any) -> float | None:
    """end - start in seconds where both are instants and the difference is plausible."""
    if _whole_millis(start) and _whole_millis(end):
        # The common case (what Cortex sends), without building two datetimes: both are exact
        # milliseconds, so this is the very float `(ended - began).total_seconds()` gives.
        return _plausible((end - start) / 1000)
    began, ended = step_instant(start), step_instant(end)
    if began is None or ended is None:
        return None
    return _plausible((ended - began).total_seconds())


def _plausible(seconds: float) -> float | None:
    return seconds if 0 <= seconds <= _MAX_STEP_SECONDS else None


def _whole_millis(value: object) -> TypeGuard[int]:
    """Unix milliseconds `step_instant` certainly reads as an instant (an int, not a bool)."""
    return type(value) is int and _MILLIS_ABOVE < value < _MILLIS_BELOW


def read_steps(
    items: Any, build: Callable[[Any], Step | None], *, keyed: bool = False
) -> StepsRead:
    """Each item built on its own: a missing list (None) is no steps; a list (or, `keyed`, an
    object of items) that holds a bad item loses that item only; anything else is one invalid."""
    values: Iterable[Any]
    if items is None:
        return StepsRead((), 0)
    if isinstance(items, list):
        values = items
    elif keyed and isinstance(items, dict):
        values = items.values()
    else:
        return StepsRead((), 1)
    return _each(values, build)


def _each(items: Iterable[T], build: Callable[[T], Step | None]) -> StepsRead:
    """Each item built on its own; one that fails or gives no step is one invalid item."""
    steps: list[Step] = []
    invalid = 0
    for item in items:
        try:
            step = build(item)
        except (ValueError, TypeError, KeyError, AttributeError):
            step = None
        if step is None:
            invalid += 1
        else:
            steps.append(step)
    return StepsRead(tuple(steps), invalid)


def text_field(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value if isinstance(value, str) and value else None


def keyed_steps(output: Any) -> tuple[Step, ...]:
    """Step outputs keyed by step key (Cortex's `output`; in older docs a list), for progress."""
    steps = []
    for key, value in keyed_items(output):
        if isinstance(value, dict) and isinstance(value.get("status"), str):
            steps.append(Step(name=str(value.get("key") or key), status=value["status"]))
    return tuple(steps)


def keyed_progress(output: Any) -> float | None:
    """The share of a running run's keyed step outputs that are COMPLETED; None without steps."""
    steps = keyed_steps(output)
    return sum(1 for st in steps if st.status == "COMPLETED") / len(steps) if steps else None


def keyed_items(output: Any) -> list[tuple[str, Any]]:
    if isinstance(output, dict):
        return [(str(key), value) for key, value in output.items()]
    if isinstance(output, list):
        return [("", value) for value in output]
    return []


def read_keyed_steps(output: Any, mapper: StepMapper, bad_time: Callable[[str], None]) -> StepsRead:
    """Step outputs keyed by step key, each read by `keyed_step`, the object's own pairs read as
    they stand (this runs for every finished run). Absent: no steps; not an object or a list: one
    invalid item."""
    entries: Iterable[tuple[Any, Any]]
    if output is None:
        return StepsRead((), 0)
    if isinstance(output, dict):
        entries = output.items()
    elif isinstance(output, list):
        entries = [("", value) for value in output]
    else:
        return StepsRead((), 1)
    return _each(entries, lambda entry: keyed_step(entry, mapper, bad_time))


def keyed_step(
    entry: tuple[Any, Any], mapper: StepMapper, bad_time: Callable[[str], None]
) -> Step | None:
    """A step as counted: labelled by its key (a step's `type`, `llm` or `code`, says too little
    to act on), with its duration where both `start` and `end` are instants. A start or end
    that is there but no instant (10^400, NaN, a negative) costs the step its duration only, and
    is said through `bad_time`."""
    key, item = entry
    if not isinstance(item, dict):
        return None
    # `text_field` written out: this runs for every step of every run.
    native, name = item.get("status"), item.get("key")
    if not (isinstance(native, str) and native):
        return None
    if not (isinstance(name, str) and name):
        name = key if type(key) is str else str(key)
        if not name:
            return None
    start, end = item.get("start"), item.get("end")
    if _whole_millis(start) and _whole_millis(end):
        seconds = _plausible((end - start) / 1000)  # as `step_duration` reads them
    else:
        # Something other than two plain instants (an end still missing, a bad number): each
        # judged in full.
        for which, value in (("start", start), ("end", end)):
            negative = isinstance(value, int | float) and not isinstance(value, bool) and value < 0
            if value is not None and (negative or step_instant(value) is None):
                bad_time(f"output.{name}.{which}: {str(value)[:40]!r} is not an instant")
        seconds = step_duration(start, end)
    return Step(name=name, status=native, canonical=mapper.map(native), duration_seconds=seconds)
