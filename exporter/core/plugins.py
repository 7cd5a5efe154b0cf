"""One-file plugins: the classes a package's modules define, found by walking the package.

Both providers and simulators are registered this way, so adding one is adding a module.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from typing import Any


def discover(package: str, paths: Iterable[str], base: type[Any], key: str) -> dict[str, Any]:
    """Subclasses of `base` that set the class attribute `key` themselves, keyed by its value.

    Modules whose name starts with `_` are skipped."""
    found: dict[str, Any] = {}
    for module_info in pkgutil.iter_modules(list(paths)):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{module_info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, base)
                and value is not base
                and key in vars(value)
            ):
                found[str(getattr(value, key))] = value
    return dict(sorted(found.items()))
