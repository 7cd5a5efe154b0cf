"""The HTTP client's time limits against a hostile server: `request_deadline` bounds the whole
request (connect, status line, headers, body), and a stop ends a request at once."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from exporter.core.errors import Cancelled, DeadlineError
from exporter.providers.client import ApiClient
from exporter.providers.retry import RetryPolicy
from tests.conftest import ExporterFactory
from tests.hostile import HostileServer, Reply, hostile
from tests.loopback import EXPORTER, free_port, until
from tests.series import up

# Some 8 KiB of headers sent one byte at a time: minutes of a drip, well within what httpcore
# accepts as a header block.
LONG_HEADERS = (("Content-Type", "application/json"), ("X-Padding", "p" * 8000))
DRIP_HEADERS = Reply(headers=LONG_HEADERS, mode="drip_headers", interval=0.05)


def client(
    server: HostileServer, *, deadline: float, stop: threading.Event | None = None
) -> ApiClient:
    return ApiClient(
        source="dripping",
        base_url=server.base_url,
        headers={"Authorization": "Bearer k-hostile-test"},
        timeout=1.0,
        retry=RetryPolicy(max_retries=3, backoff_base=0.01),
        stop=stop,
        deadline=deadline,
    )


@pytest.mark.parametrize("mode", ["drip_headers", "drip_body"])
def test_a_drip_fails_within_request_deadline_naming_the_source(mode: str) -> None:
    reply = Reply(headers=LONG_HEADERS, body=b" " * 10_000, mode=mode, interval=0.05)  # type: ignore[arg-type]
    with hostile(reply) as server:
        api = client(server, deadline=1.5)
        started = time.monotonic()
        with pytest.raises(DeadlineError) as failed:
            api.get_json("/runs", endpoint="list_runs")
        elapsed = time.monotonic() - started
        api.close()
    assert 1.5 <= elapsed < 2.5
    assert str(failed.value) == (
        "source 'dripping', list_runs: no complete response within request_deadline (1.5s)"
    )
    assert server.requests == 1, "a drip is not retried: each retry would hold another deadline"


def test_a_stop_ends_a_dripping_request_within_a_second() -> None:
    stop = threading.Event()
    with hostile(DRIP_HEADERS) as server:
        api = client(server, deadline=600, stop=stop)
        threading.Timer(0.5, stop.set).start()
        started = time.monotonic()
        with pytest.raises(Cancelled):
            api.get_json("/runs", endpoint="list_runs")
        assert time.monotonic() - started < 1.6
        api.close()


def test_a_source_that_drips_its_headers_goes_down(exporter_factory: ExporterFactory) -> None:
    with hostile(DRIP_HEADERS) as server:
        exporter = exporter_factory(
            [
                {
                    "name": "dripping",
                    "provider": "plextera",
                    "base_url": server.base_url,
                    "api_key": "k-hostile-test",
                    "timeout": "1s",
                    "request_deadline": "2s",
                }
            ]
        )
        started = time.monotonic()
        report = exporter.collect_all()[0]
        assert time.monotonic() - started < 3.5
    assert not report.ok
    assert report.error == (
        "source 'dripping', list_runs: no complete response within request_deadline (2s)"
    )
    assert up(exporter, "dripping") == 0


@pytest.mark.parametrize("mode", ["drip_headers", "hang"])
def test_sigterm_ends_an_exporter_stuck_in_a_request(mode: str, tmp_path: Path) -> None:
    with hostile(Reply(headers=LONG_HEADERS, mode=mode, interval=0.05)) as server:  # type: ignore[arg-type]
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "state_path": str(tmp_path / "state.db"),
                    "sources": [
                        {
                            "name": "stuck",
                            "provider": "plextera",
                            "base_url": server.base_url,
                            "api_key": "k-hostile-test",
                            "timeout": "10m",
                            "request_deadline": "1h",
                        }
                    ],
                }
            )
        )
        proc = subprocess.Popen(
            [
                *EXPORTER,
                "--config.file",
                str(config),
                "--web.listen-address",
                f"127.0.0.1:{free_port()}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            until("the exporter's request reached the server", lambda: server.requests > 0, 20)
            time.sleep(1)
            proc.terminate()
            started = time.monotonic()
            _, err = proc.communicate(timeout=15)
            elapsed = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert elapsed < 10, err
    assert proc.returncode == 0, err
