"""Whether a source's single-run endpoint can be relied on, learned from the API's own answers.

Only Plextera documents its single-run path; Extend's and Cortex's are named without one, and
Noxus documents none (shared providers' notes): each path the providers use is a guess. A guess
is verified against a run the runs list shows right now:

- the endpoint answering that run, under that id, confirms it (`supported`);
- a 404, or another refusal of the path itself (400, 405, 410, 422, 501), for a run the list
  shows, confirmed by a second such run (the first may have been deleted between the list and
  the lookup), shows the path is wrong or absent (`unsupported`); so does an answer carrying
  another run.

Until the endpoint is confirmed, a 404 for a run the list does not show proves nothing (the path
may not exist at all), so no run is given up on it. Once shown unsupported, the source stops
looking runs up: failure details that cannot be had are counted as `unspecified`, and active runs
are followed through the list and the audit walk instead. An unsupported endpoint is tried again
after `retry_after` (an API that gains the endpoint later, or a refusal that was a passing fault).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum

from exporter.core.errors import HttpStatusError
from exporter.core.model import Run

# Answers that refuse the path itself rather than one run's access: a wrong or absent endpoint.
REFUSED_PATH = frozenset({400, 404, 405, 410, 422, 501})


class Support(StrEnum):
    UNVERIFIED = "unverified"
    SUPPORTED = "supported"
    UNSUPPORTED = "unsupported"


class Outcome(Enum):
    FOUND = "found"  # the run, as the endpoint answered it
    GONE = "gone"  # a confirmed endpoint says the run no longer exists
    UNKNOWN = "unknown"  # no answer that can be relied on: the run stays as it was
    SUSPECT = "suspect"  # a listed run was refused: ask about another listed run to tell
    UNSUPPORTED = "unsupported"  # the endpoint was just shown wrong: stop looking runs up


@dataclass(frozen=True, slots=True)
class Lookup:
    outcome: Outcome
    run: Run | None = None


GetRun = Callable[[str, str | None], Run | None]


class LookupGuard:
    """One source's single-run endpoint, as far as its answers have shown it (thread-confined to
    the source's collection, like the provider)."""

    def __init__(
        self,
        get_run: GetRun,
        say: Callable[[str, str, str], None],
        *,
        retry_after: float = 3600.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._get_run = get_run
        self._say = say
        self._retry_after = retry_after
        self._monotonic = monotonic
        self.support = Support.UNVERIFIED
        self._unsupported_at = 0.0
        # A run the list shows was refused, and no listed run has been answered since.
        self._suspect: str | None = None

    @property
    def usable(self) -> bool:
        """Whether lookups may be tried now: not shown unsupported, or shown so long enough ago
        that the endpoint is worth verifying again."""
        if self.support is not Support.UNSUPPORTED:
            return True
        return self._monotonic() - self._unsupported_at >= self._retry_after

    @property
    def verified(self) -> bool:
        return self.support is Support.SUPPORTED

    def look_up(self, run_id: str, workflow_id: str | None, *, listed: bool) -> Lookup:
        """One run by id. `listed`: the runs list showed this run in this cycle, so the endpoint
        must know it; an answer for it verifies (or refutes) the endpoint.

        Errors other than a refusal of the path (401, 403, 429, 5xx, transport) propagate: they
        say nothing about the path and fail the lookup as before."""
        try:
            run = self._get_run(run_id, workflow_id)
            refused: int | None = 404 if run is None else None
        except HttpStatusError as exc:
            if exc.status not in REFUSED_PATH:
                raise
            run, refused = None, exc.status
        if run is not None and run.id != run_id:
            self._unsupported(f"asked for run {run_id[:80]!r}, answered run {run.id[:80]!r}")
            return Lookup(Outcome.UNSUPPORTED)
        if run is not None:
            self._suspect = None
            if self.support is not Support.SUPPORTED:
                self.support = Support.SUPPORTED
                self._say("lookups", "supported", "a run was answered by its id")
            return Lookup(Outcome.FOUND, run)
        if listed:
            why = f"HTTP {refused} for run {run_id[:80]!r}, which the runs list shows right now"
            if self._suspect is None:
                self._suspect = why
                return Lookup(Outcome.SUSPECT)
            self._unsupported(f"{self._suspect}, and {why}")
            return Lookup(Outcome.UNSUPPORTED)
        if self.support is Support.SUPPORTED and refused == 404:
            return Lookup(Outcome.GONE)
        return Lookup(Outcome.UNKNOWN)

    def retry_now(self) -> None:
        """Lets an endpoint shown unsupported be verified again at the next lookup."""
        self._unsupported_at = self._monotonic() - self._retry_after

    def confirm_suspicion(self) -> None:
        """No other listed run can be asked about: one refusal of a listed run decides."""
        if self._suspect is not None:
            self._unsupported(self._suspect)

    def _unsupported(self, why: str) -> None:
        self._suspect = None
        self.support = Support.UNSUPPORTED
        self._unsupported_at = self._monotonic()
        self._say(
            "lookups",
            "unsupported",
            f"the single-run endpoint is wrong or absent ({why}): active runs are followed "
            "through the list, and failure details that cannot be had count as `unspecified`",
        )


class LookupRound:
    """One cycle's lookups through the source's `LookupGuard`, with the probes that verify the
    endpoint against runs the list shows (preferring finished ones: they are not deleted under
    the lookup as an active run may be)."""

    def __init__(self, guard: LookupGuard, listed: Mapping[str, Run]) -> None:
        self.guard = guard
        self.listed = listed
        self.spent = 0
        self.tried: set[str] = set()
        # Runs probes fetched on their own account (merged into the cycle's sightings).
        self.found: dict[str, Run] = {}

    def look_up(self, run_id: str, workflow_id: str | None, *, listed: bool) -> Lookup:
        self.spent += 1
        self.tried.add(run_id)
        return self.guard.look_up(run_id, workflow_id, listed=listed)

    def verify(self, budget: int, *, exclude: str) -> bool:
        """Whether a run the list does not show may be looked up now: the endpoint has answered
        a run before, or a listed run it answers now confirms it."""
        while not self.guard.verified:
            if self.guard.support is Support.UNSUPPORTED and not self.guard.usable:
                return False
            candidate = self._candidate(exclude)
            if candidate is None or self.spent >= budget:
                self.guard.confirm_suspicion()
                return False
            result = self.look_up(candidate.id, candidate.workflow_id, listed=True)
            if result.outcome is Outcome.FOUND and result.run is not None:
                self.found[candidate.id] = result.run
            elif result.outcome is Outcome.UNSUPPORTED:
                return False
        return True

    def second_opinion(self, budget: int, *, exclude: str) -> None:
        candidate = self._candidate(exclude)
        if candidate is None or self.spent >= budget:
            self.guard.confirm_suspicion()
            return
        result = self.look_up(candidate.id, candidate.workflow_id, listed=True)
        if result.outcome is Outcome.FOUND and result.run is not None:
            self.found[candidate.id] = result.run
        elif result.outcome is Outcome.SUSPECT:
            self.guard.confirm_suspicion()

    def _candidate(self, exclude: str) -> Run | None:
        best: Run | None = None
        for run in self.listed.values():
            if run.id == exclude or run.id in self.tried:
                continue
            if run.terminal and not run.needs_detail:
                return run
            best = best or run
        return best


class MissingRuns:
    """Active runs a confirmed endpoint says are gone, by where they last stood in the list.

    Such a run is looked for in the list before it is given up: the next scan reads down to it
    (never below what the source still promises to count), and only a complete scan that reached
    it and did not show it gives it up (counted as vanished)."""

    def __init__(self) -> None:
        self._positions: dict[str, datetime] = {}
        self._bottom: datetime | None = None

    def note(self, run_id: str, position: datetime) -> None:
        self._positions.setdefault(run_id, position)

    def search_floor(self, floor: datetime, lowest: datetime, active: Collection[str]) -> datetime:
        """The scan floor, lowered to reach the missing runs (not below `lowest`)."""
        for run_id in [i for i in self._positions if i not in active]:
            del self._positions[run_id]
        self._bottom = lowest
        if not self._positions:
            return floor
        return min(floor, max(lowest, min(self._positions.values())))

    def given_up(
        self,
        floor: datetime,
        read: Collection[str],
        active: Collection[str],
        seen_in_chunks: Collection[str],
    ) -> list[str]:
        """The missing runs a complete scan down to `floor` did not show either."""
        given_up = []
        for run_id, position in list(self._positions.items()):
            if run_id in read or run_id in seen_in_chunks or run_id not in active:
                del self._positions[run_id]
            elif position >= floor or floor == self._bottom:
                # The scan reached it, or read as deep as the source reads: it is not there.
                del self._positions[run_id]
                given_up.append(run_id)
        return given_up
