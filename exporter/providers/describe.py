"""What a provider says of itself (`ProviderDocs`, the provider tables of docs/providers.md) and
how it reports what it met in an API's answers (`ProviderEvents`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class ProviderEvents(Protocol):
    """How a provider reports what it skipped or did not understand; counted and logged."""

    def invalid_record(self, reason: str, detail: str) -> None: ...
    def unknown_status(self, native_status: str) -> None: ...
    def learned(self, fact: str, value: str, detail: str) -> None:
        """What the API turned out to do where its docs are silent (list order, first page,
        page size, timestamp form); said once per change."""

    def inconsistency(self, reason: str, detail: str) -> None:
        """What the API's answers say that does not add up (fewer runs than its own total)."""


@dataclass(frozen=True, slots=True)
class ProviderDocs:
    """What the provider table of docs/providers.md says of a provider (`make docs`)."""

    title: str
    auth: str
    list: str
    one_run: str
    incremental_by: str
    active_reread: str
    code_label: str
    duration: str
    progress: str
    other: str = ""
    # How the run's steps become `workflow_run_steps_total` (docs/providers.md).
    steps: str = "none"
