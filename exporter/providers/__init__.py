"""The provider registry: every module in this package that defines a `Provider` subclass.

Adding a provider is adding one module here; nothing else needs to list it. The package also
holds what every provider shares: paging walks, sanitising, wire types and the outgoing API client
(`client`). It may import only the model and the plumbing of `core`, never `prometheus_client`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from exporter.core.plugins import discover
from exporter.providers.base import Provider, ProviderEvents, SourceSettings

__all__ = ["Provider", "ProviderEvents", "SourceSettings", "registry"]


@cache
def registry() -> dict[str, type[Provider[Any]]]:
    found: dict[str, type[Provider[Any]]] = discover(__name__, __path__, Provider, "name")
    return found
