"""Webhook hints end to end: simulators sign and send events to a real exporter process that
polls only once a minute, a real Alertmanager receives the per-run alerts.

A failed run shows on /metrics and in Alertmanager within two seconds of finishing; forged,
stale, replayed and oversized requests are refused and counted and never count a run; a run
deleted a second after it finished is counted; with events dropped, duplicated and delayed at
random, the counts equal the simulators' ground truth once the exporter has polled again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.simulator.server import SimulatorServer
from exporter.simulator.webhooks import WebhookFaults
from tests.conftest import SimFactory, source_for
from tests.loopback import (
    EXPORTER,
    Processes,
    free_port,
    start_alertmanager,
    until,
    wait_for,
)

pytestmark = [pytest.mark.system, pytest.mark.timeout(120)]

WORKFLOW = "Webhook invoices"
SECRETS = {"extend-wh": "whsec-extend-0123456789abcdef", "plextera-wh": "whsec-plex-0123456789ab"}
AM_CONFIG = {
    "route": {"receiver": "none", "group_by": ["alertname"]},
    "receivers": [{"name": "none"}],
}


@dataclass
class Setup:
    tmp_path: Path
    processes: Processes
    sims: dict[str, SimulatorServer]
    port: int
    webhook_port: int
    am_port: int
    exporter: subprocess.Popen[bytes] | None = None

    def start_exporter(self) -> None:
        self.exporter = self.processes.start(
            [
                *EXPORTER,
                "run",
                "--config.file",
                str(self.tmp_path / "exporter.yml"),
                "--web.listen-address",
                f"127.0.0.1:{self.port}",
                "--webhook.listen-address",
                f"127.0.0.1:{self.webhook_port}",
            ],
            self.tmp_path / "exporter.log",
        )
        wait_for(f"http://127.0.0.1:{self.port}/readyz", lambda r: r.status_code == 200, 30)

    def stop_exporter(self) -> None:
        assert self.exporter is not None
        assert Processes.stop(self.exporter) == 0

    def samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        return [
            (sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        ]

    def finished(self, source: str) -> Counter[tuple[str, str]]:
        return Counter(
            {
                (labels["workflow"], labels["status"]): int(value)
                for labels, value in self.samples("workflow_runs_finished_total")
                if labels["source"] == source and value
            }
        )

    def received(self, source: str) -> dict[str, float]:
        return {
            labels["result"]: value
            for labels, value in self.samples("workflow_exporter_webhooks_received_total")
            if labels["source"] == source
        }

    def lookups(self, source: str) -> float:
        return sum(
            value
            for labels, value in self.samples("workflow_exporter_api_requests_total")
            if labels["source"] == source and labels["endpoint"] == "get_run"
        )

    def alerts(self) -> set[str]:
        response = httpx.get(f"http://127.0.0.1:{self.am_port}/api/v2/alerts", timeout=5)
        return {
            a["labels"]["run_id"]
            for a in response.json()
            if a["labels"]["alertname"] == "WorkflowRunFailed"
        }

    def post(self, source: str, body: bytes, headers: dict[str, str]) -> int:
        url = f"http://127.0.0.1:{self.webhook_port}/webhooks/{source}"
        return httpx.post(url, content=body, headers=headers, timeout=5).status_code


def truth(sim: SimulatorServer) -> Counter[tuple[str, str]]:
    return Counter({key: n for key, n in sim.world.truth().finished.items() if n})


@pytest.fixture
def setup(tmp_path: Path, simulator: SimFactory) -> Iterator[Setup]:
    processes = Processes()
    try:
        sims = {}
        for name, provider in (("extend-wh", "extend"), ("plextera-wh", "plextera")):
            sim = simulator(provider, seed=5, arrival_rate_per_min=0)
            sim.world.add_workflow(WORKFLOW)
            sims[name] = sim
        port, webhook_port, am_port = free_port(), free_port(), free_port()
        config: dict[str, Any] = {
            # Polls are a minute apart: whatever shows sooner came by webhook.
            "interval": "60s",
            "jitter_ratio": 0,
            "new_series_hold": "0s",
            "state_path": str(tmp_path / "state.db"),
            "webhooks": {"max_body_bytes": 4096},
            "sources": [
                source_for(sim, sim.provider, name=name, webhook_secret=SECRETS[name])
                for name, sim in sims.items()
            ],
            "alerting": {
                "alertmanagers": [{"url": f"http://127.0.0.1:{am_port}"}],
                "flush_interval": "60s",
            },
        }
        (tmp_path / "exporter.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        found = Setup(tmp_path, processes, sims, port, webhook_port, am_port)
        start_alertmanager(processes, tmp_path, am_port, AM_CONFIG)
        found.start_exporter()
        for name, sim in sims.items():
            sim.send_webhooks(
                f"http://127.0.0.1:{webhook_port}/webhooks/{name}", SECRETS[name], seed=len(name)
            )
        yield found
    finally:
        processes.stop_all()


def extend_signed(body: dict[str, Any], at: float) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    stamp = str(int(at))
    secret = SECRETS["extend-wh"].encode()
    signature = hmac.new(secret, f"v0:{stamp}:".encode() + raw, hashlib.sha256).hexdigest()
    return raw, {"x-extend-request-timestamp": stamp, "x-extend-request-signature": signature}


def test_failed_runs_are_counted_and_alerted_within_two_seconds_of_their_webhook(
    setup: Setup,
) -> None:
    failed = {}
    for name, sim in setup.sims.items():
        (run,) = sim.world.add_runs(1, workflow=WORKFLOW, native_status=sim.native_for("failed"))
        failed[name] = run
    started = time.monotonic()
    until(
        "both failed runs on /metrics and in Alertmanager",
        lambda: (
            all(setup.finished(name)[(WORKFLOW, "failed")] == 1 for name in setup.sims)
            and setup.alerts() == {run.id for run in failed.values()}
        ),
        2.0,
    )
    assert time.monotonic() - started < 2.0
    for name in setup.sims:
        assert setup.received(name)["accepted"] == 1

    # Deleted a second after it finished: the hint's lookup came first.
    sim = setup.sims["extend-wh"]
    (gone,) = sim.world.add_runs(1, workflow=WORKFLOW, native_status=sim.native_for("succeeded"))
    time.sleep(1.0)
    sim.world.delete(gone.id)
    assert setup.finished("extend-wh")[(WORKFLOW, "succeeded")] == 1
    assert setup.finished("extend-wh") == truth(sim)


def test_forged_stale_replayed_and_oversized_requests_are_refused_and_counted(
    setup: Setup,
) -> None:
    sim = setup.sims["extend-wh"]
    (run,) = sim.world.add_runs(1, workflow=WORKFLOW, native_status=sim.native_for("failed"))
    until("the run counted", lambda: setup.finished("extend-wh")[(WORKFLOW, "failed")] == 1, 5)
    lookups = setup.lookups("extend-wh")
    body = {"eventId": "evt_replay", "eventType": "workflow_run.failed", "payload": {"id": run.id}}
    now = time.time()

    raw, headers = extend_signed(body, now)
    forged = {**headers, "x-extend-request-signature": "0" * 64}
    assert setup.post("extend-wh", raw, forged) == 401
    assert setup.post("extend-wh", raw, {}) == 401
    assert setup.post("extend-wh", *extend_signed(body, now - 3600)) == 401
    assert setup.post("extend-wh", raw, headers) == 202
    assert setup.post("extend-wh", raw, headers) == 200  # the platform's retry: harmless
    big = {**body, "eventId": "evt_big", "padding": "x" * 8000}
    assert setup.post("extend-wh", *extend_signed(big, now)) == 413
    unknown = {**body, "eventId": "evt_step", "eventType": "workflow_run.step_run.processed"}
    assert setup.post("extend-wh", *extend_signed(unknown, now)) == 200
    assert setup.post("no-such-source", raw, headers) == 404

    until(
        "the refusals counted",
        lambda: (
            {
                k: v
                for k, v in setup.received("extend-wh").items()
                if k not in ("invalid", "queue_full")
            }
            == {
                "accepted": 2,  # the simulator's own event and the test's signed one
                "bad_signature": 2,
                "stale": 1,
                "replayed": 1,
                "oversized": 1,
                "unknown_event": 1,
            }
        ),
        5,
    )
    # Both accepted events were handled; they name a run already counted, so neither cost a
    # request, and nothing was counted twice.
    until(
        "both hints handled",
        lambda: (
            sum(
                value
                for labels, value in setup.samples(
                    "workflow_exporter_webhook_hint_latency_seconds_count"
                )
                if labels["source"] == "extend-wh"
            )
            == 2
        ),
        5,
    )
    assert setup.lookups("extend-wh") == lookups
    assert setup.finished("extend-wh") == truth(sim) == Counter({(WORKFLOW, "failed"): 1})


def test_with_events_dropped_duplicated_and_late_counts_equal_the_truth_after_a_poll(
    setup: Setup,
) -> None:
    faults = WebhookFaults(drop_rate=0.3, duplicate_rate=0.3, max_delay=0.5)
    senders = [
        sim.send_webhooks(
            f"http://127.0.0.1:{setup.webhook_port}/webhooks/{name}",
            SECRETS[name],
            faults,
            seed=11,
        )
        for name, sim in setup.sims.items()
    ]
    for sim in setup.sims.values():
        for status in ("failed", "succeeded", "cancelled", "failed", "succeeded") * 4:
            sim.world.add_runs(1, workflow=WORKFLOW, native_status=sim.native_for(status))
    until("every delivery out", lambda: not any(s.pending() for s in senders), 5)
    for sender in senders:
        assert sender.stats.dropped > 0
        assert sender.stats.duplicated > 0
    # A restart polls at once (the next poll, without waiting a minute for it).
    setup.stop_exporter()
    setup.start_exporter()
    for name, sim in setup.sims.items():
        until(f"{name} equal to the truth", lambda: setup.finished(name) == truth(sim), 10)  # noqa: B023
