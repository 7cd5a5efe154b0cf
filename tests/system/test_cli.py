"""The commands as a user runs them: real processes, real ports, real signals."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
import yaml

from exporter.providers import registry
from tests.conftest import SimFactory
from tests.loopback import EXPORTER, free_port, stop, wait_for


def test_demo_serves_series_for_every_provider_within_15_seconds(
    processes: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*EXPORTER, "demo", "--web.listen-address", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    processes.append(proc)
    started = time.monotonic()

    def every_provider(response: httpx.Response) -> bool:
        return all(
            f'workflow_runs_finished_total{{provider="{p}",source="{p}-demo"' in response.text
            for p in registry()
        )

    wait_for(f"http://127.0.0.1:{port}/metrics", every_provider, timeout=15)
    assert time.monotonic() - started < 15
    assert list(tmp_path.iterdir()), "the demo's state is in the temp directory"
    code, err = stop(proc)
    assert code == 0, err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == [], "the demo leaves its state behind"


def test_demo_on_a_taken_port_says_so_and_exits_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*EXPORTER, "demo", "--web.listen-address", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_serves_all_endpoints_and_stops_cleanly_on_sigterm(
    simulator: SimFactory, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    sim = simulator("plextera", seed=41)
    sim.world.add_runs(12)
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "interval": "1s",
                "state_path": str(tmp_path / "state.db"),
                "sources": [
                    {
                        "name": "plx",
                        "provider": "plextera",
                        "base_url": sim.base_url,
                        "api_key": "${PLX_KEY}",
                        "backfill": "24h",
                    }
                ],
            }
        )
    )
    port = free_port()
    proc = subprocess.Popen(
        [*EXPORTER, "--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PLX_KEY": sim.api_key, "PATH": "/usr/bin:/bin"},
    )
    processes.append(proc)
    base = f"http://127.0.0.1:{port}"

    wait_for(f"{base}/readyz", lambda r: r.status_code == 200, timeout=15)
    metrics = httpx.get(f"{base}/metrics").text
    assert 'workflow_exporter_source_up{provider="plextera",source="plx"} 1.0' in metrics
    assert httpx.get(f"{base}/healthz").status_code == 200
    landing = httpx.get(f"{base}/")
    assert "plx" in landing.text
    assert 'class="up"' in landing.text
    assert sim.api_key not in metrics + landing.text
    assert httpx.get(f"{base}/nope").status_code == 404

    code, err = stop(proc)
    assert code == 0, err
    assert sim.api_key not in err
    assert (tmp_path / "state.db").exists()


def test_check_reports_each_source_and_fails_on_a_bad_one(
    simulator: SimFactory, tmp_path: Path
) -> None:
    good = simulator("noxus", seed=42)
    good.world.add_runs(7)
    config = tmp_path / "config.yaml"
    sources = [
        {
            "name": "nox",
            "provider": "noxus",
            "base_url": good.base_url,
            "api_key": good.api_key,
            "backfill": "24h",
        }
    ]
    config.write_text(yaml.safe_dump({"sources": sources}))

    ok = subprocess.run(
        [*EXPORTER, "check", "--config.file", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "nox (noxus): ok" in ok.stdout
    assert "runs seen:" in ok.stdout

    sources.append({**sources[0], "name": "nox-bad", "api_key": "not-the-key-1234"})
    config.write_text(yaml.safe_dump({"sources": sources}))
    bad = subprocess.run(
        [*EXPORTER, "check", "--config.file", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1
    assert "nox-bad (noxus): FAILED" in bad.stdout
    assert "401" in bad.stdout
    assert "not-the-key-1234" not in bad.stdout + bad.stderr


def test_simulate_runs_a_provider_standalone(processes: list[subprocess.Popen[str]]) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*EXPORTER, "simulate", "--provider", "noxus", "--port", str(port), "--api-key", "k-1234"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    processes.append(proc)
    response = wait_for(
        f"http://127.0.0.1:{port}/v1/runs?page=1&size=5",
        lambda r: r.status_code == 200,
        timeout=10,
        headers={"X-API-Key": "k-1234"},
    )
    assert "items" in response.json()
    denied = httpx.get(f"http://127.0.0.1:{port}/v1/runs", headers={"X-API-Key": "nope"})
    assert denied.status_code == 401
    code, _ = stop(proc)
    assert code == 0


def test_a_corrupt_state_file_stops_the_exporter_with_a_recovery_path(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    garbage = b"this is not a database" * 100
    state.write_bytes(garbage)
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_path": str(state),
                "sources": [
                    {
                        "name": "nox",
                        "provider": "noxus",
                        "base_url": "http://127.0.0.1:9",
                        "api_key": "k-123456",
                    }
                ],
            }
        )
    )
    result = subprocess.run(
        [*EXPORTER, "--config.file", str(config), "--web.listen-address", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "state error:" in result.stderr
    assert "move the file aside" in result.stderr
    assert "Traceback" not in result.stderr
    assert state.read_bytes() == garbage, "never reset silently"
