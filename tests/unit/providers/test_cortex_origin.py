"""Cortex `origin`: one origin, a list, or ALL, read from one unfiltered listing per workflow and
filtered client-side; TEST runs left out by default; the counts match the simulator's truth taken
under the same filter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exporter.config.settings import config_from_data
from exporter.core.errors import ConfigError
from exporter.providers.client import ApiClient
from exporter.providers.cortex import DEFAULT_ORIGINS, CortexProvider, CortexSettings
from exporter.providers.retry import RetryPolicy
from exporter.simulator.cortex import EVERY_ORIGIN
from tests.conftest import ExporterFactory, SimFactory, source_for
from tests.loopback import run_check
from tests.series import active, by_labels, errors, finished


def _runs_lists(sim: Any) -> list[Any]:
    return [r for r in sim.requests if r.path.endswith("/runs")]


def test_test_runs_are_left_out_by_default_with_one_unfiltered_listing_per_workflow(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("cortex", seed=201, origins=EVERY_ORIGIN)
    sim.world.add_runs(80)
    sim.world.advance(1800)
    exporter = exporter_factory([source_for(sim, "cortex", page_size=10)])

    assert exporter.collect_all()[0].ok

    everything, expected = sim.world.truth(), sim.world.truth(origins=DEFAULT_ORIGINS)
    assert sum(everything.finished.values()) > sum(expected.finished.values()), "TEST runs exist"
    assert finished(exporter, "cortex-test") == expected.finished
    assert active(exporter, "cortex-test") == expected.active
    assert errors(exporter, "cortex-test") == expected.errors
    lists = _runs_lists(sim)
    assert lists
    assert all("origin" not in r.query for r in lists), "one listing of every origin"
    # The list's total is of every origin, as the workflow list's runs_count is: no false alarm
    # (a server-side filter would list fewer than runs_count).
    mismatches = by_labels(
        exporter, "workflow_exporter_scan_inconsistencies_total", "cortex-test", "reason"
    )
    assert mismatches[("runs_count_mismatch",)] == 0


@pytest.mark.parametrize(
    ("origin", "counted"),
    [
        (["WORKFLOW", "RECORD"], {"WORKFLOW", "RECORD"}),
        ("test", {"TEST"}),
        ("ALL", set(EVERY_ORIGIN)),
    ],
)
def test_one_origin_a_list_or_all(
    origin: Any, counted: set[str], simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("cortex", seed=202, origins=EVERY_ORIGIN)
    sim.world.add_runs(60)
    sim.world.advance(1800)
    exporter = exporter_factory([source_for(sim, "cortex", page_size=10, origin=origin)])

    assert exporter.collect_all()[0].ok

    expected = sim.world.truth(origins=counted)
    assert sum(expected.finished.values()) > 0
    assert finished(exporter, "cortex-test") == expected.finished
    assert active(exporter, "cortex-test") == expected.active
    assert all("origin" not in r.query for r in _runs_lists(sim))


def _provider(**settings: Any) -> CortexProvider:
    source = CortexSettings.model_validate(
        {"name": "c", "api_key": "k", "app_id": "app", **settings}
    )
    client = ApiClient(
        source="c", base_url=source.base_url, headers={}, timeout=1, retry=RetryPolicy()
    )
    client.close()  # decoding does no I/O

    return CortexProvider(source, client, _Events())


class _Events:
    """What the provider reports; an invalid record would mean the test's page is wrong."""

    def __init__(self) -> None:
        self.facts: list[tuple[str, str]] = []

    def invalid_record(self, reason: str, detail: str) -> None:
        raise AssertionError(detail)

    def unknown_status(self, native_status: str) -> None:
        return None

    def learned(self, fact: str, value: str, detail: str) -> None:
        self.facts.append((fact, value))

    def inconsistency(self, reason: str, detail: str) -> None:
        return None


def _decoded(provider: CortexProvider, origins: list[Any]) -> dict[str, bool]:
    body = [
        {
            "id": f"r{index}",
            "status": "COMPLETED",
            "created_at": "2026-11-30T10:00:00Z",
            "workflow_id": "wf",
            **({} if origin is None else {"origin": origin}),
        }
        for index, origin in enumerate(origins)
    ]
    page = provider.decode_page(body, {})
    return {str(origins[int(run.shown[1:])]): provider.admits(run) for run in page.items}


def test_a_run_without_origin_or_of_an_undocumented_one_is_counted() -> None:
    """Pure: decoding and the origin check, no network."""
    default = _provider()
    assert _decoded(default, ["WORKFLOW", "TEST", None, "SCHEDULE", "record"]) == {
        "WORKFLOW": True,
        "TEST": False,
        "None": True,
        "SCHEDULE": True,
        "record": True,
    }
    only_workflow = _provider(origin=["WORKFLOW"])
    assert _decoded(only_workflow, ["WORKFLOW", "RECORD", "TEST", None]) == {
        "WORKFLOW": True,
        "RECORD": False,
        "TEST": False,
        "None": True,
    }


@pytest.mark.parametrize(
    ("origin", "problem"),
    [
        (["WORKFLOW", "BOGUS"], "sources[0].origin[1]: input should be 'ALL', 'WORKFLOW'"),
        (["ALL", "TEST"], "sources[0].origin: ALL already takes every origin"),
        ([], "sources[0].origin: tuple should have at least 1 item"),
    ],
)
def test_a_bad_origin_is_a_config_error_naming_its_path(origin: Any, problem: str) -> None:
    source = {"name": "c", "provider": "cortex", "api_key": "k", "app_id": "a", "origin": origin}
    with pytest.raises(ConfigError) as caught:
        config_from_data({"sources": [source]}, environ={})
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_the_default_is_every_documented_origin_but_test_and_a_string_is_a_list_of_one() -> None:
    assert "TEST" not in DEFAULT_ORIGINS
    assert CortexSettings.model_validate(
        {"name": "c", "api_key": "k", "app_id": "a"}
    ).origin == tuple(o for o in EVERY_ORIGIN if o != "TEST")
    assert CortexSettings.model_validate(
        {"name": "c", "api_key": "k", "app_id": "a", "origin": "record"}
    ).origin == ("RECORD",)


def test_check_prints_what_each_source_counts_and_labels(
    simulator: SimFactory, tmp_path: Path
) -> None:
    sim = simulator("cortex", seed=203, origins=EVERY_ORIGIN)
    sim.world.add_runs(10)
    source = source_for(
        sim,
        "cortex",
        name="cx",
        labels={"team": "payments", "env": "prod"},
        workflows={"exclude": ["Sandbox.*"]},
    )
    result = run_check(tmp_path, [source])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "  counted: exclude Sandbox.*; static labels: env=prod, team=payments" in result.stdout
    assert "  origin: WORKFLOW, TRIGGER, RECORD, ENDPOINT, WEBHOOK (TEST left out)" in result.stdout


def test_a_reload_that_leaves_test_out_takes_its_active_runs_off_and_keeps_its_counts(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("cortex", seed=204, origins=EVERY_ORIGIN, workflows=2)
    sim.world.add_runs(60)
    sim.world.advance(120)  # many runs still active, TEST ones among them
    source = source_for(sim, "cortex", name="cx", page_size=10, origin="ALL")
    exporter = exporter_factory([source])
    assert exporter.collect_all()[0].ok
    assert active(exporter, "cx") == sim.world.truth().active
    counted_all = finished(exporter, "cx")

    state = str(exporter.config.app.state_path)
    exporter.reload(
        config_from_data(
            {
                "state_path": state,
                "new_series_hold": "0s",
                "sources": [{k: v for k, v in source.items() if k != "origin"}],
            },
            environ={},
        )
    )
    sim.world.advance(3600)
    assert exporter.collect_all()[0].ok

    # No TEST run is active any more; what finished is the count from before, plus what the
    # default origins finished since (TEST runs finishing after the reload add nothing).
    without_test = sim.world.truth(origins=DEFAULT_ORIGINS)
    assert active(exporter, "cx") == without_test.active
    now_counted = finished(exporter, "cx")
    assert not counted_all - now_counted, "nothing counted before was lost"
    test_only = sim.world.truth(origins={"TEST"}).finished
    for (workflow, status), count in now_counted.items():
        expected = without_test.finished[(workflow, status)]
        assert expected <= count <= expected + test_only[(workflow, status)]
    assert sum(now_counted.values()) < sum(sim.world.truth().finished.values()), (
        "TEST runs that finished after the reload were not counted"
    )
