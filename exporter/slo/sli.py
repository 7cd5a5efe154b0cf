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
from exporter.slo.burn import prometheus_duration

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


def _statuses(regex: str) -> str:
    return f"status=~{quoted(regex)}"


def bucket_bound(threshold: float) -> str:
    """The `le` label value the exporter writes for that bound (`60.0`)."""
    return repr(float(threshold))


def number(value: float) -> str:
    """A number as the rules write it: `0.144`, `0.001`, `99.9`, `20`."""
    return f"{value:.12g}"


@dataclass(frozen=True)
class Sli:
    """One kind of indicator of one SLO: `errors(w)` and `total(w)` are PromQL for the runs
    that spent budget and the runs that count, finished in the window `w`, per workflow.

    Every value the rules are made of comes from one of the `*_text` methods and `matchers`, so
    the Helm chart renders the same rules from its values by overriding them with template
    expressions (monitoring/chart_slos.py)."""

    slo: SloSettings
    kind: str
    objective: float  # percent

    @property
    def error_budget(self) -> float:
        # Rounded, so 99.9 gives 0.001 and not 0.0010000000000000009 in every expression.
        return round((100.0 - self.objective) / 100.0, 12)

    def name_text(self) -> str:
        return self.slo.name

    def budget_text(self) -> str:
        return number(self.error_budget)

    def threshold_text(self, factor: float) -> str:
        return number(factor * self.error_budget)

    def objective_ratio_text(self) -> str:
        return number(self.objective / 100)

    def objective_text(self) -> str:
        return number(self.objective)

    def period_text(self) -> str:
        return prometheus_duration(self.slo.window)

    def matchers(self) -> list[str]:
        return selection(self.slo)

    def counted_text(self) -> str:
        """The statuses whose runs count, as a regex."""
        if self.kind == SUCCESS:
            success = self.slo.success
            assert isinstance(success, SuccessObjective)
            return "|".join([*success.good, *success.bad])
        latency = self.slo.latency
        assert isinstance(latency, LatencyObjective)
        return "|".join(latency.statuses)

    def bad_text(self) -> str:
        """Success: the bad statuses, as a regex."""
        success = self.slo.success
        assert isinstance(success, SuccessObjective)
        return "|".join(success.bad)

    def bound_text(self) -> str:
        """Latency: the `le` of the threshold's bucket."""
        latency = self.slo.latency
        assert isinstance(latency, LatencyObjective)
        return bucket_bound(latency.threshold)

    def labels(self) -> dict[str, str]:
        return {"slo": self.name_text(), "sli": self.kind}

    def matcher(self) -> str:
        """Selects this SLI's recorded series."""
        return f"slo={quoted(self.name_text())},sli={quoted(self.kind)}"

    def _sum(self, fn: str, series: str, window: str) -> str:
        return f"sum by ({BY}) ({fn}({series}[{window}]))"

    def _valid(self) -> str:
        metric = FINISHED if self.kind == SUCCESS else f"{DURATION}_count"
        return _series(metric, [*self.matchers(), _statuses(self.counted_text())])

    def total(self, window: str, fn: str = "increase") -> str:
        return self._sum(fn, self._valid(), window)

    def errors(self, window: str, fn: str = "increase") -> str:
        if self.kind == SUCCESS:
            bad_runs = _series(FINISHED, [*self.matchers(), _statuses(self.bad_text())])
            bad = self._sum(fn, bad_runs, window)
            # A workflow that never failed has no series of its bad statuses: its errors are
            # zero, not absent, or its SLI would be missing instead of perfect.
            return f"(\n  {bad}\n  or\n  0 * {self.total(window, fn)}\n)"
        fast = _series(
            f"{DURATION}_bucket",
            [
                *self.matchers(),
                _statuses(self.counted_text()),
                f"le={quoted(self.bound_text())}",
            ],
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
