"""VictoriaMetrics in place of Prometheus: the real single-node binary scrapes the exporter with
the shipped scrape config, vmalert evaluates the shipped rules against it, and the dashboards'
queries run through its Prometheus-compatible API.

Two exporters on loopback: a still one (one collection, then nothing changes) whose every served
series must arrive in VictoriaMetrics with the value it served, as classic text (the shipped job:
VictoriaMetrics asks for `text/plain` only) and as OpenMetrics with exemplars (the same job with
an `Accept` header set in the scrape config); and a live one (moving simulators, bad records, the
alerting agent) that gives every dashboard panel something to show.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families

from exporter.exposition.formats import OPENMETRICS_CONTENT_TYPE
from exporter.simulator import SIMULATORS, SimulatorServer
from monitoring import dashboards, slo_dashboard
from tests.conftest import source_for
from tests.loopback import (
    Processes,
    binary,
    free_port,
    prometheus_query,
    start_alertmanager,
    start_exporter,
    until,
    wait_for,
)

pytestmark = [pytest.mark.system, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]
SHIPPED_SCRAPE_CONFIG = REPO / "deploy" / "compose" / "prometheus.yml"
SHIPPED_RULES = REPO / "monitoring" / "prometheus" / "workflow-runs-exporter.rules.yml"
OPENMETRICS_JOB_SUFFIX = "-openmetrics"
# The series a scraper adds of its own for each target.
SCRAPER_SERIES = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "scrape_timeout_seconds",
}
SeriesKey = tuple[str, frozenset[tuple[str, str]]]


@dataclass
class Stack:
    victoria: str
    job: str
    still_exporter: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        return prometheus_query(self.victoria, expr)

    def targets(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.victoria}/api/v1/targets", timeout=5)
        response.raise_for_status()
        active: list[dict[str, Any]] = response.json()["data"]["activeTargets"]
        return active

    def stored(self, job: str) -> dict[SeriesKey, float]:
        """The newest value of every series of the still exporter under `job`."""
        response = httpx.get(
            f"{self.victoria}/api/v1/export",
            params={"match[]": f'{{job="{job}",instance="{self.still_exporter}"}}'},
            timeout=10,
        )
        response.raise_for_status()
        out: dict[SeriesKey, float] = {}
        for line in response.text.splitlines():
            series = yaml.safe_load(line)
            labels = dict(series["metric"])
            name = labels.pop("__name__")
            del labels["job"], labels["instance"]
            out[name, frozenset(labels.items())] = float(series["values"][-1])
        return out


def _served(address: str, openmetrics: bool) -> dict[SeriesKey, float]:
    """Every sample the exporter serves in one format, parsed as that format."""
    accept = OPENMETRICS_CONTENT_TYPE if openmetrics else "text/plain;version=0.0.4"
    response = httpx.get(f"http://{address}/metrics", headers={"Accept": accept}, timeout=5)
    response.raise_for_status()
    assert response.headers["content-type"].startswith(accept.split(";")[0])
    parse = openmetrics_families if openmetrics else text_families
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in parse(response.text)
        for sample in family.samples
    }


def _scrape_config(exporters: list[str], still: str) -> dict[str, Any]:
    """The shipped Prometheus config's scrape job, pointed at the loopback exporters; and the
    same job asking for OpenMetrics, for the still exporter."""
    shipped = yaml.safe_load(SHIPPED_SCRAPE_CONFIG.read_text(encoding="utf-8"))
    (job,) = shipped["scrape_configs"]
    job["static_configs"] = [{"targets": exporters}]
    openmetrics = {
        **job,
        "job_name": job["job_name"] + OPENMETRICS_JOB_SUFFIX,
        "static_configs": [{"targets": [still]}],
        # VictoriaMetrics sends `Accept: text/plain;version=0.0.4;q=1,*/*;q=0.1` of its own;
        # a header set here replaces it.
        "headers": [f"Accept: {OPENMETRICS_CONTENT_TYPE}"],
    }
    # The rest of the file (rule files, Alertmanager) is Prometheus's, and vmalert's here.
    return {
        **shipped,
        "global": {**shipped["global"], "scrape_interval": "1s"},
        "scrape_configs": [job, openmetrics],
    }


def _start_simulators(started: list[SimulatorServer]) -> list[dict[str, Any]]:
    """A world in motion with what every panel shows: failures, steps with times (Cortex),
    malformed records, unknown statuses, a workflow bound that folds values away."""

    def start(provider: str, **kwargs: Any) -> SimulatorServer:
        sim = SIMULATORS[provider](enforce_rate_limit=False, history_seconds=1800, **kwargs)
        sim.start()
        started.append(sim)
        sim.start_driver(speed=1.0)
        return sim

    plextera, noxus, cortex = (
        start("plextera", seed=71),
        start("noxus", seed=72),
        start("cortex", seed=73),
    )
    noxus.bad_record(2)
    noxus.unknown_status(2)
    return [
        source_for(plextera, "plextera", name="plextera-vm"),
        source_for(noxus, "noxus", name="noxus-vm", max_workflows=1),
        source_for(cortex, "cortex", name="cortex-vm"),
    ]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("victoriametrics")
    processes = Processes()
    started: list[SimulatorServer] = []
    try:
        # The still exporter: one collection of a finished world, then an hour's wait.
        still_sim = SIMULATORS["plextera"](enforce_rate_limit=False, seed=74, workflows=2)
        still_sim.start()
        started.append(still_sim)
        still_sim.world.add_runs(20)
        still_sim.world.advance(3600)
        (tmp / "still").mkdir()
        still_port = free_port()
        start_exporter(
            processes,
            tmp / "still",
            still_port,
            {
                "interval": "1h",
                "state_path": str(tmp / "still" / "state.db"),
                "sources": [source_for(still_sim, "plextera", name="still-vm")],
            },
        )
        still = f"127.0.0.1:{still_port}"
        wait_for(
            f"http://{still}/metrics",
            lambda r: "workflow_exporter_last_success_timestamp_seconds{" in r.text,
            30,
        )

        am_port, live_port = free_port(), free_port()
        start_alertmanager(
            processes,
            tmp,
            am_port,
            {"route": {"receiver": "none"}, "receivers": [{"name": "none"}]},
        )
        (tmp / "live").mkdir()
        start_exporter(
            processes,
            tmp / "live",
            live_port,
            {
                "interval": "1s",
                "state_path": str(tmp / "live" / "state.db"),
                "new_series_hold": "2s",
                "sources": _start_simulators(started),
                "alerting": {
                    "alertmanagers": [{"url": f"http://127.0.0.1:{am_port}"}],
                    "flush_interval": "1s",
                },
            },
        )

        scrape_file = tmp / "scrape.yml"
        config = _scrape_config([still, f"127.0.0.1:{live_port}"], still)
        scrape_file.write_text(yaml.safe_dump(config), encoding="utf-8")
        vm_port = free_port()
        victoria = f"http://127.0.0.1:{vm_port}"
        processes.start(
            [
                binary("victoria-metrics"),
                f"-storageDataPath={tmp / 'vm-data'}",
                f"-httpListenAddr=127.0.0.1:{vm_port}",
                f"-promscrape.config={scrape_file}",
                # The shipped file also holds what only Prometheus reads (`evaluation_interval`,
                # `rule_files`, `alerting`): VictoriaMetrics refuses unknown fields otherwise.
                "-promscrape.config.strictParse=false",
                # Otherwise a query at "now" answers as of 30 s ago.
                "-search.latencyOffset=0s",
                # The test asks the same queries again as data arrives.
                "-search.disableCache",
            ],
            tmp / "victoria-metrics.log",
        )
        wait_for(f"{victoria}/health", lambda r: r.status_code == 200, 20)

        vmalert_port = free_port()
        processes.start(
            [
                binary("vmalert"),
                f"-rule={SHIPPED_RULES}",
                f"-datasource.url={victoria}",
                f"-remoteWrite.url={victoria}",
                f"-notifier.url=http://127.0.0.1:{am_port}",
                f"-httpListenAddr=127.0.0.1:{vmalert_port}",
                "-evaluationInterval=1s",
            ],
            tmp / "vmalert.log",
        )
        wait_for(f"http://127.0.0.1:{vmalert_port}/health", lambda r: r.status_code == 200, 20)
        yield Stack(victoria, config["scrape_configs"][0]["job_name"], still)
    finally:
        processes.stop_all()
        for sim in started:
            sim.stop_driver()
            sim.stop()


def _settle(check: Callable[[], bool], timeout: float) -> None:
    """Waits until `check` holds or `timeout` passes; the caller asserts what is still wrong."""
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(1)


def _same_values(
    served: dict[SeriesKey, float], stored: dict[SeriesKey, float], moving: set[SeriesKey]
) -> list[str]:
    """What differs between the exporter's samples and the stored ones; a `moving` series (its
    value changes between scrapes of its own accord) needs only to be there."""
    stored = {key: value for key, value in stored.items() if key[0] not in SCRAPER_SERIES}
    wrong = [f"missing: {key}" for key in served.keys() - stored.keys()]
    wrong += [f"not served: {key}" for key in stored.keys() - served.keys()]
    for key in (served.keys() & stored.keys()) - moving:
        a, b = served[key], stored[key]
        if not (a == b or (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12)):
            wrong.append(f"{key}: served {a}, stored {b}")
    return sorted(wrong)


@pytest.mark.parametrize("openmetrics", [False, True], ids=["classic-text", "openmetrics"])
def test_every_served_series_arrives_with_its_value(stack: Stack, openmetrics: bool) -> None:
    job = stack.job + (OPENMETRICS_JOB_SUFFIX if openmetrics else "")
    served = _served(stack.still_exporter, openmetrics)
    time.sleep(1.5)
    again = _served(stack.still_exporter, openmetrics)
    moving = {key for key in served if served[key] != again.get(key)}
    # Only the process's own gauges and the ages computed at scrape time move; the counts stay.
    assert len(served) > 100
    assert len(moving) < 20, moving
    assert not {key for key in moving if key[0].startswith("workflow_runs_finished")}
    wrong: list[str] = []

    def arrived() -> bool:
        wrong[:] = _same_values(served, stack.stored(job), moving)
        return not wrong

    _settle(arrived, 30)
    assert not wrong, "\n".join(wrong[:30])


def test_the_openmetrics_scrape_with_exemplars_is_healthy(stack: Stack) -> None:
    served = httpx.get(
        f"http://{stack.still_exporter}/metrics",
        headers={"Accept": OPENMETRICS_CONTENT_TYPE},
        timeout=5,
    ).text
    assert " # {run_id=" in served, "the still exporter serves exemplars"
    until(
        "all three targets scraped (both exporters, and the still one as OpenMetrics too)",
        lambda: sum(t["scrapePool"].startswith(stack.job) for t in _scraped(stack)) == 3,
        30,
    )
    for target in stack.targets():
        assert target["health"] == "up", target
        assert target["lastError"] == "", target
        assert target["lastSamplesScraped"] > 100, target


def _scraped(stack: Stack) -> list[dict[str, Any]]:
    return [t for t in stack.targets() if t["health"] == "up" and t["lastSamplesScraped"] > 0]


def _variable_queries() -> Iterator[tuple[str, str, str]]:
    """(variable, metric selector, label) of every `label_values(...)` variable."""
    for name, board in dashboards.boards().items():
        if name == slo_dashboard.FILE:
            continue  # its variables read SLO rules' series, as its panels do
        for variable in board["templating"]["list"]:
            if variable["type"] != "query":
                continue
            inner = variable["query"]["query"].removeprefix("label_values(").removesuffix(")")
            selector, label = inner.rsplit(",", 1)
            yield variable["name"], dashboards.concrete(selector), label.strip()


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    """No panel is known to differ: vmalert writes `ALERTS` back, so even the firing-alerts
    panel has data (the live exporter's malformed records fire WorkflowExporterInvalidRecords)."""
    queries = [
        (title, dashboards.concrete(expr, __rate_interval="30s", __range="5m"))
        for name, board in dashboards.boards().items()
        # The SLOs dashboard reads the series of SLO rules, which this stack does not load:
        # tests/system/test_e2e_slo.py runs its queries against a Prometheus that does.
        if name != slo_dashboard.FILE
        for title, expr in dashboards.panel_queries(board)
    ]
    empty: list[str] = []

    def all_answered() -> bool:
        empty[:] = [f"{title}: {query}" for title, query in queries if not stack.query(query)]
        return not empty

    _settle(all_answered, 60)
    assert not empty, "panel queries without data:\n" + "\n".join(empty)

    for name, selector, label in _variable_queries():
        response = httpx.get(
            f"{stack.victoria}/api/v1/label/{label}/values",
            params={"match[]": selector},
            timeout=5,
        )
        response.raise_for_status()
        assert response.json()["data"], f"variable {name}: no {label} values for {selector}"
