"""A replica that does not own an event's source: it verifies the event, forwards the original
body and signature to the owner once (a real HTTP server on loopback stands in for it), passes
back the owner's answer, refuses as retryable when the owner is unreachable, and never forwards
a request that was forwarded to it."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry

from exporter.core.sharding import bucket
from exporter.webhooks.forward import PEER_BACKOFF, PeerForwarder
from exporter.webhooks.routing import FORWARDED_BY, Forwarded
from exporter.webhooks.service import WebhookService
from exporter.webhooks.wiring import webhook_service
from tests.conftest import ExporterFactory, SimFactory, source_for
from tests.loopback import free_port
from tests.series import samples

SECRET = "whsec-forward-0123456789abcdef"
# Shard 1 of 2 owns it; the exporter under test is shard 0.
SOURCE = next(f"plx-{i}" for i in range(50) if bucket(f"plx-{i}", 2) == 1)
MINE = next(f"plx-{i}" for i in range(50) if bucket(f"plx-{i}", 2) == 0)
RECEIVED = "workflow_exporter_webhooks_received_total"
FORWARDED_TOTAL = "workflow_exporter_webhooks_forwarded_total"


@dataclass
class Peer:
    """The owner's listener: records what it is sent and answers `status`."""

    status: int = 202
    headers: dict[str, str] = field(default_factory=dict)
    seen: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)


def serve(peer: Peer, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            peer.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(peer.status)
            for name, value in peer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    stamp = str(int(time.time()))
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "x-plextera-signature": f"t={stamp},v1={mac}"}


def event(run_id: str) -> bytes:
    return json.dumps({"type": "workflow.run.failed", "data": {"id": run_id}}).encode()


@dataclass
class Setup:
    service: WebhookService
    registry: CollectorRegistry
    peer: Peer

    def counted(self, name: str) -> dict[str, float]:
        return {
            labels["result"]: value
            for labels, value in samples(self.registry, name)
            if labels["source"] == SOURCE
        }


@pytest.fixture
def setup(simulator: SimFactory, exporter_factory: ExporterFactory) -> Iterator[Setup]:
    sim = simulator("plextera", seed=4, arrival_rate_per_min=0)
    peer, port = Peer(), free_port()
    # Shard 1's listener on its own loopback address, as a pod has its own name.
    server = serve(peer, port, "127.1.0.1")
    exporter = exporter_factory(
        [source_for(sim, "plextera", name=name, webhook_secret=SECRET) for name in (SOURCE, MINE)],
        shard={"index": 0, "count": 2},
        webhooks={
            "peer_url_template": f"http://127.{{shard}}.0.1:{port}",
            "forward_timeout": "1s",
        },
    )
    service = webhook_service(exporter)
    try:
        yield Setup(service, exporter.registry, peer)
    finally:
        service.stop()
        server.shutdown()
        server.server_close()


def test_an_event_for_another_shard_is_verified_then_forwarded_as_it_came(setup: Setup) -> None:
    body = event("run-1")
    headers = {**signed(body), "x-request-id": "abc", "connection": "keep-alive"}
    answer = setup.service.receive(SOURCE, headers, body)
    assert answer.status == 202
    ((path, sent, forwarded),) = setup.peer.seen
    assert path == f"/webhooks/{SOURCE}"
    assert forwarded == body
    assert sent["x-plextera-signature"] == headers["x-plextera-signature"]
    assert sent["x-request-id"] == "abc"
    assert sent[FORWARDED_BY] == "0"
    assert setup.counted(RECEIVED)["forwarded"] == 1
    assert setup.counted(RECEIVED)["accepted"] == 0  # the owner counts it, not this replica
    assert setup.counted(FORWARDED_TOTAL) == {"delivered": 1, "refused": 0, "unavailable": 0}
    # This shard's own source is taken here, never forwarded.
    assert setup.service.receive(MINE, signed(event("run-2")), event("run-2")).status == 202
    assert len(setup.peer.seen) == 1


def test_an_unverified_event_is_never_forwarded(setup: Setup) -> None:
    body = event("run-1")
    assert setup.service.receive(SOURCE, signed(body, "not-the-secret-000000"), body).status == 401
    stale = {**signed(body), "x-plextera-signature": "t=1000,v1=00"}
    assert setup.service.receive(SOURCE, stale, body).status == 401
    assert setup.peer.seen == []
    assert setup.counted(RECEIVED)["bad_signature"] == 2


def test_the_owner_s_refusal_is_passed_back_with_its_retry_after(setup: Setup) -> None:
    setup.peer.status, setup.peer.headers = 429, {"Retry-After": "5"}
    answer = setup.service.receive(SOURCE, signed(event("run-1")), event("run-1"))
    assert (answer.status, dict(answer.headers)) == (429, {"Retry-After": "5"})
    # A 5xx is the owner's trouble: retryable, whatever it said.
    setup.peer.status, setup.peer.headers = 500, {"Retry-After": "soon"}
    answer = setup.service.receive(SOURCE, signed(event("run-2")), event("run-2"))
    assert (answer.status, dict(answer.headers)) == (503, {"Retry-After": "10"})
    assert setup.counted(FORWARDED_TOTAL) == {"delivered": 0, "refused": 1, "unavailable": 1}


def test_a_forwarded_event_for_another_shard_is_refused_as_retryable_not_forwarded(
    setup: Setup,
) -> None:
    body = event("run-1")
    answer = setup.service.receive(SOURCE, {**signed(body), FORWARDED_BY: "1"}, body)
    assert answer.status == 503
    assert answer.headers["Retry-After"].isdigit()
    assert setup.peer.seen == []
    assert setup.counted(RECEIVED)["misrouted"] == 1
    assert setup.counted(FORWARDED_TOTAL)["delivered"] == 0
    # Forwarded to its owner (this shard), it is taken as any event.
    mine = {**signed(event("run-2")), FORWARDED_BY: "1"}
    assert setup.service.receive(MINE, mine, event("run-2")).status == 202


def test_an_unreachable_owner_is_paused_then_tried_again() -> None:
    now = [1000.0]
    forwarder = PeerForwarder(0.5, clock=lambda: now[0])
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhooks/x"
    try:
        assert forwarder.forward(url, {}, b"{}").result is Forwarded.UNAVAILABLE
        peer = Peer()
        server = serve(peer, port)
        try:
            # Within the pause: refused at once, the peer not asked.
            assert forwarder.forward(url, {}, b"{}").result is Forwarded.UNAVAILABLE
            assert peer.seen == []
            now[0] += PEER_BACKOFF + 0.1
            assert forwarder.forward(url, {}, b"{}").result is Forwarded.DELIVERED
            assert len(peer.seen) == 1
        finally:
            server.shutdown()
            server.server_close()
    finally:
        forwarder.close()


def test_without_forwarding_no_forwarding_series_are_rendered(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("plextera", seed=4, arrival_rate_per_min=0)
    exporter = exporter_factory([source_for(sim, "plextera", name="plx", webhook_secret=SECRET)])
    service = webhook_service(exporter)
    try:
        assert samples(exporter.registry, FORWARDED_TOTAL) == []
        results = {labels["result"] for labels, _ in samples(exporter.registry, RECEIVED)}
        assert "accepted" in results
        assert not results & {"forwarded", "misrouted"}
    finally:
        service.stop()
