"""The hint workers: a batch that raises (a provider error, a KeyError, a bug in the batch size)
leaves the worker working; a worker that ends anyway is said by /healthz and started again by
the next hint; a stop with hints still queued returns at once."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from exporter.webhooks.hints import Batch, HintWorkers
from tests.conftest import ExporterFactory, SimFactory, source_for


def wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


class _Ended(BaseException):
    """Not an Exception: ends a thread past `except Exception`, as a real one might."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_worker_survives_errors_and_a_dead_one_is_said_and_started_again() -> None:
    handled: list[list[str]] = []
    limits = iter([1, 0])  # the second batch size is a bug: it raises below

    def batch_limit(_source: str) -> int:
        limit = next(limits, 10)
        if limit == 0:
            raise KeyError("source")
        return limit

    def handle(batch: Batch) -> None:
        handled.append(batch.run_ids)
        if batch.run_ids == ["boom"]:
            raise KeyError("boom")
        if batch.run_ids == ["end"]:
            raise _Ended

    workers = HintWorkers(10, handle, batch_limit)
    try:
        assert workers.queue("s").offer("boom", time.monotonic())
        assert wait_for(lambda: handled == [["boom"]])
        workers.queue("s").offer("after", time.monotonic())  # batch size raises once
        assert wait_for(lambda: handled == [["boom"], ["after"]])
        assert workers.dead() == []
        workers.queue("s").offer("end", time.monotonic())
        assert wait_for(lambda: workers.dead() == ["s"])
        # The next hint starts it again.
        workers.queue("s").offer("again", time.monotonic())
        assert wait_for(lambda: handled[-1] == ["again"])
        assert workers.dead() == []
    finally:
        workers.stop()


def test_stop_with_hints_queued_and_one_batch_stuck_returns_promptly() -> None:
    release = threading.Event()
    handled: list[str] = []

    def handle(batch: Batch) -> None:
        handled.extend(batch.run_ids)
        release.wait(10)

    workers = HintWorkers(100, handle, lambda _s: 1)
    for n in range(50):
        workers.queue("s").offer(f"r{n}", time.monotonic())
    assert wait_for(lambda: handled == ["r0"])
    started = time.monotonic()
    workers.stop(timeout=0.5)
    assert time.monotonic() - started < 1.0
    release.set()
    time.sleep(0.1)
    assert handled == ["r0"]  # nothing queued is started after the stop
    assert workers.dead() == []  # stopping is not dying


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_worker_fails_healthz(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    from exporter.webhooks.wiring import webhook_service

    sim = simulator("extend", seed=2, arrival_rate_per_min=0)
    exporter = exporter_factory(
        [source_for(sim, "extend", name="ext", webhook_secret="whsec-workers-0123456789")]
    )
    service = webhook_service(exporter)
    exporter.health_checks.append(service.health)

    def ended(_batch: Batch) -> None:
        raise _Ended

    service.workers._handle = ended
    try:
        assert exporter.health() == []
        service.workers.queue("ext").offer("r1", time.monotonic())
        assert wait_for(lambda: bool(exporter.health()))
        assert exporter.health() == ["source ext: webhook hint worker stopped (see the log)"]
    finally:
        service.stop()


def test_the_log_scan_covers_webhook_secrets_the_code_never_read(
    simulator: SimFactory, exporter_factory: ExporterFactory, tmp_path: Path
) -> None:
    from tests.conftest import secrets_to_scan

    sim = simulator("plextera", seed=2, arrival_rate_per_min=0)
    secret_file = tmp_path / "whsec"
    secret_file.write_text("whsec-from-a-file-0123456789\n", encoding="utf-8")
    exporter_factory(
        [
            source_for(sim, "plextera", name="a", webhook_secret="whsec-inline-0123456789"),
            source_for(sim, "plextera", name="b", webhook_secret_file=str(secret_file)),
        ]
    )
    sim.send_webhooks(sim.base_url + "/never-sent", "whsec-sender-0123456789")
    scanned = secrets_to_scan()
    assert {
        "whsec-inline-0123456789",
        "whsec-from-a-file-0123456789",
        "whsec-sender-0123456789",
    } <= scanned


def test_shutdown_with_a_hint_in_a_stalled_lookup_and_more_queued_is_prompt(
    simulator: SimFactory, exporter_factory: ExporterFactory, captured_logs: io.StringIO
) -> None:
    from exporter.webhooks.wiring import WebhookEndpoint, start_webhooks

    sim = simulator("plextera", seed=5, arrival_rate_per_min=0)
    secret = "whsec-shutdown-0123456789"
    exporter = exporter_factory(
        [source_for(sim, "plextera", name="plx", webhook_secret=secret, timeout="30s")]
    )
    running = start_webhooks(exporter, WebhookEndpoint("127.0.0.1:0"), None)
    assert running is not None
    sim.faults.inject("delay", 1, seconds=20)  # the first lookup stalls
    for n in range(20):
        body = json.dumps({"type": "workflow.run.failed", "data": {"id": f"r{n}"}}).encode()
        stamp = str(int(time.time()))
        mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        answer = httpx.post(
            running.listener.url("/webhooks/plx"),
            content=body,
            headers={"X-Plextera-Signature": f"t={stamp},v1={mac}"},
        )
        assert answer.status_code == 202
    assert wait_for(lambda: bool(exporter.sources["plx"].running_since))  # in the lookup
    started = time.monotonic()
    running.stop()  # what serve() does on SIGTERM
    exporter.shutdown()
    assert time.monotonic() - started < 1.5
    assert "Traceback" not in captured_logs.getvalue()
