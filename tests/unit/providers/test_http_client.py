"""The per-source HTTP client against a real tiny server on 127.0.0.1, answering from a script."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from exporter.core.errors import ApiError, Cancelled, HttpStatusError, PayloadError, TransportError
from exporter.providers.client import ApiClient
from exporter.providers.retry import RetryPolicy, TokenBucket, parse_retry_after

SECRET = "tok-5b2e8f0d-never-in-messages"
AUTH = {"Authorization": f"Bearer {SECRET}"}
FAST = RetryPolicy(max_retries=3, backoff_base=0.01)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering


def ok(body: Any) -> Reply:
    return Reply(200, json.dumps(body).encode(), {"Content-Type": "application/json"})


def error(status: int, code: str = "", message: str = "", **headers: str) -> Reply:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return Reply(status, body, {"Content-Type": "application/json", **headers})


DROP = Reply(drop=True)


class ScriptedServer:
    """Answers each request with the next scripted reply; the last reply repeats."""

    def __init__(self, replies: list[Reply]) -> None:
        self._replies = list(replies)
        self._lock = threading.Lock()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.script = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/api/v1"

    def next_reply(self, path: str, headers: dict[str, str]) -> Reply:
        with self._lock:
            self.requests.append((path, headers))
            return self._replies.pop(0) if len(self._replies) > 1 else self._replies[0]

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    script: ScriptedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """The client hanging up on an oversized body is expected here, not an error."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        reply = self.server.script.next_reply(self.path, dict(self.headers.items()))
        if reply.drop:
            self.close_connection = True
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class RecordingObserver:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.retries: list[str] = []

    def request(self, endpoint: str, code: str, seconds: float) -> None:
        assert seconds >= 0
        self.requests.append((endpoint, code))

    def retry(self, reason: str) -> None:
        self.retries.append(reason)

    def response_headers(self, endpoint: str, headers: Mapping[str, str]) -> None:
        return None


class InstantEvent(threading.Event):
    """A stop event whose waits return at once and are recorded: backoffs without sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return self.is_set()


ServerFactory = Callable[[list[Reply]], ScriptedServer]


@pytest.fixture
def serve() -> Iterator[ServerFactory]:
    started: list[ScriptedServer] = []

    def start(replies: list[Reply]) -> ScriptedServer:
        server = ScriptedServer(replies)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@dataclass
class Harness:
    client: ApiClient
    server: ScriptedServer
    observer: RecordingObserver
    stop: InstantEvent


@pytest.fixture
def harness(serve: ServerFactory) -> Iterator[Callable[..., Harness]]:
    clients: list[ApiClient] = []

    def make(replies: list[Reply], retry: RetryPolicy = FAST, **kwargs: Any) -> Harness:
        server = serve(replies)
        observer = RecordingObserver()
        stop = kwargs.pop("stop", None) or InstantEvent()
        client = ApiClient(
            source="plextera-prod",
            base_url=server.base_url,
            headers=AUTH,
            timeout=2.0,
            retry=retry,
            observer=observer,
            stop=stop,
            **kwargs,
        )
        clients.append(client)
        return Harness(client, server, observer, stop)

    yield make
    for client in clients:
        client.close()


def fetch_error(h: Harness) -> ApiError:
    with pytest.raises(ApiError) as caught:
        h.client.get_json("/workflow-runs", endpoint="runs")
    return caught.value


def assert_no_secret(exc: BaseException) -> None:
    for text in (str(exc), repr(exc), *(str(a) for a in exc.args)):
        assert SECRET not in text


# Success ---------------------------------------------------------------------------------


def test_success_decodes_json_and_sends_auth_and_params(harness: Callable[..., Harness]) -> None:
    h = harness([ok({"data": [1, 2]})])
    response = h.client.get_json("/workflow-runs", endpoint="runs", params={"page": 2, "size": 50})
    assert response.body == {"data": [1, 2]}
    assert response.headers["content-type"] == "application/json"
    path, headers = h.server.requests[0]
    assert path == "/api/v1/workflow-runs?page=2&size=50"
    assert headers["Authorization"] == f"Bearer {SECRET}"
    assert headers["User-Agent"].startswith("workflow-runs-exporter/")
    assert h.observer.requests == [("runs", "200")]
    assert h.observer.retries == []
    assert h.stop.waits == []


def test_set_headers_replaces_the_key_for_later_requests(harness: Callable[..., Harness]) -> None:
    h = harness([ok({})])
    h.client.set_headers({"Authorization": "Bearer rotated"})
    h.client.get_json("/x", endpoint="x")
    assert h.server.requests[0][1]["Authorization"] == "Bearer rotated"


# Retries ---------------------------------------------------------------------------------


def test_429_waits_as_long_as_retry_after_says(harness: Callable[..., Harness]) -> None:
    h = harness([error(429, "RATE_LIMIT_EXCEEDED", **{"Retry-After": "3"}), ok({"n": 1})])
    assert h.client.get_json("/workflow-runs", endpoint="runs").body == {"n": 1}
    assert h.stop.waits == [3.0]
    assert h.observer.retries == ["rate_limited"]
    assert h.observer.requests == [("runs", "429"), ("runs", "200")]


def test_retry_after_as_an_http_date(harness: Callable[..., Harness]) -> None:
    when = format_datetime(datetime.now(tz=UTC) + timedelta(seconds=30), usegmt=True)
    h = harness([error(429, **{"Retry-After": when}), ok({})])
    h.client.get_json("/workflow-runs", endpoint="runs")
    [waited] = h.stop.waits
    assert waited is not None
    assert 25 <= waited <= 30


def test_retry_after_is_really_waited_out(harness: Callable[..., Harness]) -> None:
    h = harness([error(429, **{"Retry-After": "0.2"}), ok({})], stop=threading.Event())
    started = time.monotonic()
    h.client.get_json("/workflow-runs", endpoint="runs")
    assert time.monotonic() - started >= 0.2


def test_retry_after_beyond_the_limit_fails_the_request_at_once(
    harness: Callable[..., Harness],
) -> None:
    h = harness([error(429, **{"Retry-After": "120"}), ok({})])
    exc = fetch_error(h)
    assert isinstance(exc, HttpStatusError)
    assert exc.status == 429
    assert "Retry-After 120s exceeds the limit" in str(exc)
    assert h.stop.waits == []
    assert len(h.server.requests) == 1


def test_server_errors_are_retried_with_backoff_then_raised(
    harness: Callable[..., Harness],
) -> None:
    h = harness([error(503, "UNAVAILABLE", "try later"), error(500), error(502), error(503)])
    exc = fetch_error(h)
    assert isinstance(exc, HttpStatusError)
    assert exc.status == 503
    assert exc.endpoint == "runs"
    assert str(exc) == "source 'plextera-prod', runs: HTTP 503"
    assert len(h.server.requests) == 4
    assert h.observer.retries == ["server_error"] * 3
    assert [code for _, code in h.observer.requests] == ["503", "500", "502", "503"]
    # Full jitter: each wait lies between 0 and base * 2**attempt.
    assert len(h.stop.waits) == 3
    for attempt, waited in enumerate(h.stop.waits):
        assert waited is not None
        assert 0 <= waited <= 0.01 * 2**attempt


def test_server_error_detail_names_the_providers_code_and_message(
    harness: Callable[..., Harness],
) -> None:
    h = harness([error(500, "INTERNAL", "database on fire")], retry=RetryPolicy(max_retries=0))
    assert (
        str(fetch_error(h)) == "source 'plextera-prod', runs: HTTP 500: INTERNAL database on fire"
    )


def test_retry_after_on_503_is_honoured(harness: Callable[..., Harness]) -> None:
    h = harness([error(503, **{"Retry-After": "2"}), ok({})])
    h.client.get_json("/x", endpoint="x")
    assert h.stop.waits == [2.0]
    assert h.observer.retries == ["server_error"]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(harness: Callable[..., Harness], status: int) -> None:
    h = harness([error(status, "NOT_FOUND", "run not found"), ok({})])
    exc = fetch_error(h)
    assert isinstance(exc, HttpStatusError)
    assert exc.status == status
    assert f"HTTP {status}: NOT_FOUND run not found" in str(exc)
    assert len(h.server.requests) == 1
    assert h.observer.retries == []
    assert h.stop.waits == []


def test_transport_errors_are_retried_then_raised(harness: Callable[..., Harness]) -> None:
    h = harness([DROP])
    exc = fetch_error(h)
    assert isinstance(exc, TransportError)
    assert len(h.server.requests) == 4
    assert h.observer.requests == [("runs", "error")] * 4
    assert h.observer.retries == ["transport"] * 3


def test_transport_error_then_success(harness: Callable[..., Harness]) -> None:
    h = harness([DROP, ok({"fine": True})])
    assert h.client.get_json("/x", endpoint="x").body == {"fine": True}
    assert h.observer.retries == ["transport"]


def test_connection_refused_is_a_transport_error(serve: ServerFactory) -> None:
    server = serve([ok({})])
    url = server.base_url
    server.stop()
    observer = RecordingObserver()
    client = ApiClient(
        source="s",
        base_url=url,
        headers=AUTH,
        timeout=1.0,
        retry=RetryPolicy(max_retries=1, backoff_base=0.01),
        observer=observer,
        stop=InstantEvent(),
    )
    try:
        with pytest.raises(TransportError) as caught:
            client.get_json("/x", endpoint="x")
    finally:
        client.close()
    assert observer.requests == [("x", "error")] * 2
    assert_no_secret(caught.value)


def test_malformed_json_is_retried_then_a_payload_error(harness: Callable[..., Harness]) -> None:
    h = harness([Reply(200, b'{"data": [1, 2')])
    exc = fetch_error(h)
    assert isinstance(exc, PayloadError)
    assert "not valid JSON" in str(exc)
    assert len(h.server.requests) == 4
    assert h.observer.retries == ["bad_payload"] * 3


def test_malformed_json_once_then_good(harness: Callable[..., Harness]) -> None:
    h = harness([Reply(200, b"\xff\xfe garbage"), ok([1])])
    assert h.client.get_json("/x", endpoint="x").body == [1]


def test_oversized_response_is_cut_off(harness: Callable[..., Harness]) -> None:
    big = json.dumps({"data": ["x" * 100] * 2000}).encode()
    h = harness([Reply(200, big)], max_response_bytes=1024)
    exc = fetch_error(h)
    assert isinstance(exc, PayloadError)
    assert "max_response_bytes (1024 bytes" in str(exc)
    # The request was made and answered, and is reported as what it was: not a 200.
    assert h.observer.requests == [("runs", "too_large")]


def test_response_at_the_size_limit_is_accepted(harness: Callable[..., Harness]) -> None:
    body = json.dumps({"pad": "x" * 1000}).encode()
    h = harness([Reply(200, body)], max_response_bytes=len(body))
    assert h.client.get_json("/x", endpoint="x").body == {"pad": "x" * 1000}


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_not_followed(
    harness: Callable[..., Harness], serve: ServerFactory, status: int
) -> None:
    elsewhere = serve([ok({"stolen": True})])
    h = harness([Reply(status, b"", {"Location": f"{elsewhere.base_url}/collect"})])
    exc = fetch_error(h)
    assert isinstance(exc, HttpStatusError)
    assert exc.status == status
    assert elsewhere.requests == []
    assert len(h.server.requests) == 1


def test_observer_sees_every_request_and_every_retry(harness: Callable[..., Harness]) -> None:
    h = harness(
        [error(429, **{"Retry-After": "0"}), error(500), DROP, Reply(200, b"nope"), ok({})],
        retry=RetryPolicy(max_retries=4, backoff_base=0.01),
    )
    h.client.get_json("/workflow-runs", endpoint="runs")
    assert h.observer.requests == [
        ("runs", "429"),
        ("runs", "500"),
        ("runs", "error"),
        ("runs", "200"),
        ("runs", "200"),
    ]
    assert h.observer.retries == ["rate_limited", "server_error", "transport", "bad_payload"]


# Stopping --------------------------------------------------------------------------------


def test_stop_interrupts_a_backoff(harness: Callable[..., Harness]) -> None:
    stop = threading.Event()
    h = harness([error(503, **{"Retry-After": "30"})], stop=stop)
    timer = threading.Timer(0.05, stop.set)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(Cancelled):
            h.client.get_json("/x", endpoint="x")
    finally:
        timer.cancel()
    assert time.monotonic() - started < 5
    assert len(h.server.requests) == 1


def test_a_set_stop_event_cancels_before_the_next_attempt(harness: Callable[..., Harness]) -> None:
    h = harness([DROP, ok({})])
    h.stop.set()
    with pytest.raises(Cancelled):
        h.client.get_json("/x", endpoint="x")
    # The attempt under way is cut short too: it may or may not have reached the server.
    assert len(h.server.requests) <= 1


def test_rate_limit_wait_is_taken_before_each_request(harness: Callable[..., Harness]) -> None:
    clock = FakeClock()
    h = harness([ok({})], rate_limiter=TokenBucket(rate=2.0, burst=1.0, clock=clock))
    for _ in range(3):
        h.client.get_json("/x", endpoint="x")
    # The first token is there; each later one is half a second away (the clock does not move).
    assert h.stop.waits == [0.5, 1.0]


# Secrets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "replies",
    [
        [error(401, "UNAUTHORIZED", "bad key")],
        [error(503)],
        [error(429, **{"Retry-After": "999"})],
        [DROP],
        [Reply(200, b"<html>")],
        [Reply(200, b"[" + b"1," * 5000 + b"1]")],
        [Reply(302, b"", {"Location": "http://127.0.0.1:9/"})],
    ],
    ids=["401", "503", "retry-after", "transport", "not-json", "oversized", "redirect"],
)
def test_no_error_message_contains_the_key(
    harness: Callable[..., Harness], replies: list[Reply]
) -> None:
    h = harness(replies, max_response_bytes=1024)
    assert_no_secret(fetch_error(h))


# parse_retry_after -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("-5", 0.0),
        ("", None),
        (None, None),
        ("soon", None),
    ],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("Sun, 01 Mar 2026 12:00:45 GMT", now=now) == 45.0
    assert parse_retry_after("Sun, 01 Mar 2026 11:59:00 GMT", now=now) == 0.0


# TokenBucket -----------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_spaces_requests() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2.5, burst=5, clock=clock)
    assert [bucket.reserve() for _ in range(5)] == [0.0] * 5
    assert bucket.reserve() == pytest.approx(0.4)
    assert bucket.reserve() == pytest.approx(0.8)


def test_token_bucket_with_a_fractional_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=0.5, clock=clock)  # one request every two seconds
    assert bucket.capacity == 1.0
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(2.0)
    clock.now += 1
    # Reserved slots at +0 and +2 s; the next is at +4 s, three seconds from now.
    assert bucket.reserve() == pytest.approx(3.0)
    clock.now += 3
    assert bucket.reserve() == pytest.approx(2.0)


def test_token_bucket_refills_but_never_beyond_its_capacity() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1.0, burst=3, clock=clock)
    for _ in range(3):
        bucket.reserve()
    clock.now += 3600
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() == pytest.approx(1.0)


def test_token_bucket_paces_evenly_by_default() -> None:
    """No burst: within any window of w seconds at most rate * w + 1 requests pass."""
    bucket = TokenBucket(rate=4.0, clock=FakeClock())
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(0.25)
    assert bucket.reserve() == pytest.approx(0.5)


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_token_bucket_needs_a_positive_rate(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        TokenBucket(rate=rate)


def test_every_source_shares_one_certificate_store() -> None:
    """Each client loading its own costs about 20 ms and a megabyte: a thousand sources felt it."""
    first = ApiClient(
        source="a", base_url="https://a.example", headers={}, timeout=1.0, retry=RetryPolicy()
    )
    second = ApiClient(
        source="b", base_url="https://b.example", headers={}, timeout=1.0, retry=RetryPolicy()
    )
    contexts = [
        client._client._transport._pool._ssl_context  # type: ignore[attr-defined]
        for client in (first, second)
    ]
    first.close()
    second.close()
    assert contexts[0] is contexts[1]
