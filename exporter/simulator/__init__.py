"""Real HTTP servers on loopback that speak each provider's API, for the demo, tests and benchmarks.

`SIMULATORS` maps a provider name to its simulator class: every module in this package that
defines a `SimulatorServer` subclass with a `provider` attribute.
"""

from __future__ import annotations

import importlib
import pkgutil

from exporter.simulator.server import FaultPlan, Request, Response, SimulatorServer
from exporter.simulator.world import GroundTruth, SimRun, Vocabulary, World

__all__ = [
    "SIMULATORS",
    "FaultPlan",
    "GroundTruth",
    "Request",
    "Response",
    "SimRun",
    "SimulatorServer",
    "Vocabulary",
    "World",
]


def _discover() -> dict[str, type[SimulatorServer]]:
    found: dict[str, type[SimulatorServer]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name in ("server", "world"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, SimulatorServer)
                and value is not SimulatorServer
                and "provider" in vars(value)
            ):
                found[value.provider] = value
    return dict(sorted(found.items()))


SIMULATORS: dict[str, type[SimulatorServer]] = _discover()
