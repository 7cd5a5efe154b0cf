"""What a new configuration changes, decided without a running process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from exporter.config.reload import plan_reload
from exporter.config.settings import Config, config_from_data


def source(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "noxus",
        "api_key": "k-123456",
        "base_url": "http://127.0.0.1:9",
        **extra,
    }


def config(*sources: dict[str, Any], **app: Any) -> Config:
    return config_from_data({"state_path": "state.db", "sources": list(sources), **app}, {})


def running(cfg: Config) -> dict[str, Any]:
    return {s.name: s for s in cfg.own_sources()}


def test_an_identical_configuration_changes_nothing() -> None:
    old = config(source("a"), source("b"))
    plan = plan_reload(old, config(source("a"), source("b")), running(old), None)
    assert (plan.removed, plan.rebuilt, plan.changes) == ([], [], [])
    assert not plan.alerting_changed


def test_sources_are_removed_changed_and_added_in_the_new_order() -> None:
    old = config(source("a"), source("b"), source("gone"))
    new = config(source("b", timeout="5s"), source("a"), source("new"))
    plan = plan_reload(old, new, running(old), None)
    assert plan.removed == ["gone"]
    assert [(index, s.name) for index, s in plan.rebuilt] == [(0, "b"), (2, "new")]
    assert plan.changes == ["removed gone", "changed b", "added new"]


def test_alerting_is_compared_with_what_runs() -> None:
    alerting = {"alertmanagers": [{"url": "http://127.0.0.1:9093"}]}
    old = config(source("a"))
    new = config(source("a"), alerting=alerting)
    plan = plan_reload(old, new, running(old), None)
    assert plan.alerting_changed
    assert plan.changes == ["alerting changed"]
    assert not plan_reload(new, new, running(new), new.app.alerting).alerting_changed


def test_what_waits_for_a_restart_is_kept_as_it_runs(tmp_path: Path) -> None:
    old = config(source("a"), shard={"index": 0, "count": 2})
    new = config(source("a"), shard={"index": 1, "count": 2}, state_path=str(tmp_path / "x.db"))
    plan = plan_reload(old, new, running(old), None)
    assert plan.config.app.shard == old.app.shard
    # The state path is only warned about: the store stays open on the old file regardless.
    assert plan.config.app.state_path == new.app.state_path


def test_a_change_of_static_labels_alone_relabels_the_source_without_rebuilding_it() -> None:
    old = config(source("a", labels={"team": "payments"}), source("b"))
    new = config(source("a", labels={"team": "billing"}), source("b", labels={"team": "x"}))
    plan = plan_reload(old, new, running(old), None)
    assert plan.rebuilt == []
    assert [s.labels for s in plan.relabelled] == [{"team": "billing"}, {"team": "x"}]
    assert plan.changes == ["relabelled a", "relabelled b"]

    both = config(source("a", labels={"team": "ops"}, timeout="5s"), source("b"))
    plan = plan_reload(old, both, running(old), None)
    assert [s.name for _, s in plan.rebuilt] == ["a"]
    assert plan.relabelled == []
