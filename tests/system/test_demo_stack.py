"""`demo-stack` as a user runs it, with shortened timings: the scripted incident must reach the
real Alertmanager as `WorkflowRunsFailedSpike` from the real Prometheus loaded with the shipped
rules, and as the demo SLO's fast-burn page; the agent's per-run alerts must arrive too, and a
SIGTERM must stop every process the command started."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from exporter.commands.demo import demo_slos
from exporter.commands.demo_stack import (
    PROMQL,
    Children,
    StackSettings,
    _check_free,
    links,
    prometheus_config,
    stack_rules,
    start_components,
)
from tests.loopback import EXPORTER, binary, free_port, until


def _settings() -> StackSettings:
    return StackSettings("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", speed=1, incident_after=1)


def test_links_carry_each_query_url_encoded() -> None:
    graphs = [url for title, url in links(_settings()) if title in PROMQL]
    assert len(graphs) == len(PROMQL)
    for url in graphs:
        assert " " not in url
        assert '"' not in url
        assert parse_qs(urlsplit(url).query)["g0.expr"][0] in PROMQL.values()


def test_prometheus_scrapes_the_exporter_under_the_rules_job_name() -> None:
    config = prometheus_config(_settings(), Path("/rules.yml"), Path("/slo-rules.yml"))
    assert config["rule_files"] == ["/rules.yml", "/slo-rules.yml"]
    assert config["scrape_configs"][0]["job_name"] == "workflow-runs-exporter"
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:1"]
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["127.0.0.1:3"]


def test_stack_rules_shorten_every_for_only_when_asked() -> None:
    text = "- alert: A\n  expr: x\n  for: 2m\n- alert: B\n  expr: y\n  for: 10m\n"
    assert stack_rules(text, None) == text
    assert stack_rules(text, "1s").count("for: 1s") == 2


def _alerts(alertmanager: str) -> list[dict[str, Any]]:
    try:
        response = httpx.get(f"http://{alertmanager}/api/v2/alerts", timeout=2)
    except httpx.HTTPError:
        return []
    return list(response.json()) if response.status_code == 200 else []


@pytest.mark.system
@pytest.mark.timeout(120)
def test_demo_stack_incident_reaches_alertmanager_and_everything_stops(tmp_path: Path) -> None:
    stack_log = tmp_path / "demo-stack.log"
    binary("prometheus")
    binary("prometheus-alertmanager")
    exporter, prometheus, alertmanager = (f"127.0.0.1:{free_port()}" for _ in range(3))
    with stack_log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *EXPORTER,
                "demo-stack",
                "--web.listen-address",
                exporter,
                "--prometheus.listen-address",
                prometheus,
                "--alertmanager.listen-address",
                alertmanager,
                "--evaluation-interval",
                "1s",
                "--incident.after",
                "2",
                "--incident.rate",
                "180",
                "--rules.for",
                "2s",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def spike() -> bool:
            return any(
                a["labels"].get("alertname") == "WorkflowRunsFailedSpike"
                and a["labels"].get("source") == "extend-demo"
                and a["labels"].get("workflow") == "Invoices"
                for a in _alerts(alertmanager)
            )

        until("WorkflowRunsFailedSpike in Alertmanager", spike, 60)
        # The demo's SLO pages during the incident: its 1h and 5m windows burn.
        (slo,) = demo_slos()
        until(
            "the demo SLO's fast-burn page in Alertmanager",
            lambda: any(
                a["labels"].get("alertname") == "WorkflowSLOBurnRatePage"
                and a["labels"].get("window") == "1h"
                and a["labels"].get("slo") == slo["name"]
                and a["labels"].get("severity") == "critical"
                and (a["labels"].get("source"), a["labels"].get("workflow"))
                == ("extend-demo", "Invoices")
                for a in _alerts(alertmanager)
            ),
            30,
        )
        # The agent's per-run alerts go to the same Alertmanager.
        until(
            "a per-run alert in Alertmanager",
            lambda: any(
                a["labels"].get("alertname") == "WorkflowRunFailed" for a in _alerts(alertmanager)
            ),
            20,
        )
        text = stack_log.read_text(errors="replace")
        assert re.search(r"extend-demo: \d+ finished \(\+\d+\), \d+ failed", text)
        # Every printed link opens a page (Debian's Prometheus has only the classic UI).
        printed = re.findall(r"^  (\S.*?)  +(http://\S+)$", text, re.MULTILINE)
        assert len(printed) == 6 + len(PROMQL), text
        for title, url in printed:
            page = httpx.get(url, timeout=5, follow_redirects=True)
            assert page.status_code == 200, (title, url, page.status_code)
        assert '"event"' not in text  # console lines, not JSON
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = stack_log.read_text(errors="replace")
    pids = [int(pid) for pid in re.findall(r"demo-stack: \w+ pid (\d+)", text)]
    assert len(pids) == 2, text
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert proc.returncode == 0, text[-3000:]


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        settings = StackSettings(
            f"127.0.0.1:{free_port()}",
            address,
            f"127.0.0.1:{free_port()}",
            speed=1,
            incident_after=None,
        )
        children = Children(tmp_path)
        with pytest.raises(RuntimeError, match="Prometheus cannot listen"):
            start_components(settings, children)
        assert children.started == []


def test_links_take_prometheus_page_prefix() -> None:
    pages = dict(links(_settings(), "/classic"))
    assert pages["Prometheus alerts"] == "http://127.0.0.1:2/classic/alerts"
    assert pages["Prometheus rules"] == "http://127.0.0.1:2/classic/rules"
    assert pages["alerts firing or pending"].startswith("http://127.0.0.1:2/classic/graph?")
    assert pages["exporter landing page"] == "http://127.0.0.1:1/"


def test_a_port_just_freed_is_not_refused() -> None:
    """A server that closed its connections first leaves them in TIME_WAIT for a minute; the
    servers themselves bind with SO_REUSEADDR, so `make demo-stack` right after `make demo` must
    not be refused on the same port."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server's side closes first: it is the one left in TIME_WAIT
    client.recv(1)
    client.close()
    server.close()
    _check_free("the exporter", f"127.0.0.1:{port}")
