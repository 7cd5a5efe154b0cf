"""Thresholds whose every value is a placeholder, for renderings of the canonical rules that fill
the values in later: the Helm chart's template and the mixin's jsonnet.

`monitoring.rules` passes every threshold to an expression as the string `Thresholds.get` returns,
so a placeholder lands where the value would; each rendering then rewrites the placeholders
(`TOKEN`, one per section and key) into its own language.
"""

from __future__ import annotations

import re

from monitoring import rules

# A placeholder for a threshold; it holds no character YAML or JSON would quote or escape.
_TOKEN = "TQQ{}QQ{}QQT"  # noqa: S105 (a placeholder, not a secret)
# (section, key); the key is empty for the top-level `selector` and `runbook_base_url`.
TOKEN = re.compile(r"TQQ([a-z0-9_]+)QQ([a-z0-9_]*)QQT")


class Placeholders(rules.Thresholds):
    """Thresholds whose every value is a placeholder for the value the rendering supplies."""

    def __init__(self) -> None:
        super().__init__({})

    def get(self, section: str, key: str) -> str:
        return _TOKEN.format(section, key)

    @property
    def selector(self) -> str:
        return _TOKEN.format("selector", "")

    def runbook(self, alertname: str) -> str:
        return f"{_TOKEN.format('runbook_base_url', '')}#{alertname.lower()}"
