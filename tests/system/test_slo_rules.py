"""The SLO rules: `slo-rules` as installed writes rules promtool accepts, the example's rules and
unit tests are up to date, and those unit tests pass."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from monitoring import slo_rules
from tests.loopback import EXPORTER

pytestmark = pytest.mark.system

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "alerting.md"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by `make test` (scripts/install-system-deps.sh)"
    return subprocess.run([promtool, *args], capture_output=True, text=True, check=False)


def test_generated_files_are_up_to_date() -> None:
    assert slo_rules.main(["--check"]) == 0, "run `make rules`"


def test_the_command_writes_rules_promtool_accepts(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "sources:\n  - {name: cortex, provider: cortex, api_key: '${CORTEX_KEY}', app_id: c}\n"
        "slo_defaults: {min_runs: 5}\n"
        "slos:\n"
        "  - {name: claims, sources: [cortex], workflows: {exclude: '.*test.*'},\n"
        "     window: 7d, success: {objective: 99.5, bad: failed},\n"
        "     latency: {threshold: 1h, objective: 90}}\n",
        encoding="utf-8",
    )
    out = tmp_path / "slo.rules.yml"
    result = subprocess.run(
        [*EXPORTER, "slo-rules", "--config.file", str(config), "--output", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    checked = _promtool("check", "rules", str(out))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    groups = yaml.safe_load(out.read_text(encoding="utf-8"))["groups"]
    assert [g["name"] for g in groups] == [
        "workflow-runs-slo.claims.success",
        "workflow-runs-slo.claims.latency",
    ]
    text = out.read_text(encoding="utf-8")
    assert "slo:sli_error:ratio_rate7d" in text
    assert 'le="3600.0"' in text
    # To stdout without --output; a bad threshold is refused naming the field and the bounds.
    config.write_text("slos:\n  - {name: x, latency: {threshold: 100}}\n", encoding="utf-8")
    refused = subprocess.run(
        [*EXPORTER, "slo-rules", "--config.file", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 2
    assert "config error: slos[0].latency.threshold: 100 s is not a bucket bound" in (
        refused.stderr
    )
    assert refused.stdout == ""


def test_promtool_accepts_the_example_rules_and_their_unit_tests_pass() -> None:
    checked = _promtool("check", "rules", str(slo_rules.RULES_FILE))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", str(slo_rules.TESTS_FILE))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    stories = yaml.safe_load(slo_rules.TESTS_FILE.read_text(encoding="utf-8"))["tests"]
    names = [s["name"] for s in stories]
    for kind in ("success", "latency"):
        for story in ("fast burn", "slow burn", "good traffic", "few runs"):
            assert any(kind in n and story in n for n in names), (kind, story)


def test_every_slo_alert_has_a_runbook_section() -> None:
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in RUNBOOK.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    groups = yaml.safe_load(slo_rules.RULES_FILE.read_text(encoding="utf-8"))["groups"]
    for rule in (r for g in groups for r in g["rules"] if "alert" in r):
        anchor = rule["annotations"]["runbook_url"].rsplit("#", 1)[1]
        assert anchor in anchors, rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}
