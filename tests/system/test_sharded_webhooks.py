"""Webhooks with shards: three real exporter processes share four sources; every signed event is
posted to every replica, and each run is counted exactly once, by its source's owner, within
seconds (the poll is ten minutes away), whichever replica the event reached first. With one
replica stopped, its sources' events get a retryable answer from the others, and the run is
counted once the replica is back.

Each replica listens for webhooks on its own loopback address, `127.<shard>.0.1`, standing in for
a StatefulSet pod's stable name: `webhooks.peer_url_template` points at it by shard.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.core.sharding import bucket
from exporter.simulator.records import SimRun
from exporter.simulator.server import SimulatorServer
from tests.conftest import SimFactory, source_for
from tests.loopback import EXPORTER, Processes, free_port, until, wait_for

pytestmark = [pytest.mark.system, pytest.mark.timeout(180)]

SHARDS = 3
WORKFLOW = "Sharded invoices"
# Chosen so that every shard owns at least one source (asserted below).
SOURCES = {
    "extend-a": "extend",
    "extend-c": "extend",
    "plextera-a": "plextera",
    "plextera-c": "plextera",
}
SECRET = "whsec-shards-0123456789abcdef"


def owner(source: str) -> int:
    return bucket(source, SHARDS)


def webhook_host(shard: int) -> str:
    return f"127.{shard}.0.1"


def free_on_every_host(hosts: list[str]) -> int:
    """A port free on each loopback address (they share one port, as pods share a container
    port)."""
    for _ in range(20):
        port = free_port()
        try:
            for host in hosts:
                with socket.socket() as sock:
                    sock.bind((host, port))
        except OSError:
            continue
        return port
    raise AssertionError("no port free on every loopback address")


@dataclass
class Replicas:
    tmp_path: Path
    processes: Processes
    sims: dict[str, SimulatorServer]
    metrics_ports: list[int]
    webhook_port: int
    running: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    posts: int = 0

    def start(self, shard: int) -> None:
        self.running[shard] = self.processes.start(
            [
                *EXPORTER,
                "run",
                "--config.file",
                str(self.tmp_path / f"exporter-{shard}.yml"),
                "--web.listen-address",
                f"127.0.0.1:{self.metrics_ports[shard]}",
                "--webhook.listen-address",
                f"{webhook_host(shard)}:{self.webhook_port}",
                f"--shard.index={shard}",
                f"--shard.count={SHARDS}",
            ],
            self.tmp_path / f"exporter-{shard}.log",
        )
        ready = f"http://127.0.0.1:{self.metrics_ports[shard]}/readyz"
        wait_for(ready, lambda r: r.status_code == 200, 30)

    def stop(self, shard: int) -> None:
        assert Processes.stop(self.running.pop(shard)) == 0

    def samples(self, shard: int, name: str) -> list[tuple[dict[str, str], float]]:
        url = f"http://127.0.0.1:{self.metrics_ports[shard]}/metrics"
        return [
            (sample.labels, sample.value)
            for family in text_string_to_metric_families(httpx.get(url, timeout=5).text)
            for sample in family.samples
            if sample.name == name
        ]

    def finished(self, shard: int) -> Counter[tuple[str, str, str]]:
        return Counter(
            {
                (labels["source"], labels["workflow"], labels["status"]): int(value)
                for labels, value in self.samples(shard, "workflow_runs_finished_total")
                if value
            }
        )

    def finished_everywhere(self) -> Counter[tuple[str, str, str]]:
        total: Counter[tuple[str, str, str]] = Counter()
        for shard in self.running:
            total += self.finished(shard)
        return total

    def total(self, name: str, **match: str) -> float:
        return sum(
            value
            for shard in self.running
            for labels, value in self.samples(shard, name)
            if all(labels.get(k) == v for k, v in match.items())
        )

    def signed(self, source: str, run: SimRun) -> tuple[bytes, dict[str, str]]:
        """The run's event, signed once as its platform would: the same bytes and headers go to
        every replica."""
        sim = self.sims[source]
        found = sim.webhook_event(run, f"evt_{source}_{run.id}")
        assert found is not None
        raw = json.dumps(found[1]).encode()
        headers = {"Content-Type": "application/json"}
        headers.update(sim.webhook_headers(raw, int(time.time()), SECRET.encode()))
        return raw, headers

    def post(self, shard: int, source: str, event: tuple[bytes, dict[str, str]]) -> httpx.Response:
        self.posts += 1
        url = f"http://{webhook_host(shard)}:{self.webhook_port}/webhooks/{source}"
        return httpx.post(url, content=event[0], headers=event[1], timeout=10)


def truth(sims: dict[str, SimulatorServer]) -> Counter[tuple[str, str, str]]:
    return Counter(
        {
            (source, workflow, status): n
            for source, sim in sims.items()
            for (workflow, status), n in sim.world.truth().finished.items()
            if n
        }
    )


@pytest.fixture
def replicas(tmp_path: Path, simulator: SimFactory) -> Iterator[Replicas]:
    assert {owner(source) for source in SOURCES} == set(range(SHARDS))
    processes = Processes()
    try:
        sims: dict[str, SimulatorServer] = {}
        for name, provider in SOURCES.items():
            sim = simulator(provider, seed=len(sims) + 3, arrival_rate_per_min=0)
            sim.world.add_workflow(WORKFLOW)
            sims[name] = sim
        webhook_port = free_on_every_host([webhook_host(shard) for shard in range(SHARDS)])
        found = Replicas(
            tmp_path, processes, sims, [free_port() for _ in range(SHARDS)], webhook_port
        )
        for shard in range(SHARDS):
            config: dict[str, Any] = {
                # Ten minutes between polls: whatever is counted sooner came by webhook.
                "interval": "600s",
                "jitter_ratio": 0,
                "new_series_hold": "0s",
                "state_path": str(tmp_path / f"state-{shard}.db"),
                "webhooks": {
                    "peer_url_template": f"http://127.{{shard}}.0.1:{webhook_port}",
                    "forward_timeout": "1s",
                },
                "sources": [
                    source_for(sim, sim.provider, name=name, webhook_secret=SECRET)
                    for name, sim in sims.items()
                ],
            }
            path = tmp_path / f"exporter-{shard}.yml"
            path.write_text(yaml.safe_dump(config), encoding="utf-8")
        for shard in range(SHARDS):
            found.start(shard)
        yield found
    finally:
        processes.stop_all()


def test_every_hint_is_counted_once_by_its_owner_whichever_replica_it_reached(
    replicas: Replicas,
) -> None:
    runs: dict[str, list[SimRun]] = {}
    for source, sim in replicas.sims.items():
        runs[source] = [
            *sim.world.add_runs(1, workflow=WORKFLOW, native_status=sim.native_for("failed")),
            *sim.world.add_runs(1, workflow=WORKFLOW, native_status=sim.native_for("succeeded")),
        ]
    started = time.monotonic()
    events = [(source, run) for source, source_runs in runs.items() for run in source_runs]
    for i, (source, run) in enumerate(events):
        event = replicas.signed(source, run)
        # The same event to every replica, each event starting at the next one: the owner is
        # reached first, second or last, directly and through each other replica.
        for shard in [(i + k) % SHARDS for k in range(SHARDS)]:
            answer = replicas.post(shard, source, event)
            assert answer.status_code in (200, 202), (shard, source, answer.status_code)
    expected = truth(replicas.sims)
    assert sum(expected.values()) == 2 * len(SOURCES)
    until("every run counted", lambda: replicas.finished_everywhere() == expected, 5)
    # Within seconds, not at the next poll (ten minutes away).
    assert time.monotonic() - started < 10
    # Each source's runs on its owner alone: no replica counted another's.
    for shard in range(SHARDS):
        assert {source for source, _, _ in replicas.finished(shard)} == {
            source for source in SOURCES if owner(source) == shard
        }
    # Every event reached its owner twice more through the other two replicas: taken once,
    # the forwarded copies answered as replays (or taken first, the direct one a replay).
    forwards = 2 * len(events)
    assert replicas.posts == SHARDS * len(events)
    received = "workflow_exporter_webhooks_received_total"
    assert replicas.total(received, result="forwarded") == forwards
    assert replicas.total(received, result="accepted") == len(events)
    assert replicas.total(received, result="replayed") == forwards
    forwarded = "workflow_exporter_webhooks_forwarded_total"
    assert replicas.total(forwarded, result="delivered") == forwards
    assert replicas.total(forwarded, result="unavailable") == 0
    time.sleep(1.0)
    assert replicas.finished_everywhere() == expected  # and nothing more came later


def test_a_stopped_owner_gets_its_events_refused_as_retryable_and_counts_them_when_back(
    replicas: Replicas,
) -> None:
    down = 2
    (source,) = [s for s in SOURCES if owner(s) == down]
    sim = replicas.sims[source]
    replicas.stop(down)
    (run,) = sim.world.add_runs(1, workflow=WORKFLOW, native_status=sim.native_for("failed"))
    event = replicas.signed(source, run)
    for shard in sorted(replicas.running):
        answer = replicas.post(shard, source, event)
        assert answer.status_code == 503, shard
        assert answer.headers["retry-after"].isdigit()
    unavailable = replicas.total(
        "workflow_exporter_webhooks_forwarded_total", source=source, result="unavailable"
    )
    assert unavailable == len(replicas.running)
    # The other replicas' sources are not held up by it.
    other = next(s for s in SOURCES if owner(s) != down)
    (fine,) = replicas.sims[other].world.add_runs(
        1, workflow=WORKFLOW, native_status=replicas.sims[other].native_for("succeeded")
    )
    assert replicas.post(down - 1, other, replicas.signed(other, fine)).status_code in (200, 202)
    until(
        "the live owner's run counted",
        lambda: replicas.finished_everywhere()[(other, WORKFLOW, "succeeded")] == 1,
        5,
    )
    assert (source, WORKFLOW, "failed") not in replicas.finished_everywhere()

    # Back: its first poll finds the run no event delivered, and counts it once; the
    # platform's retry, now delivered, is a replay or a run already counted.
    replicas.start(down)
    until("the run counted", lambda: replicas.finished_everywhere() == truth(replicas.sims), 10)
    time.sleep(5.5)  # past the forwarders' pause for a peer that did not answer
    assert replicas.post(0, source, event).status_code in (200, 202)
    time.sleep(1.0)
    assert replicas.finished_everywhere() == truth(replicas.sims)
