"""`slos:`: what an SLO may say, and each mistake named by its field path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exporter.config.settings import config_from_data, load_slo_config
from exporter.core.errors import ConfigError

SOURCE = {"name": "extend-prod", "provider": "extend", "api_key": "k"}


def _config(slos: Any, **extra: Any) -> Any:
    return config_from_data({"sources": [SOURCE], "slos": slos, **extra}, environ={})


def _problems(slos: Any, **extra: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _config(slos, **extra)
    return list(caught.value.problems)


def test_an_slo_with_defaults() -> None:
    config = _config([{"name": "invoices", "success": {}}])
    (slo,) = config.app.slos
    assert slo.window.days == 30
    assert slo.success is not None
    assert slo.success.objective == 99.0
    assert slo.success.bad == ("failed", "rejected")
    assert "cancelled" not in (*slo.success.good, *slo.success.bad)
    assert slo.min_runs is None
    assert config.app.slo_defaults.min_runs == 20


def test_a_latency_threshold_must_be_a_bucket_bound_and_the_bounds_are_named() -> None:
    problems = _problems([{"name": "fast", "latency": {"threshold": 45}}])
    assert len(problems) == 1
    assert problems[0].startswith("slos[0].latency.threshold: 45 s is not a bucket bound")
    assert "1, 5, 15, 30, 60, 120" in problems[0]
    assert _config([{"name": "fast", "latency": {"threshold": "2m"}}]).app.slos[0].latency


def test_the_bounds_checked_are_the_configured_buckets() -> None:
    slos = [{"name": "fast", "latency": {"threshold": 45}}]
    assert _config(slos, buckets={"duration": [15, 45, 90]}).app.slos[0].latency


@pytest.mark.parametrize(
    ("slo", "problem"),
    [
        ({"name": "Bad Name!", "success": {}}, "slos[0].name: string should match pattern"),
        ({"name": "a"}, "slos[0]: an SLO needs `success`, `latency` or both"),
        ({"name": "a", "success": {"objective": 100}}, "slos[0].success.objective: input"),
        ({"name": "a", "success": {"bad": ["exploded"]}}, "slos[0].success.bad: not a finished"),
        (
            {"name": "a", "success": {"good": ["succeeded"], "bad": ["succeeded"]}},
            "slos[0].success: succeeded cannot be both good and bad",
        ),
        ({"name": "a", "success": {}, "window": "1d"}, "slos[0].window: must be whole hours"),
        ({"name": "a", "success": {}, "min_runs": 0}, "slos[0].min_runs: input should be"),
        (
            {"name": "a", "success": {}, "workflows": {"include": ["("]}},
            "slos[0].workflows.include[0]: invalid regular expression",
        ),
        ({"name": "a", "success": {}, "sources": ["nope"]}, "slos[0].sources: no source"),
        ({"name": "a", "success": {}, "objective": 99}, "slos[0].objective: unknown setting"),
    ],
)
def test_each_mistake_names_its_field(slo: dict[str, Any], problem: str) -> None:
    problems = _problems([slo])
    assert any(p.startswith(problem) for p in problems), problems


def test_names_are_unique() -> None:
    slo = {"name": "a", "success": {}}
    assert "slos: the name 'a' is used more than once" in _problems([slo, slo])


def test_slo_rules_read_only_the_slos_so_unset_secrets_do_not_matter(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "sources:\n  - {name: s, provider: noxus, api_key: '${UNSET_KEY}'}\n"
        "slos:\n  - {name: a, sources: [s], success: {objective: 99.5}}\n",
        encoding="utf-8",
    )
    config = load_slo_config(path, environ={})
    assert [s.name for s in config.slos] == ["a"]
    # A file of SLOs only: its sources cannot be checked, its thresholds still are.
    path.write_text("slos:\n  - {name: a, sources: [s]}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_slo_config(path, environ={})
    assert caught.value.problems == ["slos[0]: an SLO needs `success`, `latency` or both"]
    path.write_text("slos:\n  - {name: a, latency: {threshold: 7}}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_slo_config(path, environ={})
    assert caught.value.problems[0].startswith("slos[0].latency.threshold: 7 s is not")
