"""What an SLO counts, as PromQL: its selection as label matchers, and per window the runs that
count and the runs that spend the error budget, per workflow.

Each workflow the selection takes is its own SLI (the rules aggregate `by (source, provider,
workflow)`, which folds away `instance`, pods and shard replicas), so a quiet workflow is not
hidden behind a busy one, and the low-traffic guard counts that workflow's runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from exporter.config.slos import LatencyObjective, SloSettings, SuccessObjective

BY = "source, provider, workflow"
FINISHED = "workflow_runs_finished_total"
DURATION = "workflow_run_duration_seconds"
SUCCESS = "success"
LATENCY = "latency"


def quoted(value: str) -> str:
    """A PromQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _regex_literal(text: str) -> str:
    """A plain name as a regular expression matching only itself (RE2 syntax)."""
    return "".join(f"\\{c}" if c in r"\.+*?()|[]{}^$" else c for c in text)


def _alternatives(patterns: Sequence[str]) -> str:
    return "|".join(f"(?:{p})" for p in patterns)


def selection(slo: SloSettings) -> list[str]:
    """Label matchers for the SLO's sources and workflows. Prometheus anchors its regexes as
    the workflow filter does (`fullmatch`); the `workflow` label holds a workflow's name where
    the API gives one, else its id, so a pattern written for either keeps working."""
    matchers: list[str] = []
    if len(slo.sources) == 1:
        matchers.append(f"source={quoted(slo.sources[0])}")
    elif slo.sources:
        names = "|".join(_regex_literal(s) for s in slo.sources)
        matchers.append(f"source=~{quoted(names)}")
    if slo.workflows.include:
        matchers.append(f"workflow=~{quoted(_alternatives(slo.workflows.include))}")
    if slo.workflows.exclude:
        matchers.append(f"workflow!~{quoted(_alternatives(slo.workflows.exclude))}")
    return matchers


def _series(metric: str, matchers: Sequence[str]) -> str:
    return f"{metric}{{{','.join(matchers)}}}"


def _statuses(statuses: Sequence[str]) -> str:
    return f"status=~{quoted('|'.join(statuses))}"


def bucket_bound(threshold: float) -> str:
    """The `le` label value the exporter writes for that bound (`60.0`)."""
    return repr(float(threshold))


@dataclass(frozen=True)
class Sli:
    """One kind of indicator of one SLO: `errors(w)` and `total(w)` are PromQL for the runs
    that spent budget and the runs that count, finished in the window `w`, per workflow."""

    slo: SloSettings
    kind: str
    objective: float  # percent

    @property
    def error_budget(self) -> float:
        # Rounded, so 99.9 gives 0.001 and not 0.0010000000000000009 in every expression.
        return round((100.0 - self.objective) / 100.0, 12)

    def labels(self) -> dict[str, str]:
        return {"slo": self.slo.name, "sli": self.kind}

    def matcher(self) -> str:
        """Selects this SLI's recorded series."""
        return f"slo={quoted(self.slo.name)},sli={quoted(self.kind)}"

    def _sum(self, fn: str, series: str, window: str) -> str:
        return f"sum by ({BY}) ({fn}({series}[{window}]))"

    def _valid(self) -> str:
        chosen = selection(self.slo)
        if self.kind == SUCCESS:
            success = self.slo.success
            assert isinstance(success, SuccessObjective)
            return _series(FINISHED, [*chosen, _statuses([*success.good, *success.bad])])
        latency = self.slo.latency
        assert isinstance(latency, LatencyObjective)
        return _series(f"{DURATION}_count", [*chosen, _statuses(latency.statuses)])

    def total(self, window: str, fn: str = "increase") -> str:
        return self._sum(fn, self._valid(), window)

    def errors(self, window: str, fn: str = "increase") -> str:
        chosen = selection(self.slo)
        if self.kind == SUCCESS:
            success = self.slo.success
            assert isinstance(success, SuccessObjective)
            bad = self._sum(fn, _series(FINISHED, [*chosen, _statuses(success.bad)]), window)
            # A workflow that never failed has no series of its bad statuses: its errors are
            # zero, not absent, or its SLI would be missing instead of perfect.
            return f"(\n  {bad}\n  or\n  0 * {self.total(window, fn)}\n)"
        latency = self.slo.latency
        assert isinstance(latency, LatencyObjective)
        fast = _series(
            f"{DURATION}_bucket",
            [*chosen, _statuses(latency.statuses), f"le={quoted(bucket_bound(latency.threshold))}"],
        )
        return f"(\n  {self.total(window, fn)}\n  -\n  {self._sum(fn, fast, window)}\n)"

    def error_ratio(self, window: str) -> str:
        return f"{self.errors(window, 'rate')}\n/\n{self.total(window, 'rate')}"


def slis(slo: SloSettings) -> list[Sli]:
    out = []
    if slo.success is not None:
        out.append(Sli(slo, SUCCESS, slo.success.objective))
    if slo.latency is not None:
        out.append(Sli(slo, LATENCY, slo.latency.objective))
    return out
