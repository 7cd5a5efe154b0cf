"""Webhook hints: how soon a finished run shows on /metrics, and what they cost in API requests.

    python -m bench.webhooks            # appends nothing; prints the figures and the section

- hint to /metrics: a simulator finishes a run and signs its event at once; the time until a
  scrape of `/metrics` (over HTTP, as Prometheus would) shows it counted. p50 and p99 of 200.
- forwarded hint to /metrics: the same, with two exporters as shards 0 and 1 (each listening on
  its own loopback address, as a pod has its own name) and the event sent to the one that does
  not own the source: it verifies it and forwards it to the owner, whose /metrics is scraped.
- requests per cycle: the same workload (runs finishing between polls) with and without
  webhooks; a hint costs one lookup (none for a finished run an Extend event carries whole), a
  poll what it costs anyway.
"""

from __future__ import annotations

import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Exporter
from exporter.commands.run import server_hooks
from exporter.config.settings import config_from_data
from exporter.core import logs
from exporter.core.sharding import bucket
from exporter.simulator import SIMULATORS, SimulatorServer
from exporter.web.server import MetricsServer
from exporter.webhooks.listener import WebhookListener
from exporter.webhooks.wiring import webhook_service

SECRET = "bench-webhook-secret-0123456789"
WORKFLOW = "Bench invoices"


def _exporter(
    sim: SimulatorServer, workdir: Path, hooks: bool, name: str = "bench", **top: Any
) -> Exporter:
    source: dict[str, Any] = {
        "name": name,
        "provider": sim.provider,
        "base_url": sim.base_url,
        "api_key": sim.api_key,
        "backfill": "1d",
        "rate_limit": 1_000_000,
        **sim.source_settings(),
    }
    if hooks:
        source["webhook_secret"] = SECRET
    shard = top.get("shard", {}).get("index", "")
    data = {
        "state_path": str(workdir / f"state-{hooks}{shard}.db"),
        "new_series_hold": "0s",
        "sources": [source],
        **top,
    }
    workdir.mkdir(parents=True, exist_ok=True)
    return Exporter(config_from_data(data, environ={}))


def _port_on(hosts: list[str]) -> int:
    """A port free on every one of these loopback addresses."""
    for _ in range(20):
        with socket.socket() as first:
            first.bind((hosts[0], 0))
            port = int(first.getsockname()[1])
            try:
                for host in hosts[1:]:
                    with socket.socket() as other:
                        other.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free on every loopback address")


def _counted(url: str) -> float:
    text = httpx.get(url, timeout=5).text  # a whole scrape, as Prometheus takes it
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "workflow_runs_finished_total"
    )


def _requests(exporter: Exporter) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in exporter.registry.collect():
        for sample in family.samples:
            if sample.name == "workflow_exporter_api_requests_total":
                endpoint = sample.labels["endpoint"]
                out[endpoint] = out.get(endpoint, 0.0) + sample.value
    return out


def _latencies(sim: SimulatorServer, url: str, runs: int) -> list[float]:
    """Runs finished one by one, each timed until a scrape of `url` shows it counted."""
    latencies = []
    for index in range(runs):
        status = sim.native_for("failed" if index % 5 == 0 else "succeeded")
        started = time.perf_counter()
        sim.world.add_runs(1, workflow=WORKFLOW, native_status=status)
        deadline = started + 30
        while _counted(url) < index + 1:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"run {index} not counted within 30 s")
            time.sleep(0.002)
        latencies.append(time.perf_counter() - started)
    return latencies


def hint_latency(provider: str, workdir: Path, runs: int = 200) -> list[float]:
    sim = SIMULATORS[provider](seed=1, arrival_rate_per_min=0, enforce_rate_limit=False)
    sim.world.add_workflow(WORKFLOW)
    sim.start()
    exporter = _exporter(sim, workdir, hooks=True)
    service = webhook_service(exporter)
    listener = WebhookListener("127.0.0.1:0", service)
    server = MetricsServer("127.0.0.1:0", server_hooks(exporter))
    listener.start()
    server.start()
    try:
        exporter.collect_all()
        sim.send_webhooks(listener.url("/webhooks/bench"), SECRET)
        return _latencies(sim, server.url("/metrics"), runs)
    finally:
        server.stop()
        listener.stop()
        service.stop()
        exporter.shutdown()
        sim.stop()


def forwarded_hint_latency(provider: str, workdir: Path, runs: int = 200) -> list[float]:
    sim = SIMULATORS[provider](seed=1, arrival_rate_per_min=0, enforce_rate_limit=False)
    sim.world.add_workflow(WORKFLOW)
    sim.start()
    # Shard 1 of 2 owns it; its events are sent to shard 0.
    name = next(f"bench-{i}" for i in range(100) if bucket(f"bench-{i}", 2) == 1)
    hosts = ["127.0.0.1", "127.1.0.1"]
    port = _port_on(hosts)
    template = f"http://127.{{shard}}.0.1:{port}"
    exporters = [
        _exporter(
            sim,
            workdir,
            hooks=True,
            name=name,
            shard={"index": index, "count": 2},
            webhooks={"peer_url_template": template},
        )
        for index in range(2)
    ]
    services = [webhook_service(exporter) for exporter in exporters]
    listeners = [
        WebhookListener(f"{host}:{port}", service)
        for host, service in zip(hosts, services, strict=True)
    ]
    server = MetricsServer("127.0.0.1:0", server_hooks(exporters[1]))
    for listener in listeners:
        listener.start()
    server.start()
    try:
        for exporter in exporters:
            exporter.collect_all()
        sim.send_webhooks(listeners[0].url(f"/webhooks/{name}"), SECRET)
        return _latencies(sim, server.url("/metrics"), runs)
    finally:
        server.stop()
        for listener in listeners:
            listener.stop()
        for service in services:
            service.stop()
        for exporter in exporters:
            exporter.shutdown()
        sim.stop()


def requests_per_cycle(
    provider: str, workdir: Path, hooks: bool, cycles: int = 20, per_cycle: int = 10
) -> tuple[dict[str, float], int]:
    sim = SIMULATORS[provider](seed=2, arrival_rate_per_min=0, enforce_rate_limit=False)
    sim.world.add_workflow(WORKFLOW)
    sim.start()
    exporter = _exporter(sim, workdir, hooks=hooks)
    service = webhook_service(exporter) if hooks else None
    listener = WebhookListener("127.0.0.1:0", service) if service else None
    try:
        if listener is not None:
            listener.start()
            sim.send_webhooks(listener.url("/webhooks/bench"), SECRET)
        exporter.collect_all()
        before = _requests(exporter)
        for _ in range(cycles):
            for index in range(per_cycle):
                status = sim.native_for("failed" if index % 3 == 0 else "succeeded")
                sim.world.add_runs(1, workflow=WORKFLOW, native_status=status)
            sim.world.advance(30)
            if sim.webhooks is not None:
                deadline = time.monotonic() + 10
                while sim.webhooks.pending() and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.2)  # the last hints' lookups
            exporter.collect_all()
        after = _requests(exporter)
        counted = int(sum(sim.world.truth().finished.values()))
        return {k: (after.get(k, 0) - before.get(k, 0)) / cycles for k in after}, counted
    finally:
        if listener is not None:
            listener.stop()
        if service is not None:
            service.stop()
        exporter.shutdown()
        sim.stop()


def main() -> int:
    logs.configure("warning")  # the figures, not a line per failed run
    workdir = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    rows = []
    for provider in ("extend", "plextera"):
        for how, measure in (("", hint_latency), ("forwarded ", forwarded_hint_latency)):
            latencies = sorted(measure(provider, workdir / f"{how}{provider}"))
            p50 = statistics.median(latencies) * 1000
            p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
            rows.append(
                f"| {how}hint to /metrics, {provider}, {len(latencies)} runs | "
                f"p50 {p50:.0f} ms, p99 {p99:.0f} ms | p99 <= 2 s | "
                f"{'met' if p99 < 2000 else 'MISSED'} |"
            )
        for hooks in (False, True):
            per_cycle, _ = requests_per_cycle(provider, workdir / f"{provider}-{hooks}", hooks)
            total = sum(per_cycle.values())
            parts = ", ".join(f"{k} {v:.1f}" for k, v in sorted(per_cycle.items()))
            rows.append(
                f"| API requests per cycle, {provider}, 10 runs finishing per cycle, webhooks "
                f"{'on' if hooks else 'off'} | {total:.1f} ({parts}) |  | — |"
            )
    print("| figure | value | target | |\n|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
