"""The webhook listener over real sockets: only `POST /webhooks/<source>`, bodies bounded before
they are read, a slow body cut off, TLS from a web config, the secret never in an answer."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from exporter.app import Exporter
from exporter.config.webconfig import load_web_config
from exporter.web.server import ServerLimits
from exporter.webhooks.listener import WebhookListener
from exporter.webhooks.service import WebhookService
from exporter.webhooks.wiring import webhook_service
from tests.conftest import ExporterFactory, SimFactory, source_for
from tests.tls_support import Pki, make_pki

SECRET = "whsec-listener-0123456789abcdef"


@pytest.fixture
def service(simulator: SimFactory, exporter_factory: ExporterFactory) -> Iterator[WebhookService]:
    sim = simulator("plextera", seed=9, arrival_rate_per_min=0)
    exporter: Exporter = exporter_factory(
        [source_for(sim, "plextera", name="plx", webhook_secret=SECRET)],
        webhooks={"max_body_bytes": 2048},
    )
    found = webhook_service(exporter)
    yield found
    found.stop()


@pytest.fixture
def listener(service: WebhookService) -> Iterator[WebhookListener]:
    found = WebhookListener("127.0.0.1:0", service, limits=ServerLimits(read_timeout=0.5))
    found.start()
    yield found
    found.stop()


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    stamp = str(int(time.time()))
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Plextera-Signature": f"t={stamp},v1={mac}"}


def raw_request(port: int, head: bytes, timeout: float = 3.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_only_signed_posts_to_a_known_source_are_taken(listener: WebhookListener) -> None:
    url = listener.url("/webhooks/plx")
    body = json.dumps({"type": "workflow.run.failed", "data": {"id": "r1"}}).encode()
    assert httpx.post(url, content=body, headers=signed(body)).status_code == 202
    wrong = httpx.post(url, content=body, headers=signed(body, "another-secret-123456"))
    assert wrong.status_code == 401
    assert SECRET not in wrong.text
    assert "signature" not in wrong.text.lower()
    assert httpx.get(url).status_code == 405
    assert httpx.get(listener.url("/metrics")).status_code == 405
    assert httpx.post(listener.url("/metrics"), content=body).status_code == 404
    assert httpx.post(listener.url("/webhooks/other"), content=body).status_code == 404
    # Keep-alive after a body read whole: a second request on the same connection.
    with httpx.Client() as client:
        for _ in range(2):
            # 202, or 200 when signed in the same second as the first: the same signature.
            assert client.post(url, content=body, headers=signed(body)).status_code in (200, 202)


def test_bodies_are_bounded_before_they_are_read(listener: WebhookListener) -> None:
    port = listener.port
    # A declared length past the bound is refused at once, without waiting for the body.
    started = time.monotonic()
    answer = raw_request(
        port, b"POST /webhooks/plx HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 413")
    assert time.monotonic() - started < 0.4
    chunked = raw_request(
        port,
        b"POST /webhooks/plx HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
    )
    assert chunked.startswith(b"HTTP/1.1 411")
    # A body that trickles in is cut off at the read deadline, unanswered.
    started = time.monotonic()
    slow = raw_request(
        port, b'POST /webhooks/plx HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"a"', 5
    )
    assert slow == b""
    assert time.monotonic() - started < 2


def test_tls_from_a_web_config(service: WebhookService, tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    pki: Pki = make_pki(tmp_path / "pki")
    path = tmp_path / "web.yml"
    tls = {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key)}
    path.write_text(yaml.safe_dump({"tls_server_config": tls}))
    listener = WebhookListener("127.0.0.1:0", service, load_web_config(path))
    listener.start()
    try:
        url = listener.url("/webhooks/plx")
        assert url.startswith("https://")
        body = json.dumps({"type": "workflow.run.completed", "data": {"id": "r2"}}).encode()
        verify = ssl.create_default_context(cafile=str(pki.ca))
        answer = httpx.post(url, content=body, headers=signed(body), verify=verify)
        assert answer.status_code == 202
        with pytest.raises(httpx.HTTPError):
            httpx.post(url.replace("https://", "http://"), content=body, timeout=3)
    finally:
        listener.stop()


def test_framing_that_a_proxy_could_read_otherwise_is_refused(listener: WebhookListener) -> None:
    port = listener.port
    body = json.dumps({"type": "workflow.run.failed", "data": {"id": "r1"}}).encode()
    sig = signed(body)["X-Plextera-Signature"].encode()
    head = b"POST /webhooks/plx HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Plextera-Signature: "
    head += sig + b"\r\n"
    n = str(len(body)).encode()
    ok = raw_request(port, head + b"Content-Length: " + n + b"\r\n\r\n" + body)
    assert ok.startswith(b"HTTP/1.1 202")
    for lengths in (
        [b"+" + n],
        [n[:1] + b"_" + n[1:]],
        [b" " + n + b" x"],
        [n, n],  # twice, even if equal
        [n, b"0"],
    ):
        fields = b"".join(b"Content-Length: " + value + b"\r\n" for value in lengths)
        answer = raw_request(port, head + fields + b"\r\n" + body)
        assert answer.startswith(b"HTTP/1.1 400"), (lengths, answer[:40])
    for coding in (b"gzip", b"identity", b"chunked", b"gzip, chunked"):
        answer = raw_request(
            port, head + b"Transfer-Encoding: " + coding + b"\r\nContent-Length: " + n + b"\r\n\r\n"
        )
        assert answer.startswith(b"HTTP/1.1 400"), coding
        assert b"Content-Length and Transfer-Encoding" in answer


def test_other_methods_and_odd_paths_find_nothing(listener: WebhookListener) -> None:
    port = listener.port
    for method in (b"HEAD", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"):
        answer = raw_request(
            port, method + b" /webhooks/plx HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert answer.startswith(b"HTTP/1.1 405"), (method, answer[:40])
        assert b"Allow: POST" in answer
    for path in (
        b"/webhooks/../metrics",
        b"/webhooks/..%2fmetrics",
        b"/webhooks/%2e%2e",
        b"/webhooks/plx/",
        b"/webhooks/plx%2f..",
        b"/webhooks/pl%C3%A9",
        b"/webhooks/plx%00",
        b"/webhooks/",
        b"/webhooks",
        b"http://x/webhooks/plx",
    ):
        answer = raw_request(
            port, b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
        )
        assert answer.startswith(b"HTTP/1.1 404"), (path, answer[:40])
    for page in ("/", "/metrics", "/healthz", "/-/reload", "/webhooks/plx"):
        got = httpx.get(listener.url(page))
        assert got.status_code == 405
        assert "workflow" not in got.text


def test_a_bug_in_handling_a_request_is_a_logged_500_not_a_hang_up(
    service: WebhookService, listener: WebhookListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object) -> None:
        raise KeyError("bug")

    monkeypatch.setattr(service, "receive", broken)
    body = b'{"type": "workflow.run.failed", "data": {"id": "r1"}}'
    answer = httpx.post(listener.url("/webhooks/plx"), content=body, headers=signed(body))
    assert answer.status_code == 500
    assert "KeyError" not in answer.text
