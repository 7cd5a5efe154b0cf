"""Real components on loopback for the system tests: Alertmanager and Prometheus processes, stopped
by PID, a webhook receiver for what Alertmanager notifies, free ports, the exporter's command, and
polling."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

EXPORTER = [sys.executable, "-m", "exporter"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    url: str,
    predicate: Callable[[httpx.Response], object],
    timeout: float,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: httpx.Response | None = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=1, headers=headers)
            if predicate(last):
                return last
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(
        f"{url} not as expected within {timeout}s; last: "
        f"{last.status_code if last else None} {last.text[:500] if last else ''}"
    )


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    return proc.returncode, err


def binary(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is installed by `make test` (scripts/install-system-deps.sh)"
    return path


def until(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout}s: {what}")


@dataclass
class Processes:
    """Processes a test starts, each logging to a file; all stopped when the test ends."""

    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        self.started.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[bytes]) -> int:
        """SIGTERM (Prometheus and the exporter flush on it), then SIGKILL if it hangs."""
        if proc.poll() is None:
            proc.terminate()
        try:
            return proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.started:
            self.stop(proc)


@dataclass
class Webhook:
    """Alertmanager's webhook receiver: keeps every notification."""

    notifications: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def alerts(self, alertname: str, status: str) -> list[dict[str, Any]]:
        with self.lock:
            return [
                alert
                for note in self.notifications
                for alert in note["alerts"]
                if alert["labels"].get("alertname") == alertname and alert["status"] == status
            ]


def serve_webhook(webhook: Webhook) -> tuple[ThreadingHTTPServer, int]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with webhook.lock:
                webhook.notifications.append(json.loads(body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


def start_alertmanager(
    processes: Processes, workdir: Path, port: int, config: dict[str, Any]
) -> subprocess.Popen[bytes]:
    """A single Alertmanager (no cluster) on 127.0.0.1:`port`, ready when this returns."""
    config_file = workdir / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    proc = processes.start(
        [
            binary("prometheus-alertmanager"),
            f"--config.file={config_file}",
            f"--storage.path={workdir / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        workdir / "alertmanager.log",
    )
    wait_for(f"http://127.0.0.1:{port}/-/ready", lambda r: r.status_code == 200, 20)
    return proc


def exporter_run(config_file: Path, port: int) -> list[str]:
    """The command that runs the exporter with a config file, serving on 127.0.0.1:`port`."""
    return [
        *EXPORTER,
        "run",
        "--config.file",
        str(config_file),
        "--web.listen-address",
        f"127.0.0.1:{port}",
    ]


def start_exporter(
    processes: Processes, workdir: Path, port: int, config: dict[str, Any]
) -> subprocess.Popen[bytes]:
    """The exporter as a process of its own, with `config` written beside its log."""
    config_file = workdir / "exporter.yml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    return processes.start(exporter_run(config_file, port), workdir / "exporter.log")


def start_prometheus(
    processes: Processes, workdir: Path, port: int, config: dict[str, Any], *flags: str
) -> subprocess.Popen[bytes]:
    """A Prometheus on 127.0.0.1:`port` with its own data directory, ready when this returns."""
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    proc = processes.start(
        [
            binary("prometheus"),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={workdir / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            *flags,
        ],
        workdir / "prometheus.log",
    )
    wait_for(f"http://127.0.0.1:{port}/-/ready", lambda r: r.status_code == 200, 20)
    return proc


def prometheus_query(base_url: str, expr: str) -> list[dict[str, Any]]:
    """An instant query's result vector."""
    response = httpx.get(f"{base_url}/api/v1/query", params={"query": expr}, timeout=5)
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def run_check(workdir: Path, sources: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    """`check` over a config of these sources, as a user runs it."""
    config = workdir / "config.yaml"
    config.write_text(yaml.safe_dump({"sources": sources}))
    return subprocess.run(
        [*EXPORTER, "check", "--config.file", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
