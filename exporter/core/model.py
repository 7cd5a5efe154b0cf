"""The one shape every provider's run takes before anything else sees it.

Providers translate their wire JSON into `Run`; the collector, the store and the metrics know
nothing else. Canonical statuses are the project's own decision (see the provider table in
docs/providers.md).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import quote, unquote

from exporter.core.frozen import quick_init


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    NEEDS_REVIEW = "needs_review"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    UNKNOWN = "unknown"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def may_have_ended(self) -> bool:
        """A terminal status, or one nobody mapped: a run in it may carry an end time (and its
        steps), which for an unmapped status says it has finished (see `Run.terminal`)."""
        return self.terminal or self is RunStatus.UNKNOWN


TERMINAL_STATUSES = frozenset(
    {
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.REJECTED,
        RunStatus.CANCELLED,
        RunStatus.SKIPPED,
    }
)
ACTIVE_STATUSES = frozenset(s for s in RunStatus if s not in TERMINAL_STATUSES)

# The `code` label when a provider gives no machine-readable error code.
UNSPECIFIED_CODE = "unspecified"
# Statuses counted on the errors counter, with their code (a rejection is a run that produced no
# usable result, as a failure is; Plextera gives rejected runs an error code like failed ones).
ERROR_STATUSES = frozenset({RunStatus.FAILED, RunStatus.REJECTED})
DAY = timedelta(days=1)
# The times a queue wait is taken between: neither may be a bare date.
_WAIT_ENDS = frozenset({"started_at", "created_at"})


class StepStatus(StrEnum):
    """The canonical step statuses (the `status` label of `workflow_run_steps_total`)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    NOT_STARTED = "not_started"
    # Still queued or running when its run finished (or when the run was read).
    UNFINISHED = "unfinished"
    UNKNOWN = "unknown"


@quick_init
@dataclass(frozen=True, slots=True)
class Step:
    """One step of a run. `status` is the provider's own word, `canonical` its mapping."""

    name: str
    status: str
    type: str | None = None
    canonical: StepStatus = StepStatus.UNKNOWN
    # Only where the API gives the step's start and end (Cortex); never guessed.
    duration_seconds: float | None = None

    @property
    def label(self) -> str:
        """The `step` label value before bounding: the step's type where given, else its key."""
        return self.type or self.name


# A run or workflow id longer than this is an invalid record, not a key (real ids are tens of
# characters; the bound keeps the state, the lookups and the logs small whatever an API sends).
MAX_ID_LENGTH = 1024
# Between a workflow and a run id in a scoped id: `quote` never leaves it in a segment.
SCOPE_SEPARATOR = "/"


def id_problem(value: str) -> str | None:
    """Why an API's id cannot be a key (None: it can). Control characters are no problem: the
    id is kept exactly as sent (SQLite binds it, `segment` quotes it) and cleaned only for show."""
    if not value:
        return "is empty"
    if len(value) > MAX_ID_LENGTH:
        return f"is longer than {MAX_ID_LENGTH} characters"
    if not _encodable(value):
        return "is not valid text (a lone UTF-16 surrogate)"
    return None


def _encodable(value: str) -> bool:
    if value.isascii():
        return True  # the common case, checked in C: ASCII holds no lone surrogate
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def scoped_id(workflow_id: str, run_id: str) -> str:
    """The key of a run whose id the API makes unique only within its workflow (Cortex: the
    run is addressed as `/workflows/{id}/runs/{run}`, and nothing promises its id is unique
    across workflows). Each part is quoted as a URL path segment, so the separator cannot occur
    inside either: two different pairs never make the same key, and `split_scoped_id` gives
    both back exactly."""
    return f"{_segment(workflow_id)}{SCOPE_SEPARATOR}{_segment(run_id)}"


# What `quote` never changes: an id of these alone is its own segment (most ids are).
_UNQUOTED = frozenset(string.ascii_letters + string.digits + "_.-~")


def _segment(value: str) -> str:
    return value if _UNQUOTED.issuperset(value) else quote(value, safe="")


def split_scoped_id(key: str) -> tuple[str, str] | None:
    """(workflow id, run id) of a `scoped_id`; None for a key that is not one."""
    workflow, separator, run = key.partition(SCOPE_SEPARATOR)
    if not separator or not workflow or not run or SCOPE_SEPARATOR in run:
        return None
    try:
        return unquote(workflow, errors="strict"), unquote(run, errors="strict")
    except UnicodeDecodeError:
        return None


@quick_init
@dataclass(frozen=True, slots=True)
class Run:
    """A workflow run, normalised.

    `cursor_time` is the timestamp the provider's list is ordered by (creation for page-number
    APIs, last update for Extend); incremental collection compares it with the source watermark.

    `id` is the run's identity, exactly as the API gives it and scoped as the API scopes it: the
    raw id, or a `scoped_id` where ids are unique only per workflow. Deduplication, the state
    and lookups use it and nothing else; it is never cleaned, because two ids that differ only
    in what cleaning removes (a control character, a tail cut off) are two runs. What people
    read (logs, exemplars, alerts, recent runs) is `shown`: the API's own id, made safe.
    """

    id: str
    workflow_id: str
    workflow_name: str | None
    status: RunStatus
    native_status: str
    created_at: datetime
    cursor_time: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    progress: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    dashboard_url: str | None = None
    steps: tuple[Step, ...] = field(default=())
    # Step items the provider could not read (counted on invalid records as `step`); the run
    # and its other steps still count.
    invalid_steps: int = 0
    # Ids of runs nested in this run's steps (Plextera `nestedRuns`): never counted from here,
    # only checked against what the top-level list shows (docs/providers.md: Steps).
    nested_ids: tuple[str, ...] = ()
    # Set when the provider knows more detail is needed before the run can be counted
    # (Extend: a FAILED summary carries no failure reason until the detail is fetched).
    needs_detail: bool = False
    # Timestamps the API gave as a date only ("created_at", "started_at", "finished_at"): each is
    # a day (held as its start), never an instant to subtract. `cursor_time` is then the day's
    # end, the latest the run can have been created.
    day_only: frozenset[str] = frozenset()
    # Where the run came from, for APIs that say (Cortex: WORKFLOW, TEST, ...); a filter, never a
    # label. None: the API gives none.
    origin: str | None = None
    # The id as shown where it is not `id` itself: the API's id made safe to read (control
    # characters, keys and excess length removed), or the bare run id of a scoped `id`.
    shown_id: str | None = None

    @property
    def shown(self) -> str:
        """The id people read (never a key: two runs may read the same)."""
        return self.id if self.shown_id is None else self.shown_id

    @property
    def terminal(self) -> bool:
        """A terminal status, or a status nobody mapped on a run that carries an end time: it has
        finished, and must not sit among the active runs for ever (it would page as stuck)."""
        return self.status.terminal or (
            self.status is RunStatus.UNKNOWN and self.finished_at is not None
        )

    @property
    def created_exactly(self) -> bool:
        return "created_at" not in self.day_only

    @property
    def finished_by(self) -> datetime | None:
        """The latest the run can have finished: its end time, or the end of its end day."""
        if self.finished_at is None:
            return None
        return self.finished_at + DAY if "finished_at" in self.day_only else self.finished_at

    @property
    def workflow_label(self) -> str:
        """The `workflow` label value before bounding: the name where given, else the id."""
        return self.workflow_name or self.workflow_id

    @property
    def contradicting_times(self) -> str | None:
        """What the given times say that cannot be (an end before the start or before the
        creation), or None. Day-only times count from their day's start to its end, so only a
        certain contradiction is one."""
        end = self.finished_by
        if end is None:
            return None
        started = self.started_at
        if started is not None and end < started:
            return self._finished_before("started_at", started)
        if end < self.created_at:
            return self._finished_before("created_at", self.created_at)
        return None

    def _finished_before(self, name: str, value: datetime) -> str:
        finished = self.finished_at.isoformat() if self.finished_at else ""
        return f"finished_at {finished} is before {name} {value.isoformat()}"

    @property
    def queue_wait_seconds(self) -> float | None:
        """started - created; None where a time is a day only, or the times contradict."""
        if self.started_at is None or not self.day_only.isdisjoint(_WAIT_ENDS):
            return None
        if self.contradicting_times is not None:
            return None
        wait = (self.started_at - self.created_at).total_seconds()
        return wait if wait >= 0 else None

    @property
    def effective_duration_seconds(self) -> float | None:
        """The provider's own number first, else completed - started, else completed - created;
        None from times that contradict each other (one of them is wrong, and which is unknown).
        """
        if self.duration_seconds is not None and self.duration_seconds >= 0:
            return self.duration_seconds
        if self.finished_at is None or "finished_at" in self.day_only:
            return None
        if self.contradicting_times is not None:
            return None
        if self.started_at is not None:
            if "started_at" in self.day_only:
                return None
            start = self.started_at
        elif self.created_exactly:
            start = self.created_at
        else:
            return None
        elapsed = (self.finished_at - start).total_seconds()
        return elapsed if elapsed >= 0 else None


class StatusMapper:
    """Maps a provider's native status to the canonical one; unknown values become `unknown`.

    The provider supplies the table of docs/providers.md; a source's `status_map` overrides entries.
    Native values are compared case-sensitively, as the APIs document them.
    """

    def __init__(
        self, defaults: Mapping[str, RunStatus], overrides: Mapping[str, RunStatus] | None = None
    ) -> None:
        self._table: dict[str, RunStatus] = {**defaults, **(overrides or {})}

    def map(self, native: str) -> RunStatus:
        return self._table.get(native, RunStatus.UNKNOWN)

    def known(self, native: str) -> bool:
        return native in self._table

    @property
    def canonical_values(self) -> frozenset[RunStatus]:
        return frozenset(self._table.values())
