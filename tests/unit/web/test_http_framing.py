"""Both listeners (/metrics and the webhooks') against a client that frames its requests to be read
two ways: each attack gets exactly one answer, the connection closes after it, and the request
hidden in it has no effect. Also: HEAD, 405 with Allow, no banner, and the checks of a request
head alone, without a network."""

from __future__ import annotations

import base64
import json
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
import yaml

from exporter.app import Exporter
from exporter.commands.run import server_hooks
from exporter.config.webconfig import load_web_config
from exporter.web.httpframing import head_problem
from exporter.web.server import MetricsServer, ServerLimits
from exporter.webhooks.listener import WebhookListener
from exporter.webhooks.wiring import webhook_service
from tests.conftest import ExporterFactory, SimFactory, source_for
from tests.series import samples
from tests.unit.webhooks.test_webhook_listener import SECRET, signed

LIMITS = ServerLimits(read_timeout=2.0)
PASSWORD = "s3cret-framing-password"


@dataclass
class Listeners:
    """The two listeners of one exporter, and how to see what a request did on each."""

    exporter: Exporter
    metrics: MetricsServer
    webhooks: WebhookListener
    reloads: list[int]

    def webhook_results(self) -> float:
        """Webhook requests handled for source `plx`, whatever their result."""
        found = samples(self.exporter.registry, "workflow_exporter_webhooks_received_total")
        return sum(value for labels, value in found if labels["source"] == "plx")

    def side_effects(self) -> tuple[int, float]:
        return len(self.reloads), self.webhook_results()


@pytest.fixture
def listeners(simulator: SimFactory, exporter_factory: ExporterFactory) -> Iterator[Listeners]:
    sim = simulator("plextera", seed=17, arrival_rate_per_min=0)
    sim.world.add_runs(3)
    exporter: Exporter = exporter_factory(
        [source_for(sim, "plextera", name="plx", webhook_secret=SECRET)],
        webhooks={"max_body_bytes": 4096},
    )
    exporter.collect_all()
    reloads: list[int] = []

    def reload() -> str | None:
        reloads.append(1)
        exporter.reload(exporter.config)
        return None

    service = webhook_service(exporter)
    metrics = MetricsServer("127.0.0.1:0", server_hooks(exporter, reload), limits=LIMITS)
    webhooks = WebhookListener("127.0.0.1:0", service, limits=LIMITS)
    metrics.start()
    webhooks.start()
    yield Listeners(exporter, metrics, webhooks, reloads)
    webhooks.stop()
    metrics.stop()
    service.stop()


def exchange(port: int, data: bytes) -> bytes:
    """Everything the server sends back for `data`, up to its closing the connection (a server
    that keeps it open fails the test at the socket's timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def statuses(stream: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"(?:^|\n)HTTP/1\.1 (\d{3}) ", stream)]


def head_of(stream: bytes) -> dict[str, str]:
    head = stream.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    fields = [line.split(":", 1) for line in head.split("\r\n")[1:]]
    return {name.strip().lower(): value.strip() for name, value in fields}


def body_of(stream: bytes) -> bytes:
    return stream.split(b"\r\n\r\n", 1)[1]


def signed_post(path: bytes = b"/webhooks/plx", *, close: bool = True) -> bytes:
    body = json.dumps({"type": "workflow.run.failed", "data": {"id": "smuggled"}}).encode()
    head = b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n"
    head += b"X-Plextera-Signature: " + signed(body)["X-Plextera-Signature"].encode() + b"\r\n"
    head += b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\n" + body


# What a proxy in front lets through as one harmless GET: the request hidden in it reloads the
# configuration (on /metrics) or delivers a signed event (on the webhook listener). Signed when
# sent: a signature made at import is stale once a long run reaches the test.
def hidden(listener: str) -> bytes:
    if listener == "metrics":
        return b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    return signed_post(close=False)


def with_length(head: bytes, body: bytes) -> bytes:
    return head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


def chunked(body: bytes) -> bytes:
    return f"{len(body):x}".encode() + b"\r\n" + body + b"\r\n0\r\n\r\n"


ATTACKS: dict[str, Callable[[bytes], bytes]] = {
    # The hidden request as the body of a GET: read as one request by a proxy, as two by a
    # server that does not read a GET's body.
    "length on a GET": lambda hidden: with_length(b"GET /readyz HTTP/1.1\r\nHost: x\r\n", hidden),
    "chunked body on a GET": lambda hidden: (
        b"GET /readyz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(hidden)
    ),
    # A proxy taking Content-Length sees one request; a server taking the chunked coding sees an
    # empty body and the hidden request after it.
    "Content-Length with Transfer-Encoding": lambda hidden: (
        b"POST /webhooks/plx HTTP/1.1\r\nHost: x\r\nContent-Length: "
        + str(len(b"0\r\n\r\n" + hidden)).encode()
        + b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        + hidden
    ),
    "Content-Length twice": lambda hidden: (
        b"POST /webhooks/plx HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: "
        + str(len(hidden)).encode()
        + b"\r\n\r\n"
        + hidden
    ),
    "Content-Length as a list": lambda hidden: (
        b"POST /webhooks/plx HTTP/1.1\r\nHost: x\r\nContent-Length: "
        + str(len(hidden)).encode()
        + b", "
        + str(len(hidden)).encode()
        + b"\r\n\r\n"
        + hidden
    ),
    "Content-Length with a sign": lambda hidden: (
        b"POST /webhooks/plx HTTP/1.1\r\nHost: x\r\nContent-Length: +0\r\n\r\n" + hidden
    ),
    "bare LF line endings": lambda hidden: b"GET /readyz HTTP/1.1\nHost: x\n\n" + hidden,
    "bare LF in one field": lambda hidden: (
        b"GET /readyz HTTP/1.1\r\nHost: x\nX-Other: y\r\n\r\n" + hidden
    ),
    # The folded line hides a Content-Length from a server that unfolds, not from one that
    # reads the continuation as a field of its own.
    "obsolete line folding": lambda hidden: (
        b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n Content-Length: "
        + str(len(hidden)).encode()
        + b"\r\n\r\n"
        + hidden
    ),
}


@pytest.mark.parametrize("listener", ["metrics", "webhooks"])
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_an_ambiguous_request_gets_one_answer_then_the_connection_closes(
    listeners: Listeners, listener: str, attack: str
) -> None:
    server = listeners.metrics if listener == "metrics" else listeners.webhooks
    before = listeners.side_effects()

    stream = exchange(server.port, ATTACKS[attack](hidden(listener)))

    assert statuses(stream) == [400], stream[:300]
    assert head_of(stream)["connection"] == "close"
    assert body_of(stream).startswith(b"bad request: ")
    assert listeners.side_effects() == before


@pytest.mark.parametrize("listener", ["metrics", "webhooks"])
def test_the_same_requests_framed_plainly_do_take_effect(
    listeners: Listeners, listener: str
) -> None:
    """The attacks' hidden requests are live: sent on their own, they reload or are received."""
    server = listeners.metrics if listener == "metrics" else listeners.webhooks
    before = listeners.side_effects()
    stream = exchange(
        server.port, hidden(listener).replace(b"Host: x", b"Host: x\r\nConnection: close")
    )
    assert statuses(stream) == ([200] if listener == "metrics" else [202])
    assert listeners.side_effects() != before


def test_a_body_a_request_does_not_read_is_never_read_as_the_next_request(
    listeners: Listeners,
) -> None:
    """A POST whose body its endpoint leaves unread (an unknown source, a reload with a body):
    its answer, then the connection closes, whatever the body looks like."""
    before = listeners.side_effects()
    to_unknown = with_length(b"POST /webhooks/nobody HTTP/1.1\r\nHost: x\r\n", hidden("webhooks"))
    stream = exchange(listeners.webhooks.port, to_unknown)
    assert statuses(stream) == [404]
    assert head_of(stream)["connection"] == "close"
    reload_with_body = with_length(b"POST /-/reload HTTP/1.1\r\nHost: x\r\n", hidden("metrics"))
    stream = exchange(listeners.metrics.port, reload_with_body)
    assert statuses(stream) == [400]
    assert b"takes no body" in body_of(stream)
    assert listeners.side_effects() == before


def test_pipelined_requests_framed_plainly_are_all_answered(listeners: Listeners) -> None:
    plain = b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
    last = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    stream = exchange(listeners.metrics.port, plain + plain + last)
    assert statuses(stream) == [200, 200, 200]
    # On the webhook listener, a body read whole is followed by the next request, checked alike.
    before = listeners.webhook_results()
    stream = exchange(
        listeners.webhooks.port,
        signed_post(close=False) + b"GET /webhooks/plx HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
    )
    assert statuses(stream) == [202, 400]
    assert listeners.webhook_results() == before + 1


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /readyz HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET /readyz HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET /readyz\r\n\r\n", 400),
        (b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431),
        (b"GET /readyz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ],
)
def test_other_malformed_requests_are_refused_on_both_listeners(
    listeners: Listeners, request_bytes: bytes, status: int
) -> None:
    for server in (listeners.metrics, listeners.webhooks):
        stream = exchange(server.port, request_bytes)
        assert statuses(stream) == [status], stream[:200]


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/readyz", "/"])
def test_head_is_answered_as_get_without_the_body(listeners: Listeners, path: str) -> None:
    port = listeners.metrics.port
    get = exchange(port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    head = exchange(port, f"HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert statuses(head) == statuses(get) == [200]
    assert body_of(head) == b""
    assert len(body_of(get)) > 0
    assert head_of(head)["content-type"] == head_of(get)["content-type"]
    if path in ("/healthz", "/readyz"):  # the others move between two requests
        assert head_of(head)["content-length"] == str(len(body_of(get)))


def test_other_methods_are_405_naming_the_allowed_ones(listeners: Listeners) -> None:
    def allow(port: int, method: str, path: str) -> str:
        stream = exchange(
            port, f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        assert statuses(stream) == [405], (method, path, stream[:200])
        # The method is not echoed back (http.server's 501 page named it).
        assert method.encode() not in body_of(stream)
        return head_of(stream)["allow"]

    metrics, webhooks = listeners.metrics.port, listeners.webhooks.port
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "TRACE", "BREW"):
        for path in ("/metrics", "/healthz", "/readyz", "/"):
            assert allow(metrics, method, path) == "GET, HEAD"
        assert allow(webhooks, method if method != "POST" else "GET", "/webhooks/plx") == "POST"
    assert allow(metrics, "GET", "/-/reload") == "POST"
    assert allow(metrics, "HEAD", "/-/reload") == "POST"
    assert listeners.side_effects()[0] == 0


def test_no_answer_names_the_server_or_its_versions(listeners: Listeners) -> None:
    requests = [
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"BREW /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /readyz HTTP/1.1\nHost: x\n\n",
        b"GARBAGE\r\n\r\n",
    ]
    for port in (listeners.metrics.port, listeners.webhooks.port):
        for request in requests:
            stream = exchange(port, request)
            assert len(statuses(stream)) == 1, (request, stream[:200])
            assert "server" not in head_of(stream)
            head = stream.split(b"\r\n\r\n", 1)[0]
            for banner in (b"BaseHTTP", b"Python", b"h11"):
                assert banner not in head


@pytest.fixture
def protected(
    simulator: SimFactory, exporter_factory: ExporterFactory, tmp_path: Path
) -> Iterator[tuple[MetricsServer, list[int]]]:
    sim = simulator("plextera", seed=18)
    exporter = exporter_factory([source_for(sim, "plextera")])
    path = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    path.write_text(yaml.safe_dump({"basic_auth_users": {"prometheus": hashed}}))
    reloads: list[int] = []

    def reload() -> str | None:
        reloads.append(1)
        return None

    server = MetricsServer(
        "127.0.0.1:0", server_hooks(exporter, reload), load_web_config(path), LIMITS
    )
    server.start()
    yield server, reloads
    server.stop()


def test_a_protected_listener_asks_for_credentials_whatever_the_method(
    protected: tuple[MetricsServer, list[int]],
) -> None:
    server, reloads = protected
    for method, path in [
        ("GET", "/metrics"),
        ("HEAD", "/healthz"),
        ("DELETE", "/metrics"),
        ("BREW", "/"),
        ("POST", "/-/reload"),
        ("GET", "/nothing"),
    ]:
        stream = exchange(
            server.port,
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
        )
        assert statuses(stream) == [401], (method, path)
        assert head_of(stream)["www-authenticate"].startswith("Basic")
    assert reloads == []
    token = base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
    credentials = f"Authorization: Basic {token}"
    request = f"DELETE /metrics HTTP/1.1\r\nHost: x\r\n{credentials}\r\nConnection: close\r\n\r\n"
    stream = exchange(server.port, request.encode())
    assert statuses(stream) == [405]


@pytest.mark.parametrize(
    ("head", "problem"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", None),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n", None),
        (b"POST / HTTP/1.1\r\nHost: x\r\ncontent-length:\t7 \r\n\r\n", None),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", None),
        (b"GET / HTTP/1.1\r\nHost: x\r", None),  # not complete yet: the LF may follow
        (b"GET / HTTP/1.1\nHost: x\r\n\r\n", "a line ends in a bare LF"),
        (b"GET / HTTP/1.1\r\nHost: x\n", "a line ends in a bare LF"),
        (b"GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", "a header field is folded over two lines"),
        (b"GET / HTTP/1.1\r\n Host: x\r\n\r\n", "a header field is folded over two lines"),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nCONTENT-LENGTH: 1\r\n\r\n",
            "Content-Length is given more than once",
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n",
            "Content-Length is not one decimal number",
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 1_0\r\n\r\n",
            "Content-Length is not one decimal number",
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: \xd9\xa1\r\n\r\n",
            "Content-Length is not one decimal number",
        ),
        (b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", "Content-Length is not one decimal number"),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            "Content-Length and Transfer-Encoding are both given",
        ),
    ],
)
def test_head_checks_without_a_network(head: bytes, problem: str | None) -> None:
    assert head_problem(head) == problem


def test_a_webhook_expecting_100_continue_gets_it_before_its_body_is_read(
    listeners: Listeners,
) -> None:
    body = json.dumps({"type": "workflow.run.failed", "data": {"id": "r-expect"}}).encode()
    head = (
        b"POST /webhooks/plx HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\n"
        b"X-Plextera-Signature: " + signed(body)["X-Plextera-Signature"].encode() + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", listeners.webhooks.port), timeout=5) as sock:
        sock.sendall(head)
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 ")
        sock.sendall(body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    assert statuses(b"".join(chunks)) == [202]
    # Past the bound: refused at once, no 100 asked for.
    oversized = b"POST /webhooks/plx HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
    stream = exchange(listeners.webhooks.port, oversized + b"Content-Length: 100000\r\n\r\n")
    assert statuses(stream) == [413]
