"""The flow goes one way (see docs/architecture.md): these tests read every module's imports,
lazy ones inside functions too, and fail on a door opened against it."""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "exporter"

# What a provider may lean on besides its own package: the canonical model and the plumbing under
# it, never the counting, the store, the rendering or the process around it.
PROVIDER_MAY_IMPORT = {
    "exporter.model",
    "exporter.http",
    "exporter.errors",
    "exporter.logs",
    "exporter.units",
    "exporter.sharding",
    "exporter.plugins",  # the registry finds the provider modules
    # pure settings types every source shares (static labels, workflow filters)
    "exporter.labelnames",
    "exporter.filters",
}
# Shared by every simulator; a provider's simulator borrowing from another's would tie them.
SIMULATOR_SHARED = {"server", "world", "wire", "base", "webhooks", "distrust"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def imports_of(path: Path) -> frozenset[str]:
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)
    return imports_in(path.read_text(encoding="utf-8"), package)


def imports_in(text: str, package: str) -> frozenset[str]:
    """Every module the source names in an import, with `from a import b` also counted as `a.b`
    (b may be a submodule)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return frozenset(found)


def names(path: Path, *modules: str) -> list[str]:
    """The imports of `path` that are any of `modules` or inside them."""
    return sorted(
        name
        for name in imports_of(path)
        if any(name == module or name.startswith(f"{module}.") for module in modules)
    )


def sources(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


PROVIDER_FILES = sources(PACKAGE / "providers")
SIMULATOR_FILES = [p for p in sources(PACKAGE / "simulator") if p.name != "__init__.py"]


@pytest.mark.parametrize("path", PROVIDER_FILES, ids=ids(PROVIDER_FILES))
def test_a_provider_imports_only_the_model_and_the_plumbing_under_it(path: Path) -> None:
    assert not names(path, "prometheus_client"), "providers never render metrics"
    ours = {
        name
        for name in names(path, "exporter")
        if name != "exporter" and not name.startswith("exporter.providers")
    }
    outside = sorted(
        name
        for name in ours
        if not any(name == m or name.startswith(f"{m}.") for m in PROVIDER_MAY_IMPORT)
    )
    assert not outside, f"{path.name} imports {outside}"


def test_settings_import_neither_the_renderer_nor_the_provider_machinery() -> None:
    path = PACKAGE / "settings.py"
    assert not names(path, "exporter.metrics", "exporter.providers.base", "prometheus_client")


def test_file_mechanics_know_no_settings_model() -> None:
    """The web config file is read like the main one, without the main one's models."""
    assert names(PACKAGE / "configfile.py", "exporter") == []
    assert not names(PACKAGE / "webconfig.py", "exporter.settings")


def test_loading_a_configuration_does_not_load_the_renderer() -> None:
    """Transitively too: reading a config file needs no prometheus_client."""
    probe = (
        "import sys, exporter.settings, exporter.webconfig; "
        "print(' '.join(m for m in ('prometheus_client', 'exporter.metrics', "
        "'exporter.store') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == []


def test_metrics_render_without_the_http_client() -> None:
    assert not names(PACKAGE / "metrics.py", "httpx", "exporter.http", "exporter.providers")


def test_the_scan_cost_policy_is_pure() -> None:
    path = PACKAGE / "scancost.py"
    assert names(path, "exporter") == names(path, "exporter.accounting", "exporter.model")


def test_units_is_a_leaf() -> None:
    assert not names(PACKAGE / "units.py", "exporter")


@pytest.mark.parametrize("path", SIMULATOR_FILES, ids=ids(SIMULATOR_FILES))
def test_a_simulator_borrows_only_the_shared_simulator_helpers(path: Path) -> None:
    modules = {name.split(".")[:3][-1] for name in names(path, "exporter.simulator")}
    assert "simulator" not in modules, f"{path.name} imports the simulator registry"
    borrowed = sorted(modules - SIMULATOR_SHARED - {path.stem})
    assert not borrowed, f"{path.name} imports the simulators {borrowed}"


def test_the_import_reader_sees_lazy_and_relative_imports() -> None:
    """The checks above are only as good as this reader."""
    text = "def f():\n    from exporter.metrics import RunsCollector\n    from . import base\n"
    found = imports_in(text, "exporter.providers")
    assert "exporter.metrics" in found
    assert "exporter.providers.base" in found
