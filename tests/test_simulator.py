"""The simulators themselves, over real HTTP on 127.0.0.1: auth, paging, page shifting, faults,
control endpoints and ground truth. The world is driven explicitly; nothing waits on wall time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from exporter.model import RunStatus
from exporter.simulator import SIMULATORS, GroundTruth, SimulatorServer, World
from exporter.simulator.noxus import NoxusSimulator
from exporter.simulator.plextera import PlexteraSimulator

JSON = dict[str, Any]


@dataclass(frozen=True)
class Wire:
    """What a test needs to know about one provider's list endpoint."""

    list_path: str
    items_key: str
    created_key: str
    auth: Callable[[str], dict[str, str]]
    error_code: Callable[[JSON], str | None]


WIRES = {
    "plextera": Wire(
        "/workflow-runs",
        "data",
        "createdAt",
        lambda key: {"Authorization": f"api-key {key}"},
        lambda run: run["error"]["code"] if run["error"] else None,
    ),
    "noxus": Wire(
        "/v1/runs", "items", "created_at", lambda key: {"X-API-Key": key}, lambda run: None
    ),
}


@pytest.fixture
def start() -> Iterator[Callable[..., SimulatorServer]]:
    started: list[SimulatorServer] = []

    def make(provider: str, **kwargs: Any) -> SimulatorServer:
        # No spontaneous arrivals: a test's world changes only when the test says so.
        kwargs.setdefault("arrival_rate_per_min", 0)
        sim = SIMULATORS[provider](**kwargs).start()
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
        if status.terminal:
            truth.finished[key] += 1
        else:
            truth.active[key] += 1
        if status is RunStatus.FAILED:
            code = WIRES[sim.provider].error_code(run) or "unspecified"
            truth.errors[(run["workflow"]["name"], code)] += 1
    return truth


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
