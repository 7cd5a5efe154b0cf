"""What the generated rules and dashboards take from the provider registry, not from thresholds:
facts of a provider's API that hold wherever it is deployed."""

from __future__ import annotations

from exporter.providers import registry


def steps_of_failed_runs_only() -> list[str]:
    """The providers whose counted steps come from failed runs only: their step failure ratio
    would read 100 % whatever happens, so the ratio's alert and panel leave them out."""
    return sorted(name for name, found in registry().items() if found.steps_of_failed_runs_only)


def without_partial_steps() -> str:
    """The label matcher that leaves those providers out (`provider!~""` leaves none out: every
    series has a provider)."""
    return f'provider!~"{"|".join(steps_of_failed_runs_only())}"'
