"""Real HTTP servers on loopback that speak each provider's API, for the demo, tests and benchmarks.

`SIMULATORS` maps a provider name to its simulator class: every module in this package that
defines a `SimulatorServer` subclass with a `provider` attribute. It may import only the model and
the plugin finder of `core`: a simulator speaks the API from its own world, never through the
exporter's providers.
"""

from __future__ import annotations

from exporter.core.plugins import discover
from exporter.simulator.exchange import Request, Response
from exporter.simulator.faults import FaultPlan
from exporter.simulator.records import SimRun, Vocabulary
from exporter.simulator.server import SimulatorServer
from exporter.simulator.truth import GroundTruth
from exporter.simulator.variant import ApiVariant
from exporter.simulator.world import World

__all__ = [
    "SIMULATORS",
    "ApiVariant",
    "FaultPlan",
    "GroundTruth",
    "Request",
    "Response",
    "SimRun",
    "SimulatorServer",
    "Vocabulary",
    "World",
]


SIMULATORS: dict[str, type[SimulatorServer]] = discover(
    __name__, __path__, SimulatorServer, "provider"
)
