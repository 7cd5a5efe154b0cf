"""The simulators themselves, over real HTTP on 127.0.0.1: auth, paging, page shifting, faults,
control endpoints and ground truth. The world is driven explicitly; nothing waits on wall time."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from exporter.core.model import RunStatus, StepStatus
from exporter.simulator import SIMULATORS, GroundTruth, SimulatorServer, World
from exporter.simulator.noxus import NoxusSimulator
from exporter.simulator.plextera import PlexteraSimulator
from exporter.simulator.variant import ApiVariant
from tests.loopback import EXPORTER, free_port, stop, wait_for

JSON = dict[str, Any]


@dataclass(frozen=True)
class Wire:
    """What a test needs to know about one provider's list endpoint."""

    list_path: str
    items_key: str
    created_key: str
    finished_key: str
    auth: Callable[[str], dict[str, str]]
    error_code: Callable[[JSON], str | None]


WIRES = {
    "plextera": Wire(
        "/workflow-runs",
        "data",
        "createdAt",
        "completedAt",
        lambda key: {"Authorization": f"api-key {key}"},
        lambda run: run["error"]["code"] if run["error"] else None,
    ),
    "noxus": Wire(
        "/v1/runs",
        "items",
        "created_at",
        "finished_at",
        lambda key: {"X-API-Key": key},
        lambda run: None,
    ),
}


@pytest.fixture
def start() -> Iterator[Callable[..., SimulatorServer]]:
    started: list[SimulatorServer] = []

    def make(provider: str, variant: str | None = None, **kwargs: Any) -> SimulatorServer:
        # No spontaneous arrivals: a test's world changes only when the test says so.
        kwargs.setdefault("arrival_rate_per_min", 0)
        sim_cls = SIMULATORS[provider]
        if variant is not None:
            kwargs["variant"] = sim_cls.variants[variant]
        sim = sim_cls(**kwargs).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


def client(sim: SimulatorServer, **kwargs: Any) -> httpx.Client:
    headers = WIRES[sim.provider].auth(sim.api_key)
    return httpx.Client(base_url=sim.base_url, headers=headers, **kwargs)


def get_page(sim: SimulatorServer, page: int, size: int) -> list[JSON]:
    wire = WIRES[sim.provider]
    with client(sim) as http:
        response = http.get(wire.list_path, params={"page": page, "size": size})
    response.raise_for_status()
    items: list[JSON] = response.json()[wire.items_key]
    return items


def list_all(sim: SimulatorServer, size: int) -> list[JSON]:
    runs: list[JSON] = []
    for page in range(1, 1000):
        items = get_page(sim, page, size)
        if not items:
            return runs
        runs.extend(items)
    raise AssertionError("the list never ended")


def test_registry_finds_every_provider_module() -> None:
    assert SIMULATORS["plextera"] is PlexteraSimulator
    assert SIMULATORS["noxus"] is NoxusSimulator


@pytest.mark.parametrize("provider", ["plextera", "noxus"])
def test_a_wrong_key_gets_401_with_the_providers_error_body(
    provider: str, start: Callable[..., SimulatorServer]
) -> None:
    sim = start(provider, api_key="right-key")
    wire = WIRES[provider]
    with httpx.Client(base_url=sim.base_url) as http:
        assert http.get(wire.list_path, headers=wire.auth("right-key")).status_code == 200
        wrong = http.get(wire.list_path, headers=wire.auth("wrong-key"))
        missing = http.get(wire.list_path)
    assert wrong.status_code == missing.status_code == 401
    body = wrong.json()
    if provider == "plextera":
        assert body["error"]["code"] == "UNAUTHORIZED"
        assert body["error"]["retryable"] is False
    else:
        assert body == {"detail": "Invalid API key"}


def test_plextera_needs_the_api_key_prefix_and_echoes_the_request_id(
    start: Callable[..., SimulatorServer],
) -> None:
    sim = start("plextera", api_key="k1")
    with httpx.Client(base_url=sim.base_url) as http:
        bare = http.get("/workflow-runs", headers={"Authorization": "k1", "X-Request-Id": "abc"})
        fresh = http.get("/workflow-runs", headers={"Authorization": "api-key k1"})
    assert bare.status_code == 401
    assert bare.headers["X-Request-Id"] == bare.json()["error"]["requestId"] == "abc"
    assert fresh.status_code == 200
    assert fresh.headers["X-Request-Id"]


@pytest.mark.parametrize("provider", ["plextera", "noxus"])
def test_paging_a_static_world_lists_every_run_once_newest_first(
    provider: str, start: Callable[..., SimulatorServer]
) -> None:
    sim = start(provider, seed=1)
    sim.world.add_runs(20)
    sim.world.advance(120)
    sim.world.add_runs(25)  # newer, with equal createdAt among themselves: ties broken by id

    listed = list_all(sim, size=10)

    ids = [run["id"] for run in listed]
    assert ids == [run.id for run in sim.world.runs_newest_first()]
    assert len(set(ids)) == len(ids) == 45
    created = [run[WIRES[provider].created_key] for run in listed]
    assert created == sorted(created, reverse=True)


def test_plextera_caps_the_page_size_and_answers_past_the_end_with_an_empty_page(
    start: Callable[..., SimulatorServer],
) -> None:
    sim = start("plextera")
    sim.world.add_runs(130)
    with client(sim) as http:
        capped = http.get("/workflow-runs", params={"page": 1, "size": 500}).json()
        beyond = http.get("/workflow-runs", params={"page": 9, "size": 20}).json()
        bad = http.get("/workflow-runs", params={"page": 0})
    assert len(capped["data"]) == 100
    assert capped["pageInfo"] == {"page": 1, "size": 100, "totalItems": 130, "totalPages": 2}
    assert beyond["data"] == []
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "INVALID_REQUEST"


def test_plextera_filters_by_status_and_workflow_and_serves_details(
    start: Callable[..., SimulatorServer],
) -> None:
    sim = start("plextera")
    runs = sim.world.add_runs(12)
    sim.world.finish(runs[0].id, "FAILED", error_code="UNSUPPORTED_DOCUMENT")
    workflow = runs[1].workflow
    with client(sim) as http:
        failed = http.get("/workflow-runs", params={"status": "FAILED"}).json()["data"]
        of_one = http.get("/workflow-runs", params={"workflowId": workflow.id}).json()["data"]
        detail = http.get(f"/workflow-runs/{runs[0].id}")
        missing = http.get("/workflow-runs/no-such-run")
    assert [r["id"] for r in failed] == [runs[0].id]
    assert {r["workflow"]["id"] for r in of_one} == {workflow.id}
    assert detail.json()["error"]["code"] == "UNSUPPORTED_DOCUMENT"
    assert detail.json()["completedAt"].endswith("Z")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOT_FOUND"


def test_noxus_rejects_an_out_of_range_size_the_fastapi_way_and_lists_workflows(
    start: Callable[..., SimulatorServer],
) -> None:
    sim = start("noxus", workflows=3)
    runs = sim.world.add_runs(4)
    workflow = runs[0].workflow
    with client(sim) as http:
        too_big = http.get("/v1/runs", params={"size": 101})
        workflows = http.get("/v1/workflows").json()
        of_one = http.get(f"/v1/workflows/{workflow.id}/runs").json()
        missing = http.get("/v1/runs/no-such-run")
    assert too_big.status_code == 422
    assert too_big.json()["detail"][0]["loc"] == ["query", "size"]
    assert workflows["total"] == 3
    assert {w["type"] for w in workflows["items"]} == {"flow"}
    assert {r["workflow_id"] for r in of_one["items"]} == {workflow.id}
    assert of_one["size"] == 50
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Run not found"}


@pytest.mark.parametrize("provider", ["plextera", "noxus"])
def test_an_arrival_during_paging_repeats_an_item_on_the_next_page(
    provider: str, start: Callable[..., SimulatorServer]
) -> None:
    sim = start(provider)
    sim.world.add_runs(30)
    sim.arrivals_per_list_request = 1

    first, second = get_page(sim, 1, 10), get_page(sim, 2, 10)

    assert second[0]["id"] == first[-1]["id"]
    assert sim.world.truth().runs == 32


def test_deletions_during_paging_remove_unfinished_runs(
    start: Callable[..., SimulatorServer],
) -> None:
    sim = start("noxus")
    sim.world.add_runs(10)
    sim.deletions_per_list_request = 2
    get_page(sim, 1, 10)
    assert sim.world.truth().runs == 8


FAULTS: list[tuple[str, dict[str, Any], type[Exception] | None]] = [
    ("status", {"code": 503, "retry_after": 7}, None),
    ("delay", {"seconds": 0.5}, httpx.ReadTimeout),
    ("malformed_json", {}, ValueError),
    ("truncated", {}, ValueError),
    ("reset", {}, httpx.TransportError),
]


@pytest.mark.parametrize(("kind", "params", "raised"), FAULTS, ids=[f[0] for f in FAULTS])
@pytest.mark.parametrize("provider", ["plextera", "noxus"])
def test_a_fault_hits_exactly_one_request_and_is_counted(
    provider: str,
    kind: str,
    params: dict[str, Any],
    raised: type[Exception] | None,
    start: Callable[..., SimulatorServer],
) -> None:
    sim = start(provider)
    sim.world.add_runs(3)
    sim.faults.inject(kind, count=1, **params)
    path = WIRES[provider].list_path
    with client(sim, timeout=0.2) as http:
        if raised is None:
            response = http.get(path)
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "7"
        else:
            with pytest.raises(raised):
                http.get(path).json()
        assert len(http.get(path).json()[WIRES[provider].items_key]) == 3
    assert sim.faults.injected == Counter({kind: 1})


@pytest.mark.parametrize("provider", ["plextera", "noxus"])
def test_a_bad_record_breaks_one_item_of_the_next_list_response_only(
    provider: str, start: Callable[..., SimulatorServer]
) -> None:
    sim = start(provider)
    sim.world.add_runs(6)
    good = {run["id"]: run for run in get_page(sim, 1, 10)}
    sim.bad_record(1)

    broken, after = get_page(sim, 1, 10), get_page(sim, 1, 10)

    changed = [run for run in broken if good.get(run.get("id")) != run]
    assert len(changed) == 1
    assert len(broken) == 6
    assert after == list(good.values())


def test_unknown_status_is_listed_and_counted_as_unknown(
    start: Callable[..., SimulatorServer],
) -> None:
    sim = start("plextera")
    sim.world.add_runs(5)
    sim.unknown_status(2)
    statuses = Counter(run["status"] for run in list_all(sim, size=10))
    assert statuses["MYSTERY_STATE"] == 2
    assert sum(n for (_, s), n in sim.world.truth().active.items() if s == "unknown") == 2


def truth_from_listing(sim: SimulatorServer, runs: list[JSON]) -> GroundTruth:
    """What a perfect client would count from one full listing."""
    truth = GroundTruth(runs=len(runs))
    for run in runs:
        status = sim.vocabulary.canonical(run["status"])
        key = (run["workflow"]["name"], status.value)
        ended = status is RunStatus.UNKNOWN and run[WIRES[sim.provider].finished_key] is not None
        if status.terminal or ended:
            truth.finished[key] += 1
            _steps_from_listing(sim, run, status, truth)
        else:
            truth.active[key] += 1
        if status in (RunStatus.FAILED, RunStatus.REJECTED):
            code = WIRES[sim.provider].error_code(run) or "unspecified"
            truth.errors[(run["workflow"]["name"], code)] += 1
    return truth


def _steps_from_listing(
    sim: SimulatorServer, run: JSON, status: RunStatus, truth: GroundTruth
) -> None:
    """Plextera's list items carry their steps (the only listing here that does)."""
    steps = run.get("steps")
    for step in steps if isinstance(steps, list) else ():
        canonical = sim.vocabulary.step_table.get(step["status"], StepStatus.UNKNOWN)
        key = (run["workflow"]["name"], step["type"], canonical.value)
        truth.steps[key] += 1
        if status is RunStatus.FAILED:
            truth.failed_run_steps[key] += 1


@pytest.mark.parametrize("provider", ["plextera", "noxus"])
def test_truth_equals_what_the_api_lists_after_the_world_evolves(
    provider: str, start: Callable[..., SimulatorServer]
) -> None:
    sim = start(provider, seed=7, arrival_rate_per_min=4)
    sim.world.add_runs(40)
    sim.world.advance(1800)

    truth = sim.world.truth()

    assert truth_from_listing(sim, list_all(sim, size=100)) == truth
    assert truth.finished
    assert truth.active
    assert truth.errors
    with httpx.Client(base_url=sim.root_url) as http:
        assert http.get("/_sim/truth").json() == truth.as_json()


def test_noxus_runs_wait_for_human_feedback_and_then_finish(
    start: Callable[..., SimulatorServer],
) -> None:
    sim = start("noxus", seed=3)
    runs = sim.world.add_runs(60)
    seen: set[str] = set()
    for _ in range(40):
        sim.world.advance(300)
        seen.update(r.id for r in runs if r.native_status == "awaiting_human_feedback")
    assert seen
    assert all(sim.world.runs[run_id].finished_at is not None for run_id in seen)


def test_control_endpoints_drive_the_world_without_auth_and_are_not_logged(
    start: Callable[..., SimulatorServer],
) -> None:
    sim = start("plextera")
    with httpx.Client(base_url=sim.root_url) as http:
        added = http.post("/_sim/runs", json={"n": 3, "native_status": "FAILED"}).json()
        before = sim.world.now()
        http.post("/_sim/advance", json={"seconds": 60})
        http.post("/_sim/faults", json={"kind": "status", "code": 500, "count": 2})
        assert http.post("/_sim/faults", json={"kind": "nonsense"}).status_code == 400
    assert len(added["ids"]) == 3
    assert sim.world.truth().finished[(sim.world.runs[added["ids"][0]].workflow.name, "failed")]
    assert (sim.world.now() - before).total_seconds() == 60
    with client(sim) as http:
        assert [http.get("/workflow-runs").status_code for _ in range(3)] == [500, 500, 200]
    with httpx.Client(base_url=sim.root_url) as http:
        stats = http.get("/_sim/stats").json()
    assert stats["requests"] == {"GET /workflow-runs": 3}
    assert stats["faults"] == {"status": 2}
    assert len(sim.requests) == 3
    sim.clear_requests()
    assert sim.requests == []


def test_the_same_seed_builds_the_same_world_and_nothing_lies_in_the_future() -> None:
    def evolved() -> World:
        world = World(PlexteraSimulator.vocabulary, seed=5, start=datetime(2025, 1, 1, tzinfo=UTC))
        world.add_runs(20)
        world.advance(2400)
        return world

    one, two = evolved(), evolved()
    assert [(r.id, r.native_status, r.finished_at) for r in one.runs_newest_first()] == [
        (r.id, r.native_status, r.finished_at) for r in two.runs_newest_first()
    ]
    now = one.now()
    for run in one.runs_newest_first():
        stamps = [run.created_at, run.updated_at, run.started_at, run.finished_at]
        assert all(stamp <= now for stamp in stamps if stamp is not None)


def test_a_simulator_that_never_started_stops_at_once() -> None:
    PlexteraSimulator().stop()


# Variants: the answers the providers' docs leave open, each the way a real API might give it. ----

PAGED = ["plextera", "noxus", "cortex"]
CORTEX_APP = "app-sim"
REFUSED = {"plextera": 400, "noxus": 422, "cortex": 400}
RUN_TIMES = {
    "plextera": ("createdAt", "updatedAt", "startedAt", "completedAt"),
    "noxus": ("created_at", "started_at", "finished_at"),
    "cortex": ("created_at", "updated_at", "started_at", "ended_at"),
    "extend": ("createdAt", "updatedAt", "initialRunAt", "startTime", "endTime"),
}


@dataclass(frozen=True)
class Page:
    """One page of a page-numbered run list, with what the answer says about itself."""

    status: int
    items: list[JSON]
    page: int | None = None
    size: int | None = None
    total: int | None = None
    pages: int | None = None

    @property
    def ids(self) -> list[str]:
        return [item["id"] for item in self.items]


def cortex_client(sim: SimulatorServer) -> httpx.Client:
    headers = {"Authorization": f"Bearer {sim.api_key}"}
    return httpx.Client(base_url=f"{sim.base_url}/apps/{CORTEX_APP}", headers=headers)


def extend_client(sim: SimulatorServer) -> httpx.Client:
    headers = {"Authorization": f"Bearer {sim.api_key}", "x-extend-api-version": "2026-02-09"}
    return httpx.Client(base_url=sim.base_url, headers=headers)


def read_page(sim: SimulatorServer, page: int | None, size: int) -> Page:
    """A page of every run (Plextera, Noxus) or of the first workflow's runs (Cortex);
    `page` None: the page the API gives when none is asked for."""
    params: dict[str, int] = {} if page is None else {"page": page}
    if sim.provider == "cortex":
        with cortex_client(sim) as http:
            workflow = sim.world.workflows[0].id
            response = http.get(f"/workflows/{workflow}/runs", params={**params, "take": size})
        if response.status_code != 200:
            return Page(response.status_code, [])
        headers = response.headers
        return Page(
            200,
            response.json(),
            int(headers["pagination-page"]),
            int(headers["pagination-take"]),
            int(headers["pagination-count"]),
            int(headers["pagination-pages"]),
        )
    with client(sim) as http:
        response = http.get(WIRES[sim.provider].list_path, params={**params, "size": size})
    if response.status_code != 200:
        return Page(response.status_code, [])
    body = response.json()
    if sim.provider == "plextera":
        info = body["pageInfo"]
        return Page(
            200, body["data"], info["page"], info["size"], info["totalItems"], info["totalPages"]
        )
    return Page(200, body["items"], body["page"], body["size"], body["total"], body["pages"])


def read_every_page(sim: SimulatorServer, first: int, size: int) -> list[JSON]:
    runs: list[JSON] = []
    for page in range(first, first + 1000):
        items = read_page(sim, page, size).items
        if not items:
            return runs
        runs.extend(items)
    raise AssertionError("the list never ended")


def first_list_page(sim: SimulatorServer) -> list[JSON]:
    """Up to 100 runs from any provider's list, whatever its paging."""
    if sim.provider == "extend":
        with extend_client(sim) as http:
            data: list[JSON] = http.get("/workflow_runs", params={"maxPageSize": 100}).json()[
                "data"
            ]
        return data
    return read_page(sim, None, 100).items


def ascending_ids(sim: SimulatorServer) -> list[str]:
    return [run.id for run in sim.world.sorted_ascending("created")[0]]


def newest_ids(sim: SimulatorServer) -> list[str]:
    return [run.id for run in sim.world.runs_newest_first()]


def test_each_simulator_declares_the_variants_its_provider_might_answer_with() -> None:
    assert {provider: sorted(cls.variants) for provider, cls in SIMULATORS.items()} == {
        "plextera": sorted(
            [
                "oldest_first",
                "first_page_0",
                "page_zero_empty",
                "page_cap",
                "no_offset",
                "rejected",
                "oldest_first_capped",
                "nested_listed",
                "nested_unlisted",
                "control_char_ids",
                "lookups_absent",
                "clock_ahead",
                "totals_low",
                "totals_negative",
                "totals_absurd",
                "huge_numbers",
            ]
        ),
        "noxus": sorted(
            [
                "oldest_first",
                "first_page_0",
                "page_cap",
                "no_offset",
                "no_started_at",
                "oldest_first_capped",
                "control_char_ids",
                "lookups_absent",
                "lookups_refused",
                "clock_ahead",
                "totals_low",
                "totals_negative",
                "totals_absurd",
                "huge_numbers",
            ]
        ),
        "cortex": sorted(
            [
                "oldest_first",
                "first_page_0",
                "page_zero_empty",
                "page_cap",
                "date_only",
                "no_offset",
                "oldest_first_capped",
                "per_workflow_ids",
                "control_char_ids",
                "lookups_absent",
                "clock_ahead",
                "totals_low",
                "totals_negative",
                "totals_absurd",
                "huge_numbers",
            ]
        ),
        "extend": sorted(
            [
                "no_offset",
                "stale_updated_at",
                "control_char_ids",
                "lookups_absent",
                "lookups_refused",
                "clock_ahead",
                "cursor_cycle",
            ]
        ),
    }
    combined = SIMULATORS["plextera"].variants["oldest_first_capped"]
    assert combined == ApiVariant(order="oldest_first", page_cap=25, first_page=0)
    assert all(cls(arrival_rate_per_min=0).variant == ApiVariant() for cls in SIMULATORS.values())


@pytest.mark.parametrize("provider", PAGED)
def test_oldest_first_lists_every_run_once_in_ascending_creation_order(
    provider: str, start: Callable[..., SimulatorServer]
) -> None:
    sim = start(provider, "oldest_first", workflows=1)
    sim.world.add_runs(12)
    sim.world.advance(60)
    sim.world.add_runs(13)

    listed = read_every_page(sim, 1, 10)

    assert [run["id"] for run in listed] == ascending_ids(sim)
    assert len(listed) == 25
    created = [run[RUN_TIMES[provider][0]] for run in listed]
    assert created == sorted(created)


def test_oldest_first_holds_for_filtered_and_per_workflow_lists(
    start: Callable[..., SimulatorServer],
) -> None:
    plextera = start("plextera", "oldest_first")
    runs = plextera.world.add_runs(6)
    plextera.world.advance(60)
    runs += plextera.world.add_runs(6)
    failed = [runs[1].id, runs[4].id, runs[7].id, runs[10].id]
    for run_id in failed:
        plextera.world.finish(run_id, "FAILED")
    noxus = start("noxus", "oldest_first", workflows=2)
    noxus.world.add_runs(6)
    noxus.world.advance(60)
    noxus.world.add_runs(6)
    workflow = noxus.world.workflows[0]

    with client(plextera) as http:
        by_status = http.get("/workflow-runs", params={"status": "FAILED"}).json()["data"]
    with client(noxus) as http:
        of_one = http.get(f"/v1/workflows/{workflow.id}/runs").json()["items"]

    assert [run["id"] for run in by_status] == failed
    expected = [r.id for r in noxus.world.sorted_ascending("created")[0] if r.workflow == workflow]
    assert [run["id"] for run in of_one] == expected


@pytest.mark.parametrize("provider", PAGED)
def test_first_page_0_counts_pages_from_zero_and_refuses_negative_pages(
    provider: str, start: Callable[..., SimulatorServer]
) -> None:
    sim = start(provider, "first_page_0", workflows=1)
    sim.world.add_runs(15)

    first, second, unasked = read_page(sim, 0, 10), read_page(sim, 1, 10), read_page(sim, None, 10)

    assert (first.ids, first.page, first.total, first.pages) == (newest_ids(sim)[:10], 0, 15, 2)
    assert (second.ids, second.page) == (newest_ids(sim)[10:], 1)
    assert unasked == first
    assert read_page(sim, 2, 10).items == []
    assert read_page(sim, -1, 10).status == REFUSED[provider]


def test_the_page_numbering_of_a_variant_holds_for_workflow_lists_too(
    start: Callable[..., SimulatorServer],
) -> None:
    noxus = start("noxus", "first_page_0", workflows=3)
    cortex = start("cortex", "first_page_0", workflows=3)
    with client(noxus) as http:
        workflows = http.get("/v1/workflows", params={"page": 0}).json()
    with cortex_client(cortex) as http:
        listed = http.get("/workflows", params={"page": 0})
    assert (workflows["page"], len(workflows["items"])) == (0, 3)
    assert listed.headers["pagination-page"] == "0"
    assert len(listed.json()) == 5  # with the disabled and the deleted one


def test_page_zero_answers_as_each_simulator_usually_does(
    start: Callable[..., SimulatorServer],
) -> None:
    for provider in ("plextera", "noxus"):
        sim = start(provider)
        sim.world.add_runs(3)
        assert read_page(sim, 0, 10).status == REFUSED[provider]
    cortex = start("cortex", workflows=1)
    cortex.world.add_runs(3)
    zero = read_page(cortex, 0, 10)
    assert (zero.page, zero.ids) == (1, newest_ids(cortex))


@pytest.mark.parametrize("provider", ["plextera", "cortex"])
def test_page_zero_empty_answers_page_zero_with_nothing_and_true_totals(
    provider: str, start: Callable[..., SimulatorServer]
) -> None:
    sim = start(provider, "page_zero_empty", workflows=1)
    sim.world.add_runs(15)

    zero, one = read_page(sim, 0, 10), read_page(sim, 1, 10)

    assert (zero.status, zero.items, zero.page, zero.total, zero.pages) == (200, [], 0, 15, 2)
    assert (one.ids, one.page) == (newest_ids(sim)[:10], 1)
    assert read_page(sim, None, 10) == one
    assert read_page(sim, -1, 10).status == 400


@pytest.mark.parametrize("provider", PAGED)
def test_page_cap_serves_25_items_while_echoing_the_size_asked_for(
    provider: str, start: Callable[..., SimulatorServer]
) -> None:
    sim = start(provider, "page_cap", workflows=1)
    sim.world.add_runs(60)

    first, third = read_page(sim, 1, 100), read_page(sim, 3, 100)

    assert (len(first.items), first.size, first.total, first.pages) == (25, 100, 60, 3)
    assert first.ids == newest_ids(sim)[:25]
    assert third.ids == newest_ids(sim)[50:]
    assert [run["id"] for run in read_every_page(sim, 1, 100)] == newest_ids(sim)
    small = read_page(sim, 1, 10)  # below the cap nothing changes
    assert (len(small.items), small.size, small.pages) == (10, 10, 6)


@pytest.mark.parametrize("provider", PAGED)
def test_oldest_first_capped_pages_from_zero_oldest_first_25_at_a_time(
    provider: str, start: Callable[..., SimulatorServer]
) -> None:
    sim = start(provider, "oldest_first_capped", workflows=1)
    sim.world.add_runs(30)
    sim.world.advance(60)
    sim.world.add_runs(30)
    ascending = ascending_ids(sim)

    pages = [read_page(sim, n, 100) for n in range(3)]

    assert [page.ids for page in pages] == [ascending[:25], ascending[25:50], ascending[50:]]
    assert {(p.page, p.size, p.total, p.pages) for p in pages} == {
        (0, 100, 60, 3),
        (1, 100, 60, 3),
        (2, 100, 60, 3),
    }
    assert read_page(sim, 3, 100).items == []


@pytest.mark.parametrize("provider", ["plextera", "noxus", "cortex", "extend"])
def test_no_offset_renders_every_run_time_in_utc_without_z_or_offset(
    provider: str, start: Callable[..., SimulatorServer]
) -> None:
    sim = start(provider, "no_offset", workflows=1, enforce_rate_limit=False)
    sim.world.add_runs(10)
    sim.world.advance(3600)

    listed = first_list_page(sim)

    assert len(listed) == 10
    finished = 0
    for item in listed:
        run = sim.world.runs[item["id"]]
        finished += run.finished_at is not None
        for key in RUN_TIMES[provider]:
            if item[key] is None:
                continue
            assert not item[key].endswith("Z"), item[key]
            assert "+" not in item[key], item[key]
            assert datetime.fromisoformat(item[key]).tzinfo is None
        created = datetime.fromisoformat(item[RUN_TIMES[provider][0]])
        assert created == run.created_at.replace(tzinfo=None)
    assert finished


def test_cortex_date_only_renders_bare_dates_and_keeps_step_times_in_epoch_ms(
    start: Callable[..., SimulatorServer],
) -> None:
    sim = start("cortex", "date_only", workflows=1)
    sim.world.add_runs(10)
    sim.world.advance(3600)

    listed = first_list_page(sim)
    with cortex_client(sim) as http:
        run_id = listed[0]["id"]
        detail = http.get(f"/workflows/{sim.world.workflows[0].id}/runs/{run_id}").json()

    for item in [*listed, detail]:
        run = sim.world.runs[item["id"]]
        stamps = {
            "created_at": run.created_at,
            "updated_at": run.updated_at,
            "started_at": run.started_at,
            "ended_at": run.finished_at,
        }
        for key, value in stamps.items():
            assert item[key] == (None if value is None else value.date().isoformat())
            assert item[key] is None or len(item[key]) == 10
    step_starts = [step["start"] for item in listed for step in item["output"].values()]
    assert any(isinstance(start_ms, int) for start_ms in step_starts)


def test_noxus_without_started_at_sends_no_such_key(start: Callable[..., SimulatorServer]) -> None:
    sim = start("noxus", "no_started_at")
    sim.world.add_runs(5)
    sim.world.advance(600)

    listed = first_list_page(sim)
    with client(sim) as http:
        detail = http.get(f"/v1/runs/{listed[0]['id']}").json()

    assert any(run.started_at is not None for run in sim.world.runs.values())
    assert all("started_at" not in item for item in [*listed, detail])
    assert all("created_at" in item and "finished_at" in item for item in [*listed, detail])


def test_plextera_rejected_runs_carry_an_error_code_and_count_as_errors(
    start: Callable[..., SimulatorServer],
) -> None:
    sim = start("plextera", "rejected", seed=7)
    sim.world.add_runs(200)
    sim.world.advance(7200)

    listed = list_all(sim, size=100)
    truth = sim.world.truth()

    rejected = [run for run in listed if run["status"] == "REJECTED"]
    assert rejected
    assert all(run["error"]["code"] and run["error"]["message"] for run in rejected)
    assert sim.vocabulary.canonical("REJECTED") is RunStatus.REJECTED
    assert sum(n for (_, s), n in truth.finished.items() if s == "rejected") == len(rejected)
    errored = [run for run in listed if run["status"] in ("FAILED", "REJECTED")]
    assert truth.errors == Counter((r["workflow"]["name"], r["error"]["code"]) for r in errored)
    assert truth_from_listing(sim, listed) == truth

    run = sim.world.add_runs(1)[0]
    sim.world.finish(run.id, "REJECTED", error_code="UNSUPPORTED_DOCUMENT")
    with client(sim) as http:
        detail = http.get(f"/workflow-runs/{run.id}").json()
    assert detail["error"]["code"] == "UNSUPPORTED_DOCUMENT"


def test_plextera_rejects_nothing_unless_the_variant_says_so(
    start: Callable[..., SimulatorServer],
) -> None:
    sim = start("plextera", seed=7)
    sim.world.add_runs(200)
    sim.world.advance(7200)
    assert sim.vocabulary is PlexteraSimulator.vocabulary
    assert "REJECTED" not in sim.vocabulary.table
    assert {run.native_status for run in sim.world.runs.values()} <= set(sim.vocabulary.table)


def test_extend_stale_updated_at_keeps_updated_at_at_creation_in_rendering_and_order(
    start: Callable[..., SimulatorServer],
) -> None:
    stale = start("extend", "stale_updated_at", enforce_rate_limit=False)
    usual = start("extend", enforce_rate_limit=False)
    changed = []
    for sim in (stale, usual):
        old = sim.world.add_runs(4)
        sim.world.advance(60)
        sim.world.add_runs(4)
        sim.world.advance(60)
        changed.append(sim.world.finish(old[0].id, "FAILED"))  # an old run changes last

    def listing(sim: SimulatorServer) -> list[JSON]:
        runs: list[JSON] = []
        params: dict[str, Any] = {"maxPageSize": 3}
        with extend_client(sim) as http:
            while True:
                body = http.get("/workflow_runs", params=params).json()
                runs.extend(body["data"])
                if "nextPageToken" not in body:
                    return runs
                params["nextPageToken"] = body["nextPageToken"]

    run = changed[0]
    with extend_client(stale) as http:
        detail = http.get(f"/workflow_runs/{run.id}").json()
    listed = listing(stale)

    assert run.updated_at > run.created_at  # the world did change it
    assert detail["status"] == "FAILED"
    assert all(item["updatedAt"] == item["createdAt"] for item in [*listed, detail])
    # The change does not bring the run forward: it stays where its creation puts it.
    assert [item["id"] for item in listed] == newest_ids(stale)
    usual_ids = [item["id"] for item in listing(usual)]
    assert usual_ids == [r.id for r in usual.world.runs_by_update()] != newest_ids(usual)


def test_a_run_in_an_unknown_status_that_has_ended_counts_as_finished(
    start: Callable[..., SimulatorServer],
) -> None:
    sim = start("plextera")
    runs = sim.world.add_runs(3)
    sim.world.finish(runs[0].id, "COMPLETED")
    ended = sim.world.runs[runs[0].id]
    ended.native_status = "MYSTERY_STATE"
    sim.world.touch()
    workflow = ended.workflow.name

    truth = sim.world.truth()

    assert truth.finished[(workflow, "unknown")] == 1
    assert sum(n for (_, s), n in truth.active.items() if s == "unknown") == 0
    assert truth_from_listing(sim, list_all(sim, size=10)) == truth
    sim.world.delete(ended.id)  # it finished: the truth keeps counting it
    assert sim.world.truth().finished[(workflow, "unknown")] == 1


def test_extend_rejected_runs_count_as_errors_without_a_code(
    start: Callable[..., SimulatorServer],
) -> None:
    sim = start("extend", enforce_rate_limit=False)
    runs = sim.world.add_runs(3)
    sim.world.finish(runs[0].id, "REJECTED")
    sim.world.finish(runs[1].id, "FAILED", error_code="TIMEOUT")

    errors = sim.world.truth().errors

    assert sim.world.runs[runs[0].id].error_code is None
    assert errors == Counter(
        {(runs[0].workflow.name, "unspecified"): 1, (runs[1].workflow.name, "TIMEOUT"): 1}
    )


def test_cortex_lists_a_workflow_added_later_with_its_runs_and_count(
    start: Callable[..., SimulatorServer],
) -> None:
    sim = start("cortex", workflows=2)
    sim.world.add_runs(4)
    with httpx.Client(base_url=sim.root_url) as http:
        added = http.post("/_sim/workflows", json={"name": "Late intake"}).json()
    late = sim.world.add_runs(3, workflow="Late intake")

    with cortex_client(sim) as http:
        workflows = http.get("/workflows", params={"take": 100}).json()
        runs = http.get(f"/workflows/{added['id']}/runs").json()

    assert {run.workflow.id for run in late} == {added["id"]}
    counts = {w["id"]: w["runs_count"] for w in workflows if "runs_count" in w}
    assert counts[added["id"]] == 3
    assert sum(counts.values()) == 7
    assert sorted(run["id"] for run in runs) == sorted(run.id for run in late)


def test_simulate_serves_the_variant_named_on_the_command_line(
    processes: list[subprocess.Popen[str]],
) -> None:
    port = free_port()
    command = [*EXPORTER, "simulate", "--provider", "cortex", "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--api-key", "k-1234", "--variant", "date_only"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    processes.append(proc)
    headers = {"Authorization": "Bearer k-1234"}
    base = f"http://127.0.0.1:{port}/apps/{CORTEX_APP}/workflows"
    workflows = wait_for(base, lambda r: r.status_code == 200, timeout=10, headers=headers)
    workflow = workflows.json()[0]["id"]
    runs = httpx.get(f"{base}/{workflow}/runs", headers=headers).json()
    assert runs
    assert all(len(run["created_at"]) == 10 for run in runs)
    code, _ = stop(proc)
    assert code == 0

    refused = subprocess.run(
        [*EXPORTER, "simulate", "--provider", "extend", "--variant", "date_only"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "no_offset, stale_updated_at" in refused.stderr


@pytest.mark.parametrize(
    ("variant", "items", "pages"),
    [("totals_low", 0, 0), ("totals_negative", -1, -1), ("totals_absurd", 10**18, 10**18)],
)
@pytest.mark.parametrize("provider", PAGED)
def test_lying_totals_leave_the_items_true(
    provider: str, variant: str, items: int, pages: int, start: Callable[..., SimulatorServer]
) -> None:
    sim = start(provider, variant, workflows=1)
    sim.world.add_runs(25)
    first = sim.first_page

    page = read_page(sim, first, 10)

    assert (page.total, page.pages) == (items, pages)
    listed = read_every_page(sim, first, 10)
    assert sorted(run["id"] for run in listed) == sorted(ascending_ids(sim))


def test_a_cycling_extend_cursor_wraps_to_the_first_pages_token_after_every_run() -> None:
    with SIMULATORS["extend"](
        variant=SIMULATORS["extend"].variants["cursor_cycle"], arrival_rate_per_min=0
    ) as sim:
        sim.world.add_runs(25)
        seen: list[str] = []
        tokens: list[str] = []
        with extend_client(sim) as http:
            params: dict[str, str | int] = {"maxPageSize": 10}
            for _ in range(5):
                body = http.get("/workflow_runs", params=params).json()
                seen += [run["id"] for run in body["data"]]
                tokens.append(body["nextPageToken"])
                params["nextPageToken"] = body["nextPageToken"]
        # Three pages hold every run once; the third leads back to the second page.
        assert sorted(seen[:25]) == sorted(newest_ids(sim))
        assert tokens[2] == tokens[0]
        assert seen[25:35] == seen[10:20]


@pytest.mark.parametrize("provider", PAGED)
def test_huge_numbers_put_absurd_values_in_numeric_fields_and_page_numbers(
    provider: str, start: Callable[..., SimulatorServer]
) -> None:
    sim = start(provider, "huge_numbers", workflows=1)
    sim.world.add_runs(30)
    sim.world.advance(900)
    if provider == "cortex":
        with cortex_client(sim) as http:
            response = http.get(f"/workflows/{sim.world.workflows[0].id}/runs")
        assert response.headers["pagination-count"] == "1e400"
        values = [run["started_at"] for run in response.json()]
    else:
        with client(sim) as http:
            body = http.get(WIRES[provider].list_path, params={"size": 100}).json()
        info = body.get("pageInfo", body)
        assert info.get("totalPages", info.get("pages")) == 10**400
        runs = body.get("data", body.get("items"))
        values = [
            run["progress"]["stepsCompleted"] if provider == "plextera" else run["progress"]
            for run in runs
        ]
    shown = {repr(v) for v in values}
    assert {repr(10**400), "-7", "nan", "'NaN'", "inf", "'Infinity'"} <= shown, shown
