"""The single-run endpoint as a hypothesis (`exporter.collection.lookups`), without a network."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from exporter.collection.audit import AuditWalk
from exporter.collection.lookups import LookupGuard, Outcome, Support
from exporter.core.errors import HttpStatusError, TransportError
from exporter.core.model import Run, RunStatus
from exporter.core.scancost import follow_floor
from tests.core_runs import at, make_run


class Api:
    """A single-run endpoint that knows some runs, refuses with a status, or fails."""

    def __init__(self, known: set[str] | None = None, refuse: int | None = None) -> None:
        self.known = known or set()
        self.refuse = refuse
        self.calls: list[str] = []
        self.answer_as: str | None = None

    def __call__(self, run_id: str, workflow_id: str | None) -> Run | None:
        self.calls.append(run_id)
        if self.refuse == 503:
            raise HttpStatusError("s", "get_run", 503, "down")
        if self.refuse is not None:
            raise HttpStatusError("s", "get_run", self.refuse, "no such path")
        if run_id not in self.known:
            return None
        return make_run(self.answer_as or run_id, status=RunStatus.SUCCEEDED, finished=5)


def _guard(
    api: Api, said: list[tuple[str, str]], monotonic: list[float] | None = None
) -> LookupGuard:
    clock = monotonic or [0.0]
    return LookupGuard(
        api, lambda fact, value, _why: said.append((fact, value)), monotonic=lambda: clock[0]
    )


def test_a_404_for_an_unlisted_run_proves_nothing_until_the_endpoint_answered_one() -> None:
    said: list[tuple[str, str]] = []
    guard = _guard(Api(known={"listed"}), said)
    assert guard.look_up("gone", None, listed=False).outcome is Outcome.UNKNOWN
    assert guard.look_up("listed", None, listed=True).outcome is Outcome.FOUND
    assert guard.support is Support.SUPPORTED
    assert guard.look_up("gone", None, listed=False).outcome is Outcome.GONE
    assert said == [("lookups", "supported")]


@pytest.mark.parametrize("refusal", [None, 400, 405, 410, 501])
def test_two_listed_runs_refused_show_the_endpoint_absent(refusal: int | None) -> None:
    said: list[tuple[str, str]] = []
    guard = _guard(Api(refuse=refusal), said)
    assert guard.look_up("a", None, listed=True).outcome is Outcome.SUSPECT
    assert guard.support is Support.UNVERIFIED  # one may have been deleted under the lookup
    assert guard.look_up("b", None, listed=True).outcome is Outcome.UNSUPPORTED
    assert guard.support.value == "unsupported"
    assert not guard.usable
    assert said == [("lookups", "unsupported")]


def test_a_listed_run_refused_then_another_answered_is_a_deletion_not_an_absent_endpoint() -> None:
    guard = _guard(Api(known={"b"}), [])
    assert guard.look_up("a", None, listed=True).outcome is Outcome.SUSPECT
    assert guard.look_up("b", None, listed=True).outcome is Outcome.FOUND
    assert guard.support is Support.SUPPORTED


def test_an_answer_about_another_run_is_a_wrong_endpoint() -> None:
    api = Api(known={"a"})
    api.answer_as = "somebody-else"
    guard = _guard(api, [])
    assert guard.look_up("a", None, listed=False).outcome is Outcome.UNSUPPORTED


def test_errors_that_say_nothing_about_the_path_propagate_and_decide_nothing() -> None:
    guard = _guard(Api(refuse=503), [])
    with pytest.raises(HttpStatusError):
        guard.look_up("a", None, listed=True)
    assert guard.support is Support.UNVERIFIED


def test_an_unsupported_endpoint_is_tried_again_after_a_while() -> None:
    clock = [0.0]
    guard = _guard(Api(), [], clock)
    guard.look_up("a", None, listed=True)
    guard.confirm_suspicion()  # no other listed run to ask about
    assert guard.support is Support.UNSUPPORTED
    assert not guard.usable
    clock[0] = 3600.0
    assert guard.usable
    guard.retry_now()
    assert guard.usable


# The audit walk ---------------------------------------------------------------------------------


def _scan(runs: int, per_page: int, spent: list[int], fail_at: int | None = None) -> Iterator[Run]:
    for index in range(runs):
        if index % per_page == 0:
            if fail_at is not None and index >= fail_at:
                raise TransportError("s", "list_runs", "connection reset")
            spent[0] += 1  # one request a page
        yield make_run(f"r{index}", status=RunStatus.SUCCEEDED, created=-index, finished=1)


def test_the_audit_walk_is_due_an_interval_after_the_first_cycle_and_resumes_where_it_stopped() -> (
    None
):
    walk = AuditWalk(timedelta(minutes=10), requests_per_cycle=2)
    assert not walk.due(at(0))  # the first cycle read its backfill window itself
    assert not walk.due(at(300))
    assert walk.due(at(600))
    spent = [0]
    read: list[str] = []
    cycles = 0
    while True:
        cycles += 1
        start = spent[0]

        def used(start: int = start) -> int:
            return spent[0] - start

        step = walk.step(at(600 + cycles), at(-3600), lambda _floor: _scan(23, 5, spent), used)
        read.extend(run.id for run in step.runs)
        assert spent[0] - start <= 2 + 1  # its budget, plus the page it was reading
        if step.completed:
            break
        assert walk.due(at(600 + cycles))  # under way: resumed next cycle
    assert read == [f"r{i}" for i in range(23)]  # each run once, in list order
    assert cycles == 3
    assert not walk.due(at(1200))
    assert walk.due(at(1201))  # an interval after the last walk began


def test_an_audit_walk_that_fails_is_dropped_and_begins_again() -> None:
    walk = AuditWalk(timedelta(minutes=10), requests_per_cycle=100)
    walk.due(at(0))
    spent = [0]
    step = walk.step(at(600), at(-3600), lambda _f: _scan(20, 5, spent, fail_at=10), lambda: 0)
    assert step.failure is not None
    assert [run.id for run in step.runs] == [f"r{i}" for i in range(10)]
    assert not walk.walking


def test_an_audit_interval_of_zero_turns_the_walk_off() -> None:
    walk = AuditWalk(timedelta(0), requests_per_cycle=5)
    assert not walk.due(at(0))
    assert not walk.due(at(10**6))


# Following active runs through the list -----------------------------------------------------------


def test_following_active_runs_reads_down_to_them_within_a_page_budget() -> None:
    floor = at(0)
    actives = [at(-600), at(-60)]
    window = at(-3600)
    # No density known yet: down to the oldest within the window.
    assert follow_floor(floor, actives, density=None, page_size=10, window_start=window) == at(-600)
    # One run a second, ten a page: 60 pages to reach it; at most 20 are read.
    deeper = follow_floor(floor, actives, density=1.0, page_size=10, window_start=window)
    assert deeper == at(-200)
    # Runs older than the window are left to the audit walk.
    assert follow_floor(floor, [at(-7200)], density=1.0, page_size=10, window_start=window) == floor
