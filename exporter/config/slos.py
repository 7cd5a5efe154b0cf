"""Service-level objectives (`slos:`): what each one selects and the objective it holds.

Pure settings: the recording and alert rules are built from them by `exporter.slo`. Two checks
need the rest of the configuration and are `check_slos`' (called by `exporter.config.settings`):
names are unique, and a latency threshold is one of the duration histogram's bucket bounds, since
Prometheus can count "runs faster than T" exactly only at a bucket bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from exporter.core.filters import WorkflowFilter, one_or_many
from exporter.core.units import Duration, parse_duration

# The canonical statuses a run can finish in (see docs/metrics.md).
TERMINAL_STATUSES = ("succeeded", "failed", "rejected", "cancelled", "skipped")
# A label value and part of an alert's identity: short, and safe in a PromQL string.
SloName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
Objective = Annotated[float, Field(gt=0, lt=100)]


def _finished(statuses: tuple[str, ...]) -> tuple[str, ...]:
    if not statuses:
        raise ValueError("needs at least one status")
    unknown = [s for s in statuses if s not in TERMINAL_STATUSES]
    if unknown:
        raise ValueError(
            f"not a finished status: {', '.join(unknown)} (one of: {', '.join(TERMINAL_STATUSES)})"
        )
    return statuses


class SuccessObjective(BaseModel):
    """The share of finished runs that are good, of those that are good or bad. Statuses in
    neither list (by default cancelled and skipped) count for nothing either way."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    objective: Objective = 99.0
    good: tuple[str, ...] = ("succeeded",)
    bad: tuple[str, ...] = ("failed", "rejected")

    @field_validator("good", "bad", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        return one_or_many(value)

    @field_validator("good", "bad")
    @classmethod
    def _terminal(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _finished(value)

    @model_validator(mode="after")
    def _apart(self) -> SuccessObjective:
        both = sorted(set(self.good) & set(self.bad))
        if both:
            raise ValueError(f"{', '.join(both)} cannot be both good and bad")
        return self


class LatencyObjective(BaseModel):
    """The share of finished runs (of `statuses`) that took at most `threshold` seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(gt=0)
    objective: Objective = 95.0
    # Failed runs often fail fast: counting them would make an outage look quick.
    statuses: tuple[str, ...] = ("succeeded",)

    @field_validator("threshold", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        # `2m` reads as a duration, as everywhere else in the file.
        if isinstance(value, str):
            return parse_duration(value).total_seconds()
        return value

    @field_validator("statuses", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        return one_or_many(value)

    @field_validator("statuses")
    @classmethod
    def _terminal(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _finished(value)


class SloSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: SloName
    # Empty: every source.
    sources: tuple[str, ...] = ()
    workflows: WorkflowFilter = WorkflowFilter()
    window: Duration = timedelta(days=30)
    # Finished runs a burn-rate alert's long window needs before it may fire; unset: the global
    # `slo_defaults.min_runs`.
    min_runs: int | None = Field(default=None, ge=1)
    success: SuccessObjective | None = None
    latency: LatencyObjective | None = None

    @field_validator("sources", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        return one_or_many(value)

    @field_validator("window")
    @classmethod
    def _whole_hours(cls, value: timedelta) -> timedelta:
        # The window's error ratio is summed from hourly recordings, and the slowest alert
        # reads three days.
        seconds = value.total_seconds()
        if seconds < 3 * 86400 or seconds % 3600:
            raise ValueError("must be whole hours and at least 3d (e.g. 7d, 28d, 30d)")
        return value

    @model_validator(mode="after")
    def _some_objective(self) -> SloSettings:
        if self.success is None and self.latency is None:
            raise ValueError("an SLO needs `success`, `latency` or both")
        return self


class SloDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # See docs/slos.md "Few runs": below this a single failure is too large a share to page on.
    min_runs: int = Field(default=20, ge=1)


def check_slos(
    slos: Sequence[SloSettings],
    duration_buckets: Sequence[float],
    source_names: Sequence[str] | None,
) -> list[str]:
    """The checks that need the rest of the configuration, one line per problem.
    `source_names` None: the file lists no sources (a file of SLOs only), none are checked."""
    problems: list[str] = []
    names = [s.name for s in slos]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"slos: the name {name!r} is used more than once")
    bounds = ", ".join(f"{b:g}" for b in duration_buckets)
    for index, slo in enumerate(slos):
        if slo.latency is not None and not any(
            math.isclose(slo.latency.threshold, b) for b in duration_buckets
        ):
            problems.append(
                f"slos[{index}].latency.threshold: {slo.latency.threshold:g} s is not a bucket"
                f" bound of workflow_run_duration_seconds (buckets.duration: {bounds})"
            )
        if source_names is None:
            continue
        for source in slo.sources:
            if source not in source_names:
                problems.append(f"slos[{index}].sources: no source is named {source!r}")
    return problems
