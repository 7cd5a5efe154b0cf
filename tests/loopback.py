"""Real components on loopback for the system tests: Alertmanager and Prometheus processes, stopped
by PID, a webhook receiver for what Alertmanager notifies, and polling."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.test_cli import wait_for


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
