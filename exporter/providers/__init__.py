"""The provider registry: every module in this package that defines a `Provider` subclass.

Adding a provider is adding one module here; nothing else needs to list it.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from exporter.providers.base import Provider, ProviderEvents, SourceSettings

__all__ = ["Provider", "ProviderEvents", "SourceSettings", "registry"]

_NOT_PROVIDERS = frozenset({"base", "paging", "wire"})


@cache
def registry() -> dict[str, type[Provider]]:
    found: dict[str, type[Provider]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name in _NOT_PROVIDERS or module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Provider)
                and value is not Provider
                and getattr(value, "name", None)
            ):
                found[value.name] = value
    return dict(sorted(found.items()))
