"""End to end on loopback: simulators -> exporter -> Prometheus (rules) -> Alertmanager -> webhook.

A burst of failed runs in one workflow must reach the webhook as `WorkflowRunsFailedSpike` with
that workflow's `source` and `workflow` labels, and resolve once the burst is over. While it fires,
every dashboard panel's query must return data from the same Prometheus: the dashboards and the
metrics agree.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.simulator.server import SimulatorServer
from monitoring import dashboards, rules, slo_dashboard
from tests.conftest import SimFactory, source_for
from tests.loopback import (
    Processes,
    Webhook,
    free_port,
    prometheus_query,
    serve_webhook,
    start_alertmanager,
    start_exporter,
    start_prometheus,
    until,
)

pytestmark = [pytest.mark.system, pytest.mark.timeout(300)]

JOB = "workflow-runs-exporter"
# Short windows so the alert fires and resolves within seconds; the rules are otherwise the
# canonical ones, rendered from the same thresholds file.
E2E_THRESHOLDS = {
    "failed_spike": {"window": "20s", "baseline_window": "1m", "min_failures": 3, "for": "0s"},
}


@dataclass
class Stack:
    prometheus: str
    webhook: Webhook
    spiking: SimulatorServer
    workflow: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        return prometheus_query(self.prometheus, expr)


def _rules_file(tmp_path: Path) -> Path:
    data = yaml.safe_load(rules.THRESHOLDS_FILE.read_text(encoding="utf-8"))
    for section, values in E2E_THRESHOLDS.items():
        data[section].update(values)
    path = tmp_path / "rules.yml"
    path.write_text(rules.render(rules.Thresholds(data)), encoding="utf-8")
    return path


@pytest.fixture
def stack(tmp_path: Path, simulator: SimFactory) -> Iterator[Stack]:
    processes = Processes()
    webhook = Webhook()
    hook_server, hook_port = serve_webhook(webhook)
    try:
        # The spiking source: a lived-in world that stops receiving new runs, so the only
        # failures in the workflow under test are the ones the test makes.
        plextera = simulator("plextera", seed=61, history_seconds=1800)
        plextera.world.arrival_rate_per_min = 0
        workflow = plextera.world.add_workflow("E2E invoices").name
        plextera.world.add_runs(
            1, workflow=workflow, native_status=plextera.native_for("succeeded")
        )
        plextera.start_driver(speed=1.0)
        # A second source with everything the health dashboard shows: a workflow bound that
        # folds values away, malformed records, statuses the mapping does not know.
        noxus = simulator("noxus", seed=62, history_seconds=1800)
        noxus.start_driver(speed=1.0)
        noxus.bad_record(2)
        noxus.unknown_status(2)
        # Steps with start and end times, for the step duration panel.
        cortex = simulator("cortex", seed=63, history_seconds=1800)
        cortex.start_driver(speed=1.0)

        exporter_port, am_port = free_port(), free_port()
        config = {
            "interval": "1s",
            "state_path": str(tmp_path / "state.db"),
            # Prometheus scrapes every second: a new series is served at zero for two.
            "new_series_hold": "2s",
            "sources": [
                source_for(plextera, "plextera", name="plextera-e2e"),
                source_for(noxus, "noxus", name="noxus-e2e", max_workflows=1),
                source_for(cortex, "cortex", name="cortex-e2e"),
            ],
            # The alerting agent too, so its dashboard panels have data.
            "alerting": {
                "alertmanagers": [{"url": f"http://127.0.0.1:{am_port}"}],
                "flush_interval": "1s",
            },
        }
        start_exporter(processes, tmp_path, exporter_port, config)

        start_alertmanager(
            processes,
            tmp_path,
            am_port,
            {
                "route": {
                    "receiver": "webhook",
                    "group_by": ["alertname", "source", "workflow"],
                    "group_wait": "1s",
                    "group_interval": "1s",
                    "repeat_interval": "1h",
                },
                "receivers": [
                    {
                        "name": "webhook",
                        "webhook_configs": [
                            {"url": f"http://127.0.0.1:{hook_port}/", "send_resolved": True}
                        ],
                    }
                ],
            },
        )

        prom_port = free_port()
        start_prometheus(
            processes,
            tmp_path,
            prom_port,
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(_rules_file(tmp_path))],
                "alerting": {
                    "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
                },
                "scrape_configs": [
                    {
                        "job_name": JOB,
                        "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
                    }
                ],
            },
            "--rules.alert.resend-delay=1s",
        )
        yield Stack(f"http://127.0.0.1:{prom_port}", webhook, plextera, workflow)
    finally:
        processes.stop_all()
        hook_server.shutdown()
        hook_server.server_close()


def test_failed_spike_reaches_alertmanager_and_resolves_and_every_panel_has_data(
    stack: Stack,
) -> None:
    failed_series = (
        f'workflow_runs_finished_total{{job="{JOB}",source="plextera-e2e",'
        f'workflow="{stack.workflow}",status="failed"}}'
    )
    # Counters are pre-created at 0, so Prometheus sees the burst as an increase.
    until(
        "the workflow's failed counter at 0 in Prometheus for a few scrapes",
        lambda: len(stack.query(f"count_over_time({failed_series}[1m]) >= 3")) == 1,
        60,
    )
    assert not stack.webhook.alerts("WorkflowRunsFailedSpike", "firing")

    failed = stack.spiking.native_for("failed")
    for _ in range(4):
        stack.spiking.world.add_runs(2, workflow=stack.workflow, native_status=failed)
        time.sleep(1)

    until(
        "WorkflowRunsFailedSpike firing at the webhook",
        lambda: bool(stack.webhook.alerts("WorkflowRunsFailedSpike", "firing")),
        60,
    )
    firing = stack.webhook.alerts("WorkflowRunsFailedSpike", "firing")
    labels = {(a["labels"]["source"], a["labels"]["workflow"]) for a in firing}
    assert labels == {("plextera-e2e", stack.workflow)}
    alert = firing[0]
    assert alert["labels"]["provider"] == "plextera"
    assert alert["labels"]["severity"] == "critical"
    assert stack.workflow in alert["annotations"]["description"]
    assert alert["annotations"]["runbook_url"].endswith("#workflowrunsfailedspike")

    # Every panel's query, as Grafana would send it, returns data while the alert fires.
    empty = []
    for name, board in dashboards.boards().items():
        if name == slo_dashboard.FILE:
            continue  # it reads the SLO rules' series: tests/system/test_e2e_slo.py runs it
        for title, expr in dashboards.panel_queries(board):
            query = dashboards.concrete(expr, __rate_interval="30s", __range="5m")
            if not stack.query(query):
                empty.append(f"{title}: {query}")
    assert not empty, "panel queries without data:\n" + "\n".join(empty)

    until(
        "WorkflowRunsFailedSpike resolved at the webhook",
        lambda: bool(stack.webhook.alerts("WorkflowRunsFailedSpike", "resolved")),
        90,
    )
    resolved = stack.webhook.alerts("WorkflowRunsFailedSpike", "resolved")
    assert {(a["labels"]["source"], a["labels"]["workflow"]) for a in resolved} == labels
