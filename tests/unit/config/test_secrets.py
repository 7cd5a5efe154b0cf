"""API keys and Alertmanager credentials never reach a log line, an error message or /metrics,
even at DEBUG."""

from __future__ import annotations

import base64
import io
import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from exporter.alerting.delivery import Sender
from exporter.alerting.events import AlertEvent, AlertPlan, sanitise
from exporter.alerting.outbox import Outbox, writer
from exporter.config.alerting import AlertingSettings
from exporter.core.logs import get_logger, redact, register_secret
from exporter.core.units import DEFAULT_BUCKETS
from exporter.providers.client import _error_detail
from exporter.state.store import Store
from tests.conftest import ExporterFactory, SimFactory, source_for
from tests.series import exposition


def test_keys_never_appear_in_logs_errors_or_metrics(
    simulator: SimFactory, exporter_factory: ExporterFactory, captured_logs: io.StringIO
) -> None:
    plextera = simulator("plextera", seed=31, api_key="plx-secret-key-7f3a9c")
    noxus = simulator("noxus", seed=32, api_key="nox-secret-key-b81d2e")
    wrong = "nox-wrong-key-55aa11"
    for sim in (plextera, noxus):
        sim.world.add_runs(10)
        sim.unknown_status(1)
    plextera.bad_record(1)
    exporter = exporter_factory(
        [
            source_for(plextera, "plextera", name="plx"),
            source_for(noxus, "noxus", name="nox"),
            {**source_for(noxus, "noxus", name="nox-wrong"), "api_key": wrong},
        ]
    )
    keys = [plextera.api_key, noxus.api_key, wrong]

    reports = exporter.collect_all()
    plextera.faults.inject("status", count=10, code=500)
    reports += exporter.collect_all()

    errors = [r.error for r in reports if r.error]
    assert errors, "the scenario must produce errors to scan"
    lines = captured_logs.getvalue().splitlines()
    assert len(lines) >= 3, "the scenario must produce log lines to scan"
    for line in lines:
        json.loads(line)  # every line is JSON when not on a terminal
    metrics_text = exposition(exporter)
    for key in keys:
        assert key not in captured_logs.getvalue()
        assert key not in metrics_text
        assert all(key not in error for error in errors)


def test_alertmanager_credentials_are_sent_but_never_logged(
    tmp_path: Path, captured_logs: io.StringIO
) -> None:
    """The token and password go to Alertmanager (which refuses them here, 401) and nowhere else:
    not the log at DEBUG, not the refused alerts' queue."""
    token, password = "am-token-secret-9c1f44", "am-password-secret-77e0aa"
    seen: list[str] = []

    class Refusing(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen.append(self.headers.get("Authorization", ""))
            body = f"unauthorized: {self.headers.get('Authorization')}".encode()
            self.send_response(401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    store = Store(tmp_path / "state.db", DEFAULT_BUCKETS)
    event = AlertEvent(
        "failed/s/r1",
        "s",
        {"labels": {"alertname": "WorkflowRunFailed", "run_id": "r1"}, "annotations": {}},
    )
    store.write(writer("s", AlertPlan(events=[event]), datetime.now(UTC)))
    settings = AlertingSettings.model_validate(
        {
            "alertmanagers": [
                {"url": url, "bearer_token": token},
                {"url": url + "/second", "username": "exporter", "password": password},
            ]
        }
    )
    failures: list[str] = []

    class Observer:
        def sent(self, kind: str, count: int) -> None:
            pass

        def failed(self, reason: str, count: int) -> None:
            failures.append(reason)

    sender = Sender(settings, Outbox(store), Observer())
    try:
        assert sender.flush() == 0
    finally:
        sender.close()
        server.shutdown()
        server.server_close()
        store.close()
    assert seen[0] == f"Bearer {token}"
    assert seen[1].startswith("Basic ")
    assert failures == ["401", "401"]
    logged = captured_logs.getvalue()
    assert "401" in logged, "the refusal is logged"
    assert token not in logged
    assert password not in logged
    assert base64.b64encode(f"exporter:{password}".encode()).decode() not in logged


CUT_KEY = "sk-live-4e1f9a7b2c8d0e3f5a6b"  # 26 characters, like the providers' keys


def longest_run_of(key: str, text: str) -> int:
    """The most consecutive characters of `key` that `text` shows."""
    return max(
        (
            size
            for size in range(1, len(key) + 1)
            for start in range(len(key) - size + 1)
            if key[start : start + size] in text
        ),
        default=0,
    )


def test_a_key_cut_by_truncation_is_still_masked(captured_logs: io.StringIO) -> None:
    register_secret(CUT_KEY)
    message = "provider said: invalid key " + CUT_KEY + " for this workspace"
    for cut in range(len(message) + 1):
        # Cut before it reaches the log (a provider's message, bounded by an earlier layer)...
        assert longest_run_of(CUT_KEY, redact(message[:cut])) < 8, cut
        assert longest_run_of(CUT_KEY, redact(message[cut:])) < 8, cut
        # ...or masked first and cut after, as this code base does where it cuts.
        assert longest_run_of(CUT_KEY, redact(message)[:cut]) < 8, cut
        assert longest_run_of(CUT_KEY, sanitise(message[:cut], 500, [CUT_KEY])) < 8, cut
        get_logger("test").warning("cut", error=message[:cut])
    assert longest_run_of(CUT_KEY, captured_logs.getvalue()) < 8


def test_a_provider_error_body_is_masked_before_it_is_cut() -> None:
    register_secret(CUT_KEY)
    for pad in range(170, 200):
        body = json.dumps({"error": {"message": "x" * pad + " " + CUT_KEY}}).encode()
        assert longest_run_of(CUT_KEY, _error_detail(body)) < 8, pad
