"""The monitoring mixin, evaluated by real jsonnet (the `jsonnet` module): as shipped it renders
the shipped rules and dashboards exactly, and a changed `_config` value reaches what it renders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import _jsonnet
import pytest
import yaml

from monitoring import dashboards, mixin, rules

pytestmark = pytest.mark.system

PARTS = (
    "{alerts: m.prometheusAlerts, recording: m.prometheusRules, dashboards: m.grafanaDashboards}"
)


def evaluate(overrides: str = "{}") -> dict[str, Any]:
    """The mixin's three outputs, with `overrides` added to it as a user's jsonnet would."""
    code = f"local m = (import 'mixin.libsonnet') + {overrides}; {PARTS}"
    result: dict[str, Any] = json.loads(
        _jsonnet.evaluate_snippet("test.jsonnet", code, jpathdir=[str(mixin.MIXIN)])
    )
    return result


def test_the_generated_parts_are_current() -> None:
    assert mixin.main(["--check"]) == 0, "run `make dashboards`"


def test_as_shipped_it_renders_the_shipped_rules_and_dashboards() -> None:
    out = evaluate()

    assert out["alerts"] == yaml.safe_load(rules.RULES_FILE.read_text(encoding="utf-8"))
    assert out["recording"] == {"groups": []}
    shipped = {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in dashboards.GRAFANA_DIR.glob("*.json")
    }
    assert out["dashboards"] == shipped
    assert set(shipped) == set(dashboards.DASHBOARDS)


def test_a_changed_config_reaches_every_rule_as_the_python_rules_would_write_it() -> None:
    """Selector, runbook base and a threshold changed in `_config` give exactly the rules that
    `monitoring.rules` writes from a thresholds file with the same changes."""
    data = yaml.safe_load(rules.THRESHOLDS_FILE.read_text(encoding="utf-8"))
    data["selector"] = 'job="wre",namespace="docs-ai"'
    data["runbook_base_url"] = "https://wiki.example.com/runbooks/wre"
    data["failure_ratio"]["ratio"] = 0.35
    data["stuck"]["for"] = "20m"

    out = evaluate(
        """{
          _config+:: {
            exporterSelector: 'job="wre",namespace="docs-ai"',
            runbookURLBase: 'https://wiki.example.com/runbooks/wre',
            thresholds+: { failure_ratio+: { ratio: 0.35 }, stuck+: { 'for': '20m' } },
          },
        }"""
    )

    assert out["alerts"] == {"groups": rules.build_groups(rules.Thresholds(data))}
    by_name = {r["alert"]: r for g in out["alerts"]["groups"] for r in g["rules"]}
    ratio = by_name["WorkflowRunsFailureRatioHigh"]
    assert "> 0.35" in ratio["expr"]
    assert 'namespace="docs-ai"' in ratio["expr"]
    assert ratio["annotations"]["runbook_url"].startswith("https://wiki.example.com/runbooks/wre#")
    assert by_name["WorkflowRunsStuck"]["for"] == "20m"


def test_dashboard_tags_come_from_config() -> None:
    out = evaluate("{ _config+:: { dashboardTags: ['documents', 'wre'] } }")

    for name, board in out["dashboards"].items():
        assert board["tags"] == ["documents", "wre"], name
        assert board["panels"], name


def test_the_check_notices_a_stale_part(tmp_path: Path) -> None:
    files = mixin.expected_files(tmp_path)
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert mixin.stale(files, tmp_path) == []

    (tmp_path / "alerts.libsonnet").write_text("{}", encoding="utf-8")
    (tmp_path / "dashboards" / "gone.json").write_text("{}", encoding="utf-8")

    assert mixin.stale(files, tmp_path) == [
        str(tmp_path / "alerts.libsonnet"),
        str(tmp_path / "dashboards" / "gone.json"),
    ]
