"""`demo-stack`: the demo with a real Prometheus (loaded with the shipped alert rules and the
rules of the demo's SLO) and a real Alertmanager beside it, all on loopback, so the alerts can be
watched firing without wiring anything by hand.

Prometheus and Alertmanager run as child processes in sessions of their own (a Ctrl-C in the
terminal reaches this process only, which then stops them by PID); their configuration, data and
logs live in one temporary directory, removed at the end.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import yaml

from exporter.commands.demo import demo, demo_slos, say
from exporter.config.slos import SloSettings
from exporter.slo.render import dump_rules
from exporter.slo.rules import build_groups

# The job name the shipped rules select on (`job="workflow-runs-exporter"`).
JOB = "workflow-runs-exporter"
RULES_FILE = (
    Path(__file__).resolve().parents[2]
    / "monitoring"
    / "prometheus"
    / "workflow-runs-exporter.rules.yml"
)
INSTALL_HINT = "scripts/install-system-deps.sh (run by `make demo-stack`) installs it"
PROMQL = {
    "failed runs per workflow, last 10 minutes": (
        'sum by (source, workflow) (increase(workflow_runs_finished_total{status="failed"}[10m]))'
    ),
    "errors by code, last 10 minutes": (
        "sum by (source, workflow, code) (increase(workflow_run_errors_total[10m])) > 0"
    ),
    "p95 run duration per source": (
        "histogram_quantile(0.95, sum by (source, le) "
        "(rate(workflow_run_duration_seconds_bucket[10m])))"
    ),
    "oldest active run per status": (
        "max by (source, workflow, status) (workflow_runs_oldest_active_age_seconds)"
    ),
    "SLO error budget left": "slo:period_error_budget_remaining:ratio",
    "alerts firing or pending": "ALERTS",
}


@dataclass(frozen=True)
class StackSettings:
    exporter: str  # host:port of each
    prometheus: str
    alertmanager: str
    speed: float
    incident_after: float | None
    evaluation_interval: str = "5s"
    incident_rate: float = 12.0  # failures per real minute
    # Every rule's `for:` replaced by this (the system test's shortened timings); None: as shipped.
    rules_for: str | None = None
    rules_file: Path = RULES_FILE


def prometheus_config(
    settings: StackSettings, rules_file: Path, slo_rules_file: Path | None = None
) -> dict[str, Any]:
    interval = settings.evaluation_interval
    rule_files = [str(rules_file)] + ([str(slo_rules_file)] if slo_rules_file else [])
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": rule_files,
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [settings.alertmanager]}]}]},
        "scrape_configs": [
            {"job_name": JOB, "static_configs": [{"targets": [settings.exporter]}]},
        ],
    }


def alertmanager_config() -> dict[str, Any]:
    """A receiver with no integrations: the alerts are there to be seen in the UI and API."""
    return {
        "route": {
            "receiver": "demo",
            "group_by": ["alertname", "source", "workflow"],
            "group_wait": "5s",
            "group_interval": "10s",
            "repeat_interval": "1h",
        },
        "receivers": [{"name": "demo"}],
    }


_FOR = re.compile(r"^(\s*for:\s*)\S+\s*$", re.MULTILINE)


def demo_slo_rules() -> str:
    """The rules of the demo's SLO, as `slo-rules` writes them for its configuration."""
    slos = [SloSettings.model_validate(slo) for slo in demo_slos()]
    return dump_rules(build_groups(slos), "# The demo's SLO (exporter.commands.demo.demo_slos).\n")


def stack_rules(text: str, rules_for: str | None) -> str:
    """The shipped rules, with every `for:` shortened when asked (only for tests)."""
    return text if rules_for is None else _FOR.sub(lambda m: m.group(1) + rules_for, text)


def prometheus_ui(address: str) -> str:
    """The path prefix of Prometheus's web pages: "/classic" for a build with only the classic UI
    (Debian's package, which `make demo-stack` installs: its `/alerts` and `/rules` answer 404),
    else "". Read from where `/` redirects to."""
    try:
        response = httpx.get(f"http://{address}/", timeout=2)
    except httpx.HTTPError:
        return ""
    return "/classic" if response.headers.get("location", "").startswith("/classic/") else ""


def links(settings: StackSettings, ui: str = "") -> list[tuple[str, str]]:
    """`ui`: Prometheus's page prefix (`prometheus_ui`)."""
    prometheus = f"http://{settings.prometheus}"
    out = [
        ("exporter landing page", f"http://{settings.exporter}/"),
        ("exporter metrics", f"http://{settings.exporter}/metrics"),
        ("Prometheus alerts", f"{prometheus}{ui}/alerts"),
        ("Prometheus rules", f"{prometheus}{ui}/rules"),
        ("Alertmanager", f"http://{settings.alertmanager}/#/alerts"),
        ("Alertmanager API", f"http://{settings.alertmanager}/api/v2/alerts"),
    ]
    for title, expr in PROMQL.items():
        query = urlencode(
            {"g0.expr": expr, "g0.tab": "0", "g0.range_input": "30m"}, quote_via=quote
        )
        out.append((title, f"{prometheus}{ui}/graph?{query}"))
    return out


class Children:
    """Processes this command started, each in its own session, stopped by PID."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, cmd: list[str], ready_url: str) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.started.append((name, proc))
        (self.workdir / "pids").write_text(
            "".join(f"{n} {p.pid}\n" for n, p in self.started), encoding="utf-8"
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                log = (self.workdir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log}")
            try:
                if httpx.get(ready_url, timeout=1).status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} not ready at {ready_url} within 30 s")

    def stop_all(self) -> None:
        for _, proc in reversed(self.started):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in self.started:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed; {INSTALL_HINT}")
    return path


def _check_free(what: str, address: str) -> None:
    """A port already taken (say by a Prometheus of one's own) would make the readiness check
    pass against that other process: refused up front instead."""
    host, _, port = address.rpartition(":")
    with socket.socket() as sock:
        # As the servers bind: connections of a run just stopped, left in TIME_WAIT, do not
        # hold the port, while a listener still does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host or "127.0.0.1", int(port)))
        except (OSError, ValueError) as exc:
            raise RuntimeError(
                f"{what} cannot listen on {address} ({exc}); choose another address"
            ) from exc


def start_components(settings: StackSettings, children: Children) -> None:
    workdir = children.workdir
    _check_free("the exporter", settings.exporter)
    _check_free("Prometheus", settings.prometheus)
    _check_free("Alertmanager", settings.alertmanager)
    if not settings.rules_file.is_file():
        raise RuntimeError(f"alert rules not found at {settings.rules_file} (use --rules.file)")
    rules = workdir / "rules.yml"
    rules.write_text(
        stack_rules(settings.rules_file.read_text(encoding="utf-8"), settings.rules_for),
        encoding="utf-8",
    )
    slo_rules = workdir / "slo-rules.yml"
    slo_rules.write_text(demo_slo_rules(), encoding="utf-8")
    (workdir / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager_config()))
    config = prometheus_config(settings, rules, slo_rules)
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    children.start(
        "alertmanager",
        [
            _binary("prometheus-alertmanager"),
            f"--config.file={workdir / 'alertmanager.yml'}",
            f"--storage.path={workdir / 'alertmanager-data'}",
            f"--web.listen-address={settings.alertmanager}",
            "--cluster.listen-address=",  # a single Alertmanager: no gossip port on 0.0.0.0
        ],
        f"http://{settings.alertmanager}/-/ready",
    )
    children.start(
        "prometheus",
        [
            _binary("prometheus"),
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'prometheus-data'}",
            f"--web.listen-address={settings.prometheus}",
            # Without it a new alert waits up to a minute before it is sent to Alertmanager.
            "--rules.alert.resend-delay=1s",
        ],
        f"http://{settings.prometheus}/-/ready",
    )


def demo_stack(settings: StackSettings, *, alertmanagers: Sequence[str] = ()) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="workflow-runs-demo-stack-"))
    children = Children(workdir)
    try:
        try:
            start_components(settings, children)
        except RuntimeError as exc:
            print(f"demo-stack: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:  # Ctrl-C before the exporter took over the signals
            return 130
        for name, proc in children.started:
            print(f"demo-stack: {name} pid {proc.pid} (logs in {workdir})", flush=True)

        ui = prometheus_ui(settings.prometheus)

        def announce(_metrics_url: str) -> None:
            width = max(len(title) for title, _ in links(settings, ui))
            lines = [f"  {title:<{width}}  {url}" for title, url in links(settings, ui)]
            say([*lines, "demo-stack: Ctrl-C stops everything"])

        return demo(
            settings.exporter,
            speed=settings.speed,
            alertmanagers=[f"http://{settings.alertmanager}", *alertmanagers],
            incident_after=settings.incident_after,
            incident_rate=settings.incident_rate,
            on_ready=announce,
        )
    finally:
        children.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
