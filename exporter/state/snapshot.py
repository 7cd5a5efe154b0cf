"""What a scrape renders: the aggregates and active runs, copied out of the store.

Histograms are kept per bucket rather than cumulative so that a change of bucket bounds can move
each old bucket into the new ones without inventing observations.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from exporter.core.tracking import ActiveRun


@dataclass(slots=True)
class Histogram:
    bounds: tuple[float, ...]  # upper bounds, +Inf implied
    counts: list[int]  # per bucket, not cumulative; len(bounds) + 1
    sum: float = 0.0
    count: int = 0

    @classmethod
    def empty(cls, bounds: Sequence[float]) -> Histogram:
        return cls(tuple(bounds), [0] * (len(bounds) + 1))

    def observe(self, value: float) -> None:
        if not math.isfinite(value):
            return  # never reaches here from a provider (sanitised); a sum must stay finite
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def estimated_sum(self) -> float:
        """Each bucket's count at its midpoint (the last, open one at its lower bound)."""
        lowers = [0.0, *self.bounds]
        uppers = [*self.bounds, self.bounds[-1] if self.bounds else 0.0]
        return sum(
            n * (low + high) / 2 for low, high, n in zip(lowers, uppers, self.counts, strict=True)
        )

    def rebinned(self, bounds: Sequence[float]) -> Histogram:
        """Moves each old bucket into the smallest new bucket that still contains it."""
        if tuple(bounds) == self.bounds:
            return self
        new = Histogram.empty(bounds)
        old_uppers = [*self.bounds, float("inf")]
        for upper, count in zip(old_uppers, self.counts, strict=True):
            new.counts[bisect.bisect_left(new.bounds, upper)] += count
        new.sum, new.count = self.sum, self.count
        return new

    def copy(self) -> Histogram:
        return Histogram(self.bounds, list(self.counts), self.sum, self.count)


@dataclass(slots=True)
class Snapshot:
    """What a scrape renders; a copy, so collection can go on while it is rendered."""

    providers: dict[str, str] = field(default_factory=dict)
    workflows: dict[str, set[str]] = field(default_factory=dict)
    finished: dict[tuple[str, str, str], int] = field(default_factory=dict)
    errors: dict[tuple[str, str, str], int] = field(default_factory=dict)
    histograms: dict[tuple[str, str, str, str], Histogram] = field(default_factory=dict)
    active: dict[str, list[ActiveRun]] = field(default_factory=dict)
    # (source, series) -> when it was born, Unix seconds: a workflow (`born_key`) or a
    # workflow's error code (`error_born_key`) created after the first start's backfill.
    born: dict[tuple[str, str], float] = field(default_factory=dict)
    # (source, workflow, status) -> bucket index -> the latest run observed in that bucket:
    # (run id, seconds, when). In memory only: exemplars point at recent runs, a restart may
    # forget them.
    exemplars: dict[tuple[str, str, str], dict[int, tuple[str, float, float]]] = field(
        default_factory=dict
    )
    # (source, workflow, status) -> Unix seconds of the newest run to reach that status.
    last_finished: dict[tuple[str, str, str], float] = field(default_factory=dict)
    # (source, workflow, step, step status) -> steps counted; every status of an admitted step
    # is here from its admission (at 0), so its series exist before the first increment.
    steps: dict[tuple[str, str, str, str], int] = field(default_factory=dict)

    def only(self, sources: set[str]) -> Snapshot:
        return self._kept(lambda source: source in sources)

    def without(self, source: str) -> Snapshot:
        """Everything but one source's series (a source removed for good)."""
        return self._kept(lambda kept: kept != source)

    def _kept(self, keep: Callable[[str], bool]) -> Snapshot:
        return Snapshot(
            providers={s: p for s, p in self.providers.items() if keep(s)},
            workflows={s: w for s, w in self.workflows.items() if keep(s)},
            finished={k: v for k, v in self.finished.items() if keep(k[0])},
            errors={k: v for k, v in self.errors.items() if keep(k[0])},
            histograms={k: v for k, v in self.histograms.items() if keep(k[1])},
            active={s: runs for s, runs in self.active.items() if keep(s)},
            born={k: v for k, v in self.born.items() if keep(k[0])},
            exemplars={k: v for k, v in self.exemplars.items() if keep(k[0])},
            last_finished={k: v for k, v in self.last_finished.items() if keep(k[0])},
            steps={k: v for k, v in self.steps.items() if keep(k[0])},
        )

    def copy(self) -> Snapshot:
        return Snapshot(
            providers=dict(self.providers),
            workflows={s: set(w) for s, w in self.workflows.items()},
            finished=dict(self.finished),
            errors=dict(self.errors),
            histograms={k: h.copy() for k, h in self.histograms.items()},
            active={s: list(runs) for s, runs in self.active.items()},
            born=dict(self.born),
            exemplars={k: dict(v) for k, v in self.exemplars.items()},
            last_finished=dict(self.last_finished),
            steps=dict(self.steps),
        )


def born_key(workflow: str) -> str:
    return f"workflow\x1f{workflow}"


def error_born_key(workflow: str, code: str) -> str:
    return f"error\x1f{workflow}\x1f{code}"


def step_born_key(workflow: str, step: str) -> str:
    return f"step\x1f{workflow}\x1f{step}"
