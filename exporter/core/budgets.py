"""The bounds on label values: the process-wide series budget, and each source's budgets for
workflow names, (workflow, error code) pairs and (workflow, step) pairs. A value past its budget
is shown as `other`, so a platform's new names can never grow the exported series without end."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Iterable, Mapping

OTHER_LABEL = "other"
# Between a workflow's name and the suffix that tells it from another workflow of that name.
COLLISION_SEPARATOR = "~"
_SUFFIX_LENGTHS = (4, 8, 16)


class SeriesBudget:
    """The process-wide bound on exported series, shared by every source (thread-safe).

    Admitting a new label value reserves the series it will create; once the budget is spent,
    new values fold into `other` instead.
    """

    def __init__(self, limit: int, used: int = 0) -> None:
        self.limit = limit
        self.used = used
        self._lock = threading.Lock()

    def reserve(self, series: int) -> bool:
        with self._lock:
            if self.used + series > self.limit:
                return False
            self.used += series
            return True

    def release(self, series: int) -> None:
        with self._lock:
            self.used = max(0, self.used - series)


class SeriesTab:
    """One decision's reservations on the shared budget, kept count of so that a decision whose
    commit fails (a full disk) gives them back: its values are admitted again by the cycle that
    does commit, and would otherwise hold the budget twice."""

    def __init__(self, budget: SeriesBudget) -> None:
        self._budget = budget
        self.taken = 0

    def reserve(self, series: int) -> bool:
        if not self._budget.reserve(series):
            return False
        self.taken += series
        return True


class LabelBudget:
    """Admits label values up to a bound per source (and within the process's series budget,
    each new value reserving `cost` series); later values fold into `other`.

    Given owners (the workflow label: which workflow id each value stands for), a value is one
    workflow's: another id whose name reads the same (two workflows named alike, or ids that
    differ only in what cleaning removed) gets the value with a short suffix derived from its id
    (`Invoices~3fa2`), so two workflows stay two series; the suffixed value is admitted like any
    other, within the same bound. The first id to be counted under a value owns it for good (the
    owners are kept with the state), so a restart never moves a workflow to another series."""

    def __init__(
        self,
        admitted: Iterable[str],
        limit: int,
        series: SeriesBudget | SeriesTab | None = None,
        cost: int = 0,
        owners: Mapping[str, str] | None = None,
    ) -> None:
        self.admitted = set(admitted)
        self.limit = limit
        self.newly_admitted: list[str] = []
        self.dropped = 0
        self._series = series
        self._cost = cost
        self.owners = dict(owners or {})
        self.newly_owned: dict[str, str] = {}
        self.collisions: list[tuple[str, str, str]] = []

    def label(self, value: str, owner: str | None = None) -> str:
        if owner is None:
            return self._admit(value)
        if value in self.admitted and self.owners.get(value) == owner:
            return value  # the common case: a value already admitted, and this owner's own
        label = self._admit(self._owned_value(value, owner))
        if label != OTHER_LABEL and label not in self.owners:
            self.owners[label] = owner
            self.newly_owned[label] = owner
            if label != value:
                self.collisions.append((value, owner, self.owners[value]))
        return label

    def _owned_value(self, value: str, owner: str) -> str:
        """`value` where it is free or `owner`'s own, else `value` with the shortest suffix of
        `owner`'s digest that no other id holds."""
        holder = self.owners.get(value)
        if holder is None or holder == owner:
            return value
        digest = hashlib.sha256(owner.encode("utf-8")).hexdigest()
        for length in _SUFFIX_LENGTHS:
            candidate = f"{value}{COLLISION_SEPARATOR}{digest[:length]}"
            if self.owners.get(candidate) in (None, owner):
                return candidate
        return f"{value}{COLLISION_SEPARATOR}{digest}"  # 256 bits: never held by another

    def _admit(self, value: str) -> str:
        if value in self.admitted:
            return value
        within_source = len(self.admitted - {OTHER_LABEL}) < self.limit
        if within_source and (self._series is None or self._series.reserve(self._cost)):
            self.admitted.add(value)
            self.newly_admitted.append(value)
            return value
        self.dropped += 1
        if OTHER_LABEL not in self.admitted:
            # Remembered like any value, so its series are pre-created from now on.
            self.admitted.add(OTHER_LABEL)
            self.newly_admitted.append(OTHER_LABEL)
        return OTHER_LABEL


class PairBudget:
    """(workflow, code) pairs of the errors counter: each new pair is one more series."""

    def __init__(
        self, known: Iterable[tuple[str, str]], series: SeriesBudget | SeriesTab | None
    ) -> None:
        self.known = set(known)
        self._series = series
        self.dropped = 0
        self.newly_known: list[tuple[str, str]] = []

    def code(self, workflow: str, code: str) -> str:
        if (workflow, code) in self.known:
            return code
        if code != OTHER_LABEL and self._series is not None and not self._series.reserve(1):
            self.dropped += 1
            code = OTHER_LABEL
        # `other` itself is admitted past the budget: one series per workflow at most.
        if (workflow, code) not in self.known:
            self.known.add((workflow, code))
            self.newly_known.append((workflow, code))
        return code


class StepBudget:
    """(workflow, step) pairs of the steps counter: up to `limit` steps per workflow, each new
    one reserving its series (`cost`: every step status and its duration histogram); later
    steps fold into the workflow's `other` step. A workflow's first step also reserves its
    `other`, so folding never overshoots the budget; a workflow whose first step finds the
    budget spent gets no step series at all (its steps are counted as dropped)."""

    def __init__(
        self,
        known: Iterable[tuple[str, str]],
        limit: int,
        series: SeriesBudget | SeriesTab | None = None,
        cost: int = 0,
    ) -> None:
        self.known = set(known)
        self.limit = limit
        self._series = series
        self._cost = cost
        self._per_workflow: Counter[str] = Counter(
            workflow for workflow, step in self.known if step != OTHER_LABEL
        )
        # Workflows whose `other` step is reserved (or admitted): known ones were, when admitted.
        self._reserved = {workflow for workflow, _step in self.known}
        self.dropped = 0
        self.newly_known: list[tuple[str, str]] = []

    def step(self, workflow: str, step: str) -> str | None:
        """The label to count the step under; None when it cannot have a series at all."""
        if (workflow, step) in self.known:
            return step
        if self._per_workflow[workflow] < self.limit and self._reserve(workflow):
            self._admit(workflow, step)
            self._per_workflow[workflow] += 1
            return step
        self.dropped += 1
        if workflow not in self._reserved:
            return None
        if (workflow, OTHER_LABEL) not in self.known:
            self._admit(workflow, OTHER_LABEL)
        return OTHER_LABEL

    def _reserve(self, workflow: str) -> bool:
        first = workflow not in self._reserved
        if self._series is not None and not self._series.reserve(self._cost * (2 if first else 1)):
            return False
        self._reserved.add(workflow)
        return True

    def _admit(self, workflow: str, step: str) -> None:
        self.known.add((workflow, step))
        self.newly_known.append((workflow, step))
