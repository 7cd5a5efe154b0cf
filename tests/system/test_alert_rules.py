"""The canonical alert rules: generated from the thresholds, valid, and unit-tested by promtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring import rules

pytestmark = pytest.mark.system

TESTS_DIR = rules.HERE / "prometheus" / "tests"
RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "alerting.md"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by `make test` (scripts/install-system-deps.sh)"
    return subprocess.run([promtool, *args], capture_output=True, text=True, check=False)


def _alerts() -> list[dict[str, Any]]:
    data = yaml.safe_load(rules.RULES_FILE.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"] if "alert" in rule]


def _unit_tests() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for path in sorted(TESTS_DIR.glob("*.yml")):
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            cases.extend(test.get("alert_rule_test", []))
    return cases


def test_committed_rules_match_the_thresholds() -> None:
    assert rules.main(["--check"]) == 0, "run `make rules` after editing monitoring/thresholds.yaml"


def test_promtool_accepts_the_rules() -> None:
    result = _promtool("check", "rules", str(rules.RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    files = sorted(str(p) for p in TESTS_DIR.glob("*.yml"))
    assert files
    result = _promtool("test", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases = _unit_tests()
    for alert in _alerts():
        name = alert["alert"]
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c.get("exp_alerts") for c in mine), f"{name}: no case where it fires"
        assert any(not c.get("exp_alerts") for c in mine), f"{name}: no case where it stays quiet"


def test_every_alert_is_documented_and_labelled() -> None:
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in RUNBOOK.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    for alert in _alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}, name
        annotations = alert["annotations"]
        assert {"summary", "description", "runbook_url"} <= annotations.keys(), name
        names_where = ("$labels.source", "$labels.instance")
        assert name == "WorkflowExporterAbsent" or any(
            label in annotations["description"] for label in names_where
        ), f"{name}: the description names neither the source nor the instance"
        anchor = annotations["runbook_url"].rsplit("#", 1)[1]
        assert anchor in anchors, f"{name}: docs/alerting.md has no runbook heading for #{anchor}"


def test_workflow_alerts_name_the_source_and_workflow() -> None:
    data = yaml.safe_load(rules.RULES_FILE.read_text(encoding="utf-8"))
    group = next(g for g in data["groups"] if g["name"].endswith(".workflows"))
    for alert in group["rules"]:
        assert "by (source, provider, workflow" in alert["expr"], alert["alert"]
        text = alert["annotations"]["description"]
        assert "$labels.source" in text, alert["alert"]
        assert "$labels.workflow" in text, alert["alert"]


def test_a_threshold_changes_in_one_place(tmp_path: Path) -> None:
    data = yaml.safe_load(rules.THRESHOLDS_FILE.read_text(encoding="utf-8"))
    data["selector"] = 'job="wre",namespace="docs"'
    data["failed_spike"]["min_failures"] = 17
    changed = tmp_path / "thresholds.yaml"
    changed.write_text(yaml.safe_dump(data), encoding="utf-8")

    text = rules.render(rules.load_thresholds(changed))

    assert ">= 17" in text
    assert 'job="workflow-runs-exporter"' not in text
    assert text.count('{job="wre",namespace="docs"') >= len(_alerts())


def test_the_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    """Proof the promtool cases can fail: a spike factor no burst reaches must break them."""
    data = yaml.safe_load(rules.THRESHOLDS_FILE.read_text(encoding="utf-8"))
    data["failed_spike"]["factor"] = 1000
    data["stuck"]["age_seconds"] = 86400
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text(yaml.safe_dump(data), encoding="utf-8")
    (tmp_path / "prometheus" / "tests").mkdir(parents=True)
    out = tmp_path / "prometheus" / "workflow-runs-exporter.rules.yml"
    assert rules.main(["--thresholds", str(thresholds), "--out", str(out)]) == 0
    copies = []
    for path in TESTS_DIR.glob("workflows.test.yml"):
        copy = tmp_path / "prometheus" / "tests" / path.name
        copy.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
        copies.append(str(copy))

    result = _promtool("test", "rules", *copies)

    assert result.returncode != 0
    assert "WorkflowRunsFailedSpike" in result.stdout + result.stderr
    assert "WorkflowRunsStuck" in result.stdout + result.stderr
