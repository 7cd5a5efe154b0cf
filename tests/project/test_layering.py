"""The flow goes one way (see docs/architecture.md): these tests read every module's imports,
lazy ones inside functions too, and fail on a door opened against it."""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "exporter"

# The modules the top level keeps: the package's version, the entry point, the command line, the
# one place that builds every package's parts and the lifecycle that runs them. Everything else
# lives in a package that names its concern.
TOP_LEVEL = {"__init__", "__main__", "cli", "app", "wiring"}

# What each package may import of `exporter` besides itself (a package, or one module or name of
# it). Read bottom-up, no arrow runs back: `core` leans on nothing, the packages above it lean on
# it and on those listed, and only `app`, `wiring`, `cli` and `commands` (not listed: they wire)
# may import anything. `exporter.__version__` is open to all.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "core": frozenset(),
    # A source's settings are its provider's own model: the registry picks it by provider name.
    "config": frozenset({"core", "providers.SourceSettings", "providers.registry"}),
    "providers": frozenset({"core"}),
    "state": frozenset({"core"}),
    # A cycle records into its self-metric instruments; it never renders.
    "collection": frozenset({"core", "providers", "state", "exposition.selfmetrics"}),
    "exposition": frozenset({"core", "state.snapshot"}),
    "web": frozenset(
        {
            "core",
            "config.webconfig",
            "state.recent",
            "exposition.formats",
            "providers.SourceSettings",
        }
    ),
    "alerting": frozenset({"core", "config.alerting"}),
    # The app hands the webhook service a narrow interface (`webhooks.wiring.WebhookHost`), as it
    # hands the alerting agent its settings and store: webhooks never import the app. A source's
    # signing dialect is its provider's, found through the registry.
    "webhooks": frozenset(
        {
            "core",
            "config.webconfig",
            "config.webhooks",
            "providers.SourceSettings",
            "providers.registry",
            "providers.webhooks",
            "web",
        }
    ),
    "simulator": frozenset({"core.model", "core.plugins"}),
    # Rules are built from the SLOs' settings alone.
    "slo": frozenset({"config.slos"}),
}
WIRING_PACKAGES = {"commands"}

# What a provider may lean on besides its own package: the canonical model and the plumbing under
# it, never the counting, the store, the rendering or the process around it.
PROVIDER_MAY_IMPORT = {
    "exporter.core.model",
    "exporter.core.errors",
    "exporter.core.logs",
    "exporter.core.units",
    "exporter.core.sharding",
    "exporter.core.plugins",  # the registry finds the provider modules
    # pure settings types every source shares (static labels, workflow filters)
    "exporter.core.labelnames",
    "exporter.core.filters",
}
# The core does no I/O of its own: no network, no database, no HTTP, no scheduler, no rendering.
CORE_NEVER_IMPORTS = (
    "httpx",
    "h11",
    "http",
    "socket",
    "ssl",
    "selectors",
    "asyncio",
    "subprocess",
    "urllib.request",
    "sqlite3",
    "apscheduler",
    "prometheus_client",
)
# Shared by every simulator; a provider's simulator borrowing from another's would tie them.
# The parts every simulator shares: the server's API behaviour and its HTTP, fault, rate-limit,
# variant and control pieces; the world with its records and truth; webhooks and clock skew.
SIMULATOR_SHARED = {
    *("server", "handler", "exchange", "faults", "ratelimit", "variant", "control"),
    *("world", "records", "truth", "wire", "base", "webhooks", "distrust"),
}


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
        if name not in {"exporter", "exporter.__version__"}
        and not name.startswith("exporter.providers")
    }
    outside = sorted(name for name in ours if not within(name, PROVIDER_MAY_IMPORT))
    assert not outside, f"{path.name} imports {outside}"


def within(name: str, modules: frozenset[str] | set[str]) -> bool:
    return any(name == m or name.startswith(f"{m}.") for m in modules)


def exporter_imports(path: Path) -> list[str]:
    """The `exporter` modules and names `path` imports, outside its own package; a bare
    `from exporter.x import y` base is left out when `exporter.x.y` is there to be judged."""
    own = f"exporter.{path.relative_to(PACKAGE).parts[0]}"
    found = names(path, "exporter")
    return sorted(
        name
        for name in found
        if name not in {"exporter", "exporter.__version__"}
        and not within(name, {own})
        and not any(other.startswith(f"{name}.") for other in found)
    )


PACKAGES = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
PACKAGED_FILES = [
    p
    for p in sources(PACKAGE)
    if p.parent != PACKAGE and p.relative_to(PACKAGE).parts[0] in MAY_IMPORT
]


def test_the_top_level_keeps_only_the_entry_points_and_the_wiring() -> None:
    loose = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in TOP_LEVEL)
    assert not loose, f"move {loose} into the package of their concern"


def test_every_package_has_its_rules() -> None:
    assert set(PACKAGES) == set(MAY_IMPORT) | WIRING_PACKAGES


@pytest.mark.parametrize("path", PACKAGED_FILES, ids=ids(PACKAGED_FILES))
def test_no_import_runs_back_up(path: Path) -> None:
    package = path.relative_to(PACKAGE).parts[0]
    allowed = frozenset(f"exporter.{m}" for m in MAY_IMPORT[package])
    outside = [name for name in exporter_imports(path) if not within(name, allowed)]
    assert not outside, f"{package} may import {sorted(MAY_IMPORT[package])}, {path.name} {outside}"


CORE_FILES = sources(PACKAGE / "core")


@pytest.mark.parametrize("path", CORE_FILES, ids=ids(CORE_FILES))
def test_the_core_does_no_io(path: Path) -> None:
    assert not names(path, *CORE_NEVER_IMPORTS)


def test_config_imports_neither_the_renderer_nor_the_provider_machinery() -> None:
    for path in sources(PACKAGE / "config"):
        found = names(
            path, "exporter.exposition", "exporter.providers.base", "prometheus_client", "httpx"
        )
        assert not found, f"{path.name} imports {found}"


def test_file_mechanics_know_no_settings_model() -> None:
    """The web config file is read like the main one, without the main one's models."""
    assert names(PACKAGE / "config" / "configfile.py", "exporter") == []
    assert not names(PACKAGE / "config" / "webconfig.py", "exporter.config.settings")


def test_loading_a_configuration_does_not_load_the_renderer() -> None:
    """Transitively too: reading a config file needs no prometheus_client."""
    probe = (
        "import sys, exporter.config.settings, exporter.config.webconfig; "
        "print(' '.join(m for m in ('prometheus_client', 'exporter.exposition.metrics', "
        "'exporter.state.store') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == []


EXPOSITION_FILES = sources(PACKAGE / "exposition")


@pytest.mark.parametrize("path", EXPOSITION_FILES, ids=ids(EXPOSITION_FILES))
def test_the_rendering_runs_without_the_http_client(path: Path) -> None:
    assert not names(path, "httpx", "exporter.providers")


def test_the_scan_cost_policy_is_pure() -> None:
    path = PACKAGE / "core" / "scancost.py"
    assert names(path, "exporter") == names(path, "exporter.core.accounting", "exporter.core.model")


def test_units_is_a_leaf() -> None:
    assert not names(PACKAGE / "core" / "units.py", "exporter")


@pytest.mark.parametrize("path", SIMULATOR_FILES, ids=ids(SIMULATOR_FILES))
def test_a_simulator_borrows_only_the_shared_simulator_helpers(path: Path) -> None:
    modules = {name.split(".")[:3][-1] for name in names(path, "exporter.simulator")}
    assert "simulator" not in modules, f"{path.name} imports the simulator registry"
    borrowed = sorted(modules - SIMULATOR_SHARED - {path.stem})
    assert not borrowed, f"{path.name} imports the simulators {borrowed}"


def test_the_import_reader_sees_lazy_and_relative_imports() -> None:
    """The checks above are only as good as this reader."""
    text = (
        "def f():\n    from exporter.exposition.metrics import RunsCollector\n"
        "    from . import base\n"
    )
    found = imports_in(text, "exporter.providers")
    assert "exporter.exposition.metrics" in found
    assert "exporter.providers.base" in found
