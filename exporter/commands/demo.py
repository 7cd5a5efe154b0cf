"""`demo` and `simulate`: the simulated providers, with the exporter in front of them or alone."""

from __future__ import annotations

import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from exporter.commands.run import serve
from exporter.config.settings import config_from_data
from exporter.providers import registry
from exporter.simulator.webhooks import WebhookFaults
from exporter.web.server import MetricsServer
from exporter.webhooks.wiring import WebhookEndpoint

# The provider whose simulator plays the incident: it has both error codes and a review status.
INCIDENT_PROVIDER = "extend"
INCIDENT_SOURCE = f"{INCIDENT_PROVIDER}-demo"


def demo_slos() -> list[dict[str, Any]]:
    """The demo's SLO: 99% of the runs of the incident's workflow succeed. That workflow is made
    steady (it fails one run in a thousand), so only the incident spends the budget."""
    from exporter.simulator.world import WORKFLOW_NAMES

    return [
        {
            "name": "demo-invoices",
            "sources": [INCIDENT_SOURCE],
            # The incident's workflow is its world's first.
            "workflows": {"include": [WORKFLOW_NAMES[0]]},
            "success": {"objective": 99.0},
            # The demo's Prometheus starts empty: ten runs into the incident is enough to page.
            "min_runs": 10,
        }
    ]


def say(lines: Sequence[str]) -> None:
    """Prints the lines in one write: collection already logs (to stderr, from other threads), and
    with an unbuffered stdout (PYTHONUNBUFFERED) `print` writes a line and its newline apart, so a
    log line could land in the middle of a URL."""
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    sys.stdout.flush()


def demo(
    listen: str,
    *,
    speed: float,
    alertmanagers: Sequence[str],
    incident_after: float | None = None,
    incident_rate: float = 12.0,
    on_ready: Callable[[str], None] | None = None,
) -> int:
    """`incident_after`: real seconds until the scripted incident starts (None: no incident),
    `incident_rate` its failures per real minute.
    `on_ready(metrics_url)` is called once the exporter serves."""
    from exporter.simulator import SIMULATORS
    from exporter.simulator.incident import Incident, IncidentPlan

    simulators = []
    incident: tuple[str, Incident] | None = None
    sources: list[dict[str, Any]] = []
    for seed, (provider, sim_cls) in enumerate(sorted(SIMULATORS.items()), start=1):
        # An hour of history, so the dashboards have something to show at once.
        # The incident's workflow (its world's first) fails rarely, in its history too.
        steady = 1 if provider == INCIDENT_PROVIDER else 0
        sim = sim_cls(seed=seed, history_seconds=3600, steady_workflows=steady)
        if incident_after is not None and provider == INCIDENT_PROVIDER:
            plan = IncidentPlan.real_time(
                speed=speed, start_after=incident_after, failures_per_minute=incident_rate
            )
            incident = (INCIDENT_SOURCE, Incident.attach(sim.world, plan))
        sim.start()
        sim.start_driver(speed=speed)
        simulators.append(sim)
        sources.append(
            {
                "name": f"{provider}-demo",
                "provider": provider,
                "base_url": sim.base_url,
                "api_key": sim.api_key,
                # The simulated world runs `speed` times faster than the wall clock, so after a
                # couple of minutes its runs are dated ahead of this process's clock by design:
                # no platform clock is wrong here, and saying so would only teach to ignore it.
                "clock_skew_tolerance": "3650d",
                **sim.source_settings(),
            }
        )
    state_dir = tempfile.mkdtemp(prefix="workflow-runs-exporter-demo-")
    data: dict[str, Any] = {
        "interval": "5s",
        "state_path": str(Path(state_dir) / "state.db"),
        "sources": sources,
        "slos": demo_slos(),
    }
    if alertmanagers:
        # Thresholds short enough that the hour of simulated history has stuck runs and runs
        # waiting on review to show.
        data["alerting"] = {
            "alertmanagers": [{"url": url} for url in alertmanagers],
            "stuck": {"after": "10m"},
            "review": {"after": "15m"},
            "dashboard_url": "http://127.0.0.1:3000/d/workflow-runs?var-source={source}"
            "&var-workflow={workflow}",
        }
    webhooks = _demo_webhooks(simulators, sources)
    config = config_from_data(data)

    def announce(server: MetricsServer) -> None:
        lines = [
            f"demo: {len(simulators)} simulated providers; metrics at {server.url('/metrics')}"
        ]
        lines += [f"demo: per-run alerts go to {url}/api/v2/alerts" for url in alertmanagers]
        if incident is not None:
            source, scripted = incident
            lines.append(
                f"demo: in {incident_after:.0f} s, workflow {scripted.workflow!r} of {source} "
                f"starts failing with {scripted.plan.code} for "
                f"{scripted.plan.duration / speed / 60:.0f} min, and leaves a stuck run and "
                "runs waiting on review"
            )
        say(lines)
        if on_ready is not None:
            on_ready(server.url("/metrics"))

    try:
        return serve(config, listen, on_ready=announce, cycle_summaries=True, webhooks=webhooks)
    finally:
        for sim in simulators:
            sim.stop()
        # The state is the demo's alone: a run leaves nothing behind in the temp directory.
        shutil.rmtree(state_dir, ignore_errors=True)


def _demo_webhooks(simulators: Sequence[Any], sources: list[dict[str, Any]]) -> WebhookEndpoint:
    """The simulators that send webhooks sign them for a loopback listener, with a few dropped,
    duplicated and late, as real deliveries are: counts still match, polls reconcile."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for sim, source in zip(simulators, sources, strict=True):
        if registry()[source["provider"]].webhook_dialect is not None:
            source["webhook_secret"] = secrets.token_hex(16)
            url = f"http://127.0.0.1:{port}/webhooks/{source['name']}"
            faults = WebhookFaults(drop_rate=0.1, duplicate_rate=0.05, max_delay=2.0)
            sim.send_webhooks(url, source["webhook_secret"], faults)
    return WebhookEndpoint(f"127.0.0.1:{port}")


def simulate(
    provider: str,
    *,
    port: int,
    api_key: str | None,
    seed: int,
    speed: float,
    variant: str | None,
) -> int:
    from exporter.simulator import SIMULATORS

    sim_cls = SIMULATORS.get(provider)
    if sim_cls is None:
        print(f"unknown provider {provider!r} (one of: {', '.join(SIMULATORS)})", file=sys.stderr)
        return 2
    kwargs: dict[str, Any] = {"seed": seed, "port": port, "history_seconds": 3600}
    if api_key:
        kwargs["api_key"] = api_key
    if variant is not None:
        answers = sim_cls.variants.get(variant)
        if answers is None:
            names = ", ".join(sim_cls.variants) or "none"
            print(
                f"unknown variant {variant!r} for {provider} (one of: {names})",
                file=sys.stderr,
            )
            return 2
        kwargs["variant"] = answers
    sim = sim_cls(**kwargs)
    sim.start()
    sim.start_driver(speed=speed)
    shown = f", variant {variant}" if variant else ""
    print(f"{provider} simulator at {sim.base_url} (api key {sim.api_key}{shown})", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    sim.stop()
    return 0
