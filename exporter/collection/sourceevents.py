"""The providers' `ProviderEvents`: oddities in an API's answers, counted on the self-metrics
every time, logged once per reason (then summed up hourly: exporter.collection.repeats), and kept
for `check` to show."""

from __future__ import annotations

from typing import Any

from exporter.collection.repeats import RepeatedWarnings
from exporter.exposition.selfmetrics import SourceInstruments


class SourceEvents:
    """The provider's `ProviderEvents`: counts on self-metrics, logs each new oddity once."""

    def __init__(
        self,
        instruments: SourceInstruments,
        log: Any,
        repeats: RepeatedWarnings | None = None,
    ) -> None:
        self._instruments = instruments
        self._log = log
        self._repeats = repeats or RepeatedWarnings(log)
        self._unknown_logged: set[str] = set()
        self.unknown_statuses = self._unknown_logged
        self.invalid = 0
        # For `check`: what was learned (fact -> (value, why)) and what did not add up.
        self.learned_facts: dict[str, tuple[str, str]] = {}
        self.inconsistencies: list[tuple[str, str]] = []

    def invalid_record(self, reason: str, detail: str) -> None:
        self.invalid += 1
        self._instruments.invalid_record(reason)
        self._repeats.warn(
            ("invalid_record", reason), "invalid record skipped", reason=reason, detail=detail
        )

    def learned(self, fact: str, value: str, detail: str) -> None:
        if self.learned_facts.get(fact, ("", ""))[0] != value:
            # A fact that flips back and forth is said once per value, then summed up.
            self._repeats.say(
                ("learned", fact, value),
                "info",
                "learned from the API's answers",
                fact=fact,
                value=value,
                why=detail,
            )
        self.learned_facts[fact] = (value, detail)

    def inconsistency(self, reason: str, detail: str) -> None:
        self._instruments.scan_inconsistency(reason)
        if len(self.inconsistencies) < 20:
            self.inconsistencies.append((reason, detail))
        self._repeats.warn(
            ("inconsistency", reason),
            "the API's answers do not add up; counts may be off",
            reason=reason,
            detail=detail,
        )

    def unknown_status(self, native_status: str) -> None:
        self._instruments.unknown_status(native_status)
        if native_status not in self._unknown_logged and len(self._unknown_logged) < 100:
            self._unknown_logged.add(native_status)
            self._log.warning(
                "unknown native status mapped to `unknown`; add it to the source's status_map",
                native_status=native_status[:100],
            )
