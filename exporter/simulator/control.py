"""The simulator's test tooling under `/_sim/`: truth, stats, clock, faults, runs, workflows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from exporter.simulator.exchange import Response

if TYPE_CHECKING:
    from exporter.simulator.server import SimulatorServer


def answer_control(sim: SimulatorServer, method: str, path: str, payload: Any) -> Response:
    """Test tooling on loopback: no auth, no faults, not in the request log."""
    try:
        return _route(sim, method, path, payload if isinstance(payload, dict) else {})
    except (KeyError, TypeError, ValueError) as exc:
        # A malformed control request is the caller's bug: say so instead of hanging up.
        return Response(400, {"detail": f"bad control request: {exc!r}"})


def _route(sim: SimulatorServer, method: str, path: str, payload: dict[str, Any]) -> Response:
    if method == "GET" and path == "/_sim/truth":
        return Response(body=sim.world.truth().as_json())
    if method == "GET" and path == "/_sim/stats":
        return Response(body=sim.stats())
    if method == "POST" and path == "/_sim/advance":
        sim.world.advance(float(payload.get("seconds", 1)))
        return Response(body={"now": sim.world.now().isoformat()})
    if method == "POST" and path == "/_sim/faults":
        params = dict(payload)
        kind = params.pop("kind")
        count = int(params.pop("count", 1))
        if kind == "unknown_status":
            sim.unknown_status(count)
        elif kind == "bad_record":
            sim.bad_record(count)
        else:
            sim.faults.inject(kind, count, **params)
        return Response(body={"pending": sim.faults.pending})
    if method == "POST" and path == "/_sim/runs":
        runs = sim.world.add_runs(
            int(payload.get("n", 1)),
            workflow=payload.get("workflow"),
            native_status=payload.get("native_status"),
        )
        return Response(body={"ids": [r.id for r in runs]})
    if method == "POST" and path == "/_sim/workflows":
        workflow = sim.world.add_workflow(str(payload["name"]))
        return Response(body={"id": workflow.id, "name": workflow.name})
    return Response(404, {"detail": "unknown control endpoint"})
