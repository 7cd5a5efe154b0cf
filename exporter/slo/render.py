"""The rule groups as a Prometheus rules file: YAML, multi-line expressions as `|` blocks."""

from __future__ import annotations

from typing import Any

import yaml


class _LiteralDumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None
    )


_LiteralDumper.add_representer(str, _str)


def dump_rules(groups: list[dict[str, Any]], header: str = "", width: int = 200) -> str:
    body = yaml.dump({"groups": groups}, Dumper=_LiteralDumper, sort_keys=False, width=width)
    return header + body
