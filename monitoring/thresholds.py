"""What the shipped alert rules are built from: `monitoring/thresholds.yaml` read into
`Thresholds`, and the two shapes every rule shares (a selected series, an alert with its runbook).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
THRESHOLDS_FILE = HERE / "thresholds.yaml"

# Per-workflow alerts aggregate to these labels, so `instance`, `pod` and shard replicas fold away.
WORKFLOW_LABELS = "source, provider, workflow"


class Thresholds:
    """Sectioned settings with the runbook anchors of docs/alerting.md; values come back as
    strings."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def get(self, section: str, key: str) -> str:
        try:
            value = self._data[section][key]
        except (KeyError, TypeError) as exc:
            raise KeyError(f"thresholds: missing {section}.{key}") from exc
        return str(value)

    @property
    def selector(self) -> str:
        return str(self._data["selector"])

    def runbook(self, alertname: str) -> str:
        return f"{self._data['runbook_base_url']}#{alertname.lower()}"


def load_thresholds(path: Path = THRESHOLDS_FILE) -> Thresholds:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of sections")
    return Thresholds(data)


def series(t: Thresholds, metric: str, *matchers: str) -> str:
    """`metric{<selector>,<matchers>}`; the selector may be empty."""
    parts = [p for p in (t.selector, *matchers) if p]
    return f"{metric}{{{','.join(parts)}}}"


def alert(
    t: Thresholds,
    name: str,
    section: str,
    expr: str,
    summary: str,
    description: str,
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": t.get(section, "for"),
        "labels": {"severity": t.get(section, "severity")},
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": t.runbook(name),
        },
    }
