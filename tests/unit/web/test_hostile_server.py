"""The exporter's own HTTP server against hostile clients: silent and dripping sockets, crowds of
scrapers, and floods of wrong passwords."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bcrypt
import httpx
import pytest
import yaml

from exporter.app import Exporter
from exporter.commands.run import server_hooks
from exporter.config.webconfig import load_web_config
from exporter.web.server import MetricsServer, ServerLimits
from tests.conftest import ExporterFactory, SimFactory, source_for

PASSWORD = "s3cret-scrape-password"


@pytest.fixture
def exporter(simulator: SimFactory, exporter_factory: ExporterFactory) -> Exporter:
    sim = simulator("plextera", seed=85)
    sim.world.add_runs(5)
    exporter = exporter_factory([source_for(sim, "plextera")])
    exporter.collect_all()
    return exporter


@contextlib.contextmanager
def serving(
    exporter: Exporter, limits: ServerLimits, tmp_path: Path | None = None
) -> Iterator[MetricsServer]:
    web = None
    if tmp_path is not None:
        path = tmp_path / "web.yml"
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
        path.write_text(yaml.safe_dump({"basic_auth_users": {"prometheus": hashed}}))
        web = load_web_config(path)
    server = MetricsServer("127.0.0.1:0", server_hooks(exporter), web, limits)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the server closed `sock` (which sends nothing more)."""
    started = time.monotonic()
    sock.settimeout(seconds)
    while sock.recv(4096):
        pass
    return time.monotonic() - started


def drip_until_closed(sock: socket.socket, data: bytes, interval: float) -> float:
    """Seconds until the server hung up on a client sending `data` a byte per `interval`."""
    started = time.monotonic()
    sock.settimeout(interval)
    try:
        for byte in data:
            sock.send(bytes([byte]))
            with contextlib.suppress(TimeoutError):
                if sock.recv(4096) == b"":
                    break
    except OSError:  # reset, or a broken pipe: hung up
        pass
    return time.monotonic() - started


def test_a_socket_that_sends_nothing_is_closed_after_the_read_timeout(exporter: Exporter) -> None:
    with serving(exporter, ServerLimits(read_timeout=1.0)) as server:
        silent = socket.create_connection(("127.0.0.1", server.port))
        assert 0.8 < closed_within(silent, 5) < 2.5
        silent.close()


def test_a_request_dripped_a_byte_at_a_time_is_cut_off(exporter: Exporter) -> None:
    with serving(exporter, ServerLimits(read_timeout=1.0)) as server:
        dripping = socket.create_connection(("127.0.0.1", server.port))
        request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        assert drip_until_closed(dripping, request, 0.1) < 3
        dripping.close()


def test_silent_sockets_take_no_worker_and_scrapes_go_on(exporter: Exporter) -> None:
    with serving(exporter, ServerLimits(read_timeout=10.0, workers=2)) as server:
        assert server._loop.request_queue_size >= 128
        silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(200)]
        try:
            started = time.monotonic()
            for _ in range(5):
                assert httpx.get(server.url("/metrics"), timeout=2).status_code == 200
            assert time.monotonic() - started < 2
        finally:
            for sock in silent:
                sock.close()


def test_connections_past_the_bound_close_the_longest_idle(exporter: Exporter) -> None:
    with serving(exporter, ServerLimits(read_timeout=10.0, max_connections=10)) as server:
        first = socket.create_connection(("127.0.0.1", server.port))
        later = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(10)]
        try:
            assert closed_within(first, 3) < 3
            assert httpx.get(server.url("/metrics"), timeout=2).status_code == 200
        finally:
            for sock in [first, *later]:
                sock.close()


def test_concurrent_scrapes_share_one_rendering(exporter: Exporter) -> None:
    with serving(exporter, ServerLimits(metrics_max_age=60.0)) as server:
        barrier = threading.Barrier(50)

        def scrape(gzipped: bool) -> bytes:
            barrier.wait()
            headers = {"Accept-Encoding": "gzip" if gzipped else "identity"}
            response = httpx.get(server.url("/metrics"), headers=headers, timeout=10)
            assert response.status_code == 200
            return response.content  # decompressed by httpx where gzipped

        with ThreadPoolExecutor(50) as pool:
            bodies = list(pool.map(scrape, [n % 2 == 0 for n in range(50)]))
        assert len(set(bodies)) == 1
        assert b"workflow_runs_finished_total" in bodies[0]
        assert server.metrics.renders == 1

        exporter.collect_all()  # a cycle: the next scrape renders again
        httpx.get(server.url("/metrics"))
        assert server.metrics.renders == 2


def test_the_rendering_expires_so_the_exporter_own_metrics_stay_fresh(
    exporter: Exporter,
) -> None:
    with serving(exporter, ServerLimits(metrics_max_age=0.2)) as server:
        httpx.get(server.url("/metrics"))
        httpx.get(server.url("/metrics"))
        assert server.metrics.renders == 1
        time.sleep(0.3)
        httpx.get(server.url("/metrics"))
        assert server.metrics.renders == 2


def test_unknown_users_and_wrong_passwords_both_pay_for_bcrypt(
    exporter: Exporter, tmp_path: Path
) -> None:
    with serving(exporter, ServerLimits(), tmp_path) as server:
        auth = server.auth
        assert auth is not None
        url = server.url("/metrics")
        for user, password in [("nobody", PASSWORD), ("prometheus", "wrong"), ("x", "y" * 100)]:
            before = auth.verifications
            assert httpx.get(url, auth=(user, password)).status_code == 401
            assert auth.verifications == before + 1, user
        before = auth.verifications
        assert httpx.get(url, auth=("prometheus", PASSWORD)).status_code == 200
        assert httpx.get(url, auth=("prometheus", PASSWORD)).status_code == 200
        assert auth.verifications == before + 1, "a verified password is remembered"


def test_a_flood_of_wrong_passwords_is_limited_and_does_not_delay_scrapes(
    exporter: Exporter, tmp_path: Path
) -> None:
    with serving(exporter, ServerLimits(), tmp_path) as server:
        url = server.url("/metrics")
        assert httpx.get(url, auth=("prometheus", PASSWORD)).status_code == 200
        stop = threading.Event()
        answers: list[int] = []

        def flood() -> None:
            with httpx.Client(auth=("prometheus", "guess"), timeout=5) as client:
                while not stop.is_set():
                    answers.append(client.get(url).status_code)

        flooders = [threading.Thread(target=flood) for _ in range(8)]
        for thread in flooders:
            thread.start()
        try:
            time.sleep(0.5)
            slowest = 0.0
            for _ in range(20):
                started = time.monotonic()
                response = httpx.get(url, auth=("prometheus", PASSWORD), timeout=5)
                slowest = max(slowest, time.monotonic() - started)
                assert response.status_code == 200
        finally:
            stop.set()
            for thread in flooders:
                thread.join()
        assert slowest < 0.5
        assert set(answers) <= {401, 429}
        assert answers.count(429) > answers.count(401), "most guesses are refused unverified"
