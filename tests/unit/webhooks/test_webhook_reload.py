"""The webhook service follows reloads (sources added and removed, a secret changed), and a
source's static labels reach the webhook self-metrics."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from prometheus_client.exposition import generate_latest

from exporter.config.settings import config_from_data
from exporter.core import logs
from exporter.webhooks.wiring import webhook_service
from tests.conftest import ExporterFactory, SimFactory, source_for


def plextera(body: dict[str, Any], secret: str) -> tuple[dict[str, str], bytes]:
    raw = json.dumps(body).encode()
    stamp = str(int(time.time()))
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + raw, hashlib.sha256).hexdigest()
    return {"x-plextera-signature": f"t={stamp},v1={mac}"}, raw


def run_event(n: int) -> dict[str, Any]:
    return {"type": "workflow.run.completed", "data": {"id": f"run_{n}"}}


def test_a_reload_adds_removes_and_rotates_webhook_sources(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("plextera", seed=31, arrival_rate_per_min=0)
    old, new = "whsec-before-reload-0123", "whsec-after-reload-4567"
    a = source_for(sim, "plextera", name="a", webhook_secret=old, labels={"team": "ops"})
    b = source_for(sim, "plextera", name="b", webhook_secret=new)
    exporter = exporter_factory([a])
    assert old in logs.registered_secrets()  # from the start, before any request
    service = webhook_service(exporter)
    state = str(exporter.config.app.state_path)
    try:
        assert service.receive("a", *plextera(run_event(1), old)).status == 202
        assert service.receive("b", *plextera(run_event(2), new)).status == 404
        text = generate_latest(exporter.exposed).decode()
        assert (
            'workflow_exporter_webhooks_received_total{result="accepted",source="a",team="ops"} 1.0'
            in text
        )

        # The secret changed and b added.
        config = config_from_data(
            {"state_path": state, "sources": [{**a, "webhook_secret": new}, b]}, environ={}
        )
        assert sorted(exporter.reload(config)) == ["added b", "changed a"]
        # Redacted from the reload on, before any request used it.
        assert new in logs.registered_secrets()
        assert service.receive("a", *plextera(run_event(3), old)).status == 401
        assert service.receive("a", *plextera(run_event(4), new)).status == 202
        assert service.receive("b", *plextera(run_event(5), new)).status == 202
        assert sorted(service.sources()) == ["a", "b"]

        # a removed: its webhooks find nothing and its series go.
        config = config_from_data({"state_path": state, "sources": [b]}, environ={})
        assert exporter.reload(config) == ["removed a"]
        assert service.receive("a", *plextera(run_event(6), new)).status == 404
        text = generate_latest(exporter.exposed).decode()
        assert 'source="a"' not in text
        assert 'workflow_exporter_webhooks_received_total{result="accepted",source="b"} 1.0' in text
    finally:
        service.stop()
