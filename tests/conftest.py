"""Shared fixtures: real simulator servers on 127.0.0.1 and exporters wired to them."""

from __future__ import annotations

import contextlib
import io
import logging
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from exporter.app import Exporter
from exporter.config.settings import config_from_data
from exporter.core import logs
from exporter.providers import registry
from exporter.simulator import SIMULATORS, SimulatorServer

# Every provider that has a simulator: the contract suite runs over all of them.
PROVIDERS = sorted(set(registry()) & set(SIMULATORS))

SimFactory = Callable[..., SimulatorServer]
ExporterFactory = Callable[..., Exporter]


_started_simulators: list[SimulatorServer] = []
_configured_secrets: set[str] = set()


@pytest.fixture(autouse=True)
def every_log_line_scanned_for_keys() -> Iterator[io.StringIO]:
    """Every test runs with DEBUG logs (structlog and the standard library alike) captured, and
    afterwards no line may hold any API key the test configured or a simulator accepted."""
    stream = io.StringIO()
    root = logging.getLogger()
    previous_level = root.level
    # Also puts the standard library's records on `stream`, rendered like structlog's.
    logs.configure("debug", "json", stream=stream)
    root.setLevel(logging.DEBUG)
    _started_simulators.clear()
    _configured_secrets.clear()
    yield stream
    root.setLevel(previous_level)
    text = stream.getvalue()
    leaked = sorted(key for key in secrets_to_scan() if key in text)
    assert not leaked, f"API keys or webhook secrets found in the logs: {len(leaked)}"


def secrets_to_scan() -> set[str]:
    """What no log line may hold: every secret the code registered for redaction, and, whether it
    did or not, each simulator's API key and webhook signing secret and each webhook secret an
    exporter of the test was configured with (inline or in a file)."""
    keys = set(logs.registered_secrets()) | _configured_secrets
    for sim in _started_simulators:
        keys.add(sim.api_key)
        if sim.webhooks is not None:
            keys.add(sim.webhooks.secret.decode())
    return {key for key in keys if key}


@pytest.fixture
def simulator() -> Iterator[SimFactory]:
    started: list[SimulatorServer] = []

    def start(provider: str, **kwargs: Any) -> SimulatorServer:
        # Documented rate limits are enforced only where a test asks for them: elsewhere the
        # tests read fast (and their sources set no client-side limit).
        kwargs.setdefault("enforce_rate_limit", False)
        sim = SIMULATORS[provider](**kwargs)
        sim.start()
        started.append(sim)
        _started_simulators.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


def source_for(
    sim: SimulatorServer, provider: str, name: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "name": name or f"{provider}-test",
        "provider": provider,
        "base_url": sim.base_url,
        "api_key": sim.api_key,
        # The simulated world starts now: count everything in it.
        "backfill": "24h",
        "timeout": "2s",
        "rate_limit": 1000,
        **sim.source_settings(),
        **extra,
    }


@pytest.fixture
def exporter_factory(tmp_path: Path) -> Iterator[ExporterFactory]:
    made: list[Exporter] = []

    def make(
        sources: list[dict[str, Any]],
        *,
        state: Path | None = None,
        clock: Callable[[], datetime] | None = None,
        **top: Any,
    ) -> Exporter:
        config = config_from_data(
            {
                "state_path": str(state or tmp_path / "state.db"),
                "sources": sources,
                # Exact-count tests read counts right after a cycle; the zero-first hold has
                # tests of its own (tests/system/test_zero_first.py).
                "new_series_hold": "0s",
                **top,
            },
            environ={},
        )
        for source in config.sources:
            with contextlib.suppress(ValueError):
                _configured_secrets.add(source.read_webhook_secret() or "")
        exporter = Exporter(config, clock=clock) if clock else Exporter(config)
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        if not exporter.stop_event.is_set():
            exporter.shutdown()


@pytest.fixture
def captured_logs(every_log_line_scanned_for_keys: io.StringIO) -> io.StringIO:
    """Every log line of the test, at DEBUG, as JSON."""
    return every_log_line_scanned_for_keys


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; killed at the end if the test did not stop them."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
