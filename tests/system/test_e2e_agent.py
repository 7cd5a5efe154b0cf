"""The alerting agent against a real Alertmanager on loopback.

Failed and stuck runs in the simulators must show up in Alertmanager's `/api/v2/alerts` with their
labels and annotations. Then Alertmanager goes away, runs keep failing, the exporter is restarted
while it is away, and when Alertmanager comes back every event must arrive exactly once: counted
by a pass-through in front of Alertmanager that keeps every alert Alertmanager accepted.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.providers import registry
from exporter.simulator.records import SimRun
from exporter.simulator.server import SimulatorServer
from tests.conftest import SimFactory, source_for
from tests.loopback import EXPORTER, Processes, free_port, start_alertmanager, until, wait_for

pytestmark = [pytest.mark.system, pytest.mark.timeout(300)]

WORKFLOW = "Agent invoices"
DASHBOARD = "https://grafana.example/d/runs?var-source={source}&var-run={run_id}"
AM_CONFIG = {
    "route": {"receiver": "none", "group_by": ["alertname"]},
    "receivers": [{"name": "none"}],
}


@dataclass
class Recorder:
    """A pass-through in front of Alertmanager: keeps each alert of every batch it accepted."""

    upstream: str
    port: int
    accepted: list[tuple[datetime, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    answer = httpx.post(
                        recorder.upstream + self.path,
                        content=body,
                        headers={"Content-Type": "application/json"},
                        timeout=5,
                    )
                    status = answer.status_code
                except httpx.HTTPError:
                    status = 502
                if status // 100 == 2:
                    received = datetime.now(UTC)
                    with recorder.lock:
                        recorder.accepted.extend((received, a) for a in json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Closes the port: the exporter's next send is refused, as with a dead Alertmanager."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def deliveries(self) -> Counter[tuple[str, str, bool]]:
        """(alertname, run id, resolved) -> how many times Alertmanager took it. A resolution is
        an alert whose end had passed when it was sent."""
        with self.lock:
            return Counter(
                (
                    alert["labels"]["alertname"],
                    alert["labels"]["run_id"],
                    datetime.fromisoformat(alert["endsAt"]) <= received,
                )
                for received, alert in self.accepted
            )


@dataclass
class Agent:
    tmp_path: Path
    processes: Processes
    plextera: SimulatorServer
    extend: SimulatorServer
    recorder: Recorder
    am_port: int
    exporter_port: int
    am: subprocess.Popen[bytes] | None = None
    exporter: subprocess.Popen[bytes] | None = None

    @property
    def alertmanager(self) -> str:
        return f"http://127.0.0.1:{self.am_port}"

    def start_alertmanager(self) -> None:
        self.am = start_alertmanager(self.processes, self.tmp_path, self.am_port, AM_CONFIG)
        self.recorder.start()

    def stop_alertmanager(self) -> None:
        self.recorder.stop()
        assert self.am is not None
        Processes.stop(self.am)

    def start_exporter(self) -> None:
        self.exporter = self.processes.start(
            [
                *EXPORTER,
                "--config.file",
                str(self.tmp_path / "exporter.yml"),
                "--web.listen-address",
                f"127.0.0.1:{self.exporter_port}",
            ],
            self.tmp_path / "exporter.log",
        )
        wait_for(f"http://127.0.0.1:{self.exporter_port}/readyz", ok, 30)

    def stop_exporter(self) -> None:
        assert self.exporter is not None
        assert Processes.stop(self.exporter) == 0, "the exporter stops cleanly on SIGTERM"

    def alerts(self, alertname: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.alertmanager}/api/v2/alerts", timeout=5)
        response.raise_for_status()
        return [a for a in response.json() if a["labels"]["alertname"] == alertname]

    def metric(self, name: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.exporter_port}/metrics", timeout=5).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        )

    def fail(self, sim: SimulatorServer, n: int) -> list[SimRun]:
        return sim.world.add_runs(n, workflow=WORKFLOW, native_status=sim.native_for("failed"))


def ok(response: httpx.Response) -> bool:
    return response.status_code == 200


@pytest.fixture
def agent(tmp_path: Path, simulator: SimFactory) -> Iterator[Agent]:
    processes = Processes()
    recorder: Recorder | None = None
    try:
        sims = []
        for provider in ("plextera", "extend"):
            # An empty world that receives no runs by itself: the only events are the test's.
            sim = simulator(provider, seed=71, arrival_rate_per_min=0)
            sim.world.add_workflow(WORKFLOW)
            sim.start_driver(speed=1.0)
            sims.append(sim)
        plextera, extend = sims
        am_port, exporter_port = free_port(), free_port()
        recorder = Recorder(f"http://127.0.0.1:{am_port}", free_port())
        config = {
            "interval": "1s",
            "state_path": str(tmp_path / "state.db"),
            "sources": [
                source_for(plextera, "plextera", name="plextera-agent"),
                source_for(extend, "extend", name="extend-agent"),
            ],
            "alerting": {
                "alertmanagers": [{"url": f"http://127.0.0.1:{recorder.port}"}],
                "stuck": {"after": "3s"},
                "flush_interval": "1s",
                "dashboard_url": DASHBOARD,
            },
        }
        (tmp_path / "exporter.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        agent = Agent(tmp_path, processes, plextera, extend, recorder, am_port, exporter_port)
        agent.start_alertmanager()
        agent.start_exporter()
        yield agent
    finally:
        if recorder is not None:
            recorder.stop()
        processes.stop_all()


def test_failed_and_stuck_runs_reach_alertmanager_once_across_an_outage_and_a_restart(
    agent: Agent,
) -> None:
    plextera_failed = agent.fail(agent.plextera, 3)
    extend_failed = agent.fail(agent.extend, 2)
    (stuck,) = agent.plextera.world.add_runs(
        1, workflow=WORKFLOW, native_status=agent.plextera.native_for("running")
    )
    stuck.run_for = 1e9  # it never finishes by itself

    until(
        "5 failed and 1 stuck alert in Alertmanager",
        lambda: (
            len(agent.alerts("WorkflowRunFailed")) == 5
            and len(agent.alerts("WorkflowRunStuck")) == 1
        ),
        60,
    )
    failed = {a["labels"]["run_id"]: a for a in agent.alerts("WorkflowRunFailed")}
    assert set(failed) == {r.id for r in plextera_failed + extend_failed}
    for run in plextera_failed + extend_failed:
        alert = failed[run.id]
        source = "plextera-agent" if run in plextera_failed else "extend-agent"
        assert alert["labels"] == {
            "alertname": "WorkflowRunFailed",
            "source": source,
            "provider": source.removesuffix("-agent"),
            "workflow": WORKFLOW,
            "code": run.error_code,
            "severity": "warning",
            "run_id": run.id,
        }
        notes = alert["annotations"]
        assert notes["run_id"] == run.id
        assert notes["status"] == "failed"
        assert notes["error_message"] == run.error_message
        assert (
            abs((datetime.fromisoformat(notes["created_at"]) - run.created_at).total_seconds()) < 1
        )
        assert "finished_at" in notes
        # Extend gives each run a link of its own; the others get the configured dashboard.
        expected_link = (
            f"https://dashboard.extend.ai/workflows/runs/{run.id}"
            if source == "extend-agent"
            else DASHBOARD.format(source=source, run_id=run.id)
        )
        assert notes["run_url"] == expected_link
        assert alert["generatorURL"] == expected_link
        assert alert["status"]["state"] == "active"
        # Resolves by itself an hour after the run failed, unless Alertmanager hears more.
        assert datetime.fromisoformat(alert["endsAt"]) > datetime.now(UTC)
    (stuck_alert,) = agent.alerts("WorkflowRunStuck")
    assert stuck_alert["labels"]["run_id"] == stuck.id
    assert stuck_alert["labels"]["code"] == "running"
    assert stuck_alert["labels"]["source"] == "plextera-agent"
    assert stuck_alert["annotations"]["status"] == "running"

    # Alertmanager goes away; runs keep failing and are queued.
    agent.stop_alertmanager()
    during_outage = agent.fail(agent.plextera, 2) + agent.fail(agent.extend, 1)
    until(
        "3 events queued while Alertmanager is down",
        lambda: (
            agent.metric("workflow_exporter_alerts_queued") == 3
            and agent.metric("workflow_exporter_alerts_failed_total") > 0
        ),
        30,
    )

    # The exporter restarts while Alertmanager is still away; meanwhile more runs fail and the
    # stuck run finishes, which resolves its alert.
    agent.stop_exporter()
    while_restarting = agent.fail(agent.plextera, 2)
    agent.plextera.world.finish(stuck.id, agent.plextera.native_for("succeeded"))
    agent.start_exporter()
    until(
        "the earlier 3 events still queued after the restart, plus 2 failures and 1 resolution",
        lambda: agent.metric("workflow_exporter_alerts_queued") == 6,
        30,
    )

    # Alertmanager comes back: the queue drains, and nothing arrives twice.
    agent.start_alertmanager()
    until("the queue drained", lambda: agent.metric("workflow_exporter_alerts_queued") == 0, 60)
    late = during_outage + while_restarting
    until(
        "every failure from the outage in Alertmanager",
        lambda: (
            {a["labels"]["run_id"] for a in agent.alerts("WorkflowRunFailed")}
            == {r.id for r in late}
        ),
        10,
    )
    assert not agent.alerts("WorkflowRunStuck"), "the stuck alert is resolved"

    deliveries = agent.recorder.deliveries()
    expected = Counter(
        {("WorkflowRunFailed", r.id, False): 1 for r in plextera_failed + extend_failed + late}
    )
    expected[("WorkflowRunStuck", stuck.id, False)] = 1
    expected[("WorkflowRunStuck", stuck.id, True)] = 1
    assert deliveries == expected
    assert agent.metric("workflow_exporter_alerts_sent_total") == 6  # since the restart


def test_the_demo_sends_per_run_alerts_to_the_alertmanager_it_is_given(tmp_path: Path) -> None:
    processes = Processes()
    try:
        am_port, port = free_port(), free_port()
        start_alertmanager(processes, tmp_path, am_port, AM_CONFIG)
        alertmanager = f"http://127.0.0.1:{am_port}"
        processes.start(
            [
                *EXPORTER,
                "demo",
                "--web.listen-address",
                f"127.0.0.1:{port}",
                "--alertmanager.url",
                alertmanager,
            ],
            tmp_path / "demo.log",
        )

        def sources_alerting() -> set[str]:
            alerts = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
            return {
                a["labels"]["source"]
                for a in alerts
                if a["labels"]["alertname"] == "WorkflowRunFailed"
            }

        until(
            "failed-run alerts from every simulated provider",
            lambda: sources_alerting() == {f"{provider}-demo" for provider in registry()},
            30,
        )
    finally:
        processes.stop_all()
