"""Per-source workflow filters: a left-out workflow never becomes a label, costs no series and no
lookup, and the scan still walks every page; a reload changes the filter without recounting or
losing what was counted."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from exporter.config.settings import config_from_data
from exporter.core.errors import ConfigError
from exporter.core.filters import WorkflowFilter
from tests.conftest import ExporterFactory, SimFactory, source_for
from tests.series import active, exposition, finished

# Pure semantics ---------------------------------------------------------------------------------


def test_patterns_match_the_whole_name_or_the_whole_id() -> None:
    f = WorkflowFilter(include=("Invoices.*", "wf-7"), exclude=(".*test.*",))
    assert f.admits("wf-1", "Invoices EU")
    assert f.admits("wf-7", None), "the id alone can be included"
    assert f.admits("wf-7", "Anything"), "the id matches though the name does not"
    assert not f.admits("wf-1", "Claims"), "not included"
    assert not f.admits("wf-1", "My Invoices"), "a pattern matches in whole, not a part"
    assert not f.admits("wf-1", "Invoices test"), "exclude wins over include"
    assert not f.admits("wf-test-1", "Invoices"), "exclude by id"


def test_no_patterns_admit_everything_and_one_string_is_a_list_of_one() -> None:
    assert WorkflowFilter().admits("x", None)
    assert not WorkflowFilter().filters
    one = WorkflowFilter.model_validate({"exclude": "^Sandbox.*"})
    assert one.exclude == ("^Sandbox.*",)
    assert not one.admits("id", "Sandbox A")
    assert one.describe() == "exclude ^Sandbox.*"


def _problems(workflows: Any) -> list[str]:
    source = {"name": "a", "provider": "noxus", "api_key": "k", "workflows": workflows}
    try:
        config_from_data({"sources": [source]}, environ={})
    except ConfigError as exc:
        return list(exc.problems)
    return []


@pytest.mark.parametrize(
    ("workflows", "problem"),
    [
        (
            {"include": ["ok", "bad("]},
            "sources[0].workflows.include[1]: invalid regular expression",
        ),
        ({"exclude": ["*x"]}, "sources[0].workflows.exclude[0]: invalid regular expression"),
        ({"exlude": ["x"]}, "sources[0].workflows.exlude: unknown setting"),
        (["x"], "sources[0].workflows: input should be"),
    ],
)
def test_a_bad_filter_is_a_config_error_naming_its_path(workflows: Any, problem: str) -> None:
    problems = _problems(workflows)
    assert any(p.startswith(problem) for p in problems), problems


# Against the simulators -------------------------------------------------------------------------


def _without(counter: Counter[Any], workflow: str) -> Counter[Any]:
    return Counter({k: n for k, n in counter.items() if k[0] != workflow})


def _of(counter: Counter[Any], workflow: str) -> Counter[Any]:
    return Counter({k: n for k, n in counter.items() if k[0] == workflow})


@pytest.mark.parametrize("provider", ["plextera", "extend", "cortex"])
def test_a_left_out_workflow_takes_no_label_no_series_and_no_request(
    provider: str, simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator(provider, seed=191, workflows=3)
    sim.world.add_runs(60)
    sim.world.advance(1800)
    left_out = sim.world.workflows[0]
    left_out_runs = {r.id for r in sim.world.runs.values() if r.workflow.id == left_out.id}
    assert left_out_runs
    exporter = exporter_factory(
        [
            source_for(
                sim,
                provider,
                page_size=7,
                workflows={"exclude": [re.escape(left_out.name)]},
            )
        ]
    )

    assert exporter.collect_all()[0].ok

    source = f"{provider}-test"
    truth = sim.world.truth()
    assert finished(exporter, source) == _without(truth.finished, left_out.name)
    assert active(exporter, source) == _without(truth.active, left_out.name)
    assert f'workflow="{left_out.name}"' not in exposition(exporter)
    assert left_out.name not in exporter.store.labels(source, "workflow")
    # No lookup of one of its runs, and (Cortex) not even its runs list.
    touched = [
        r.path
        for r in sim.requests
        if left_out.id in r.path or any(run_id in r.path for run_id in left_out_runs)
    ]
    assert touched == []
    kept_ids = {w.id for w in sim.world.workflows[1:]}
    kept_runs = {r.id for r in sim.world.runs.values() if r.workflow.id in kept_ids}
    others = [r for r in sim.requests if any(i in r.path for i in kept_ids | kept_runs)]
    if provider != "plextera":
        assert others, "the other workflows' lists and lookups were requested"
    if provider != "cortex":
        # Its runs were on the pages all the same: every page was walked.
        pages = [r for r in sim.requests if r.path.endswith("runs")]
        assert len(pages) >= truth.runs // 7


def test_an_include_list_keeps_only_the_workflows_it_names_by_name_or_id(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("noxus", seed=192, workflows=4)
    sim.world.add_runs(40)
    sim.world.advance(1800)
    by_name, by_id = sim.world.workflows[0], sim.world.workflows[1]
    exporter = exporter_factory(
        [source_for(sim, "noxus", workflows={"include": [re.escape(by_name.name), by_id.id]})]
    )

    assert exporter.collect_all()[0].ok

    truth = sim.world.truth()
    kept = {by_name.name, by_id.name}
    expected = Counter({k: n for k, n in truth.finished.items() if k[0] in kept})
    assert finished(exporter, "noxus-test") == expected
    assert {wf for wf, _ in finished(exporter, "noxus-test")} == kept


def test_a_reload_changes_the_filter_without_recounting_or_losing_counts(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("plextera", seed=193, workflows=3)
    sim.world.add_runs(60)
    sim.world.advance(120)  # many runs still active
    target = sim.world.workflows[0].name
    source = source_for(sim, "plextera", name="src")
    exporter = exporter_factory([source])
    assert exporter.collect_all()[0].ok
    counted_before = _of(finished(exporter, "src"), target)
    active_before = _of(active(exporter, "src"), target)
    assert active_before, "the workflow has active runs when it is left out"

    config = config_from_data(
        {
            "state_path": str(exporter.config.app.state_path),
            "new_series_hold": "0s",
            "sources": [{**source, "workflows": {"exclude": [re.escape(target)]}}],
        },
        environ={},
    )
    assert exporter.reload(config) == ["changed src"]
    assert exporter.collect_all()[0].ok
    # Its active runs left the gauges; what it had counted stays exported, unchanged.
    assert _of(active(exporter, "src"), target) == Counter()
    assert _of(finished(exporter, "src"), target) == counted_before
    # The other workflows go on as before.
    truth = sim.world.truth()
    assert finished(exporter, "src") - _of(finished(exporter, "src"), target) == _without(
        truth.finished, target
    )

    sim.world.advance(3600)  # its runs finish while it is left out: none counted
    assert exporter.collect_all()[0].ok
    assert _of(finished(exporter, "src"), target) == counted_before
    assert _without(finished(exporter, "src"), target) == _without(
        sim.world.truth().finished, target
    )

    # Back in: nothing counted twice (counted ids stayed), the others still exact.
    config = config_from_data(
        {
            "state_path": str(exporter.config.app.state_path),
            "new_series_hold": "0s",
            "sources": [source],
        },
        environ={},
    )
    exporter.reload(config)
    sim.world.add_runs(10, workflow=target)
    sim.world.advance(3600)
    assert exporter.collect_all()[0].ok
    truth = sim.world.truth()
    assert _without(finished(exporter, "src"), target) == _without(truth.finished, target)
    again = _of(finished(exporter, "src"), target)
    assert again - counted_before, "runs of the workflow count again"
    for key, count in again.items():
        assert counted_before[key] <= count <= truth.finished[key]
