"""Chaos run: four simulators with randomised faults, an exporter process SIGKILLed at random
moments and restarted on the same state file, then an exact comparison with ground truth.

    python -m tests.chaos --kills 50 --faults 1000      # `make chaos`

Each simulator may also answer one way its docs leave open that a client must not trust (no
single-run endpoint, a clock ahead, ...: `DRAWN_VARIANTS`), drawn at random; the audit walk runs
every few seconds and counts what the fast path missed.

After the faults stop and a few clean cycles pass (and, where variants were drawn, two audit walks
complete), every `workflow_runs_finished_total`,
`workflow_run_errors_total`, `workflow_runs_active`, `workflow_run_steps_total` and step-duration
`_count` series must equal the simulators' ground truth exactly, and every duration histogram's
`_count` must equal its counter.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.providers import registry
from exporter.simulator import SIMULATORS, SimulatorServer
from exporter.simulator.webhooks import WebhookFaults
from tests.series import errors_by_workflow

UNKNOWN_STATUS = "MYSTERY_STATE"
# The simulators' variants a chaos run may draw: answers a real API may give that the docs never
# rule out, under which counts must still end exact (or exact after the next audit walk).
DRAWN_VARIANTS = (
    "lookups_absent",
    "lookups_refused",
    "clock_ahead",
    "per_workflow_ids",
    "control_char_ids",
    "totals_low",
    "totals_negative",
    "totals_absurd",
    "huge_numbers",
    "cursor_cycle",
)
WEBHOOK_SECRET = "chaos-webhook-secret-0123456789"


@dataclass
class ChaosResult:
    faults: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    runs_checked: int = 0
    series_checked: int = 0
    mismatches: list[str] = field(default_factory=list)
    seconds: float = 0.0
    variants: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [
            f"chaos: {self.kills} kills survived, {sum(self.faults.values())} faults injected, "
            f"{self.runs_checked} runs checked, {self.series_checked} series compared, "
            f"{len(self.mismatches)} mismatches, {self.seconds:.0f}s",
            "faults by kind: "
            + ", ".join(f"{kind}={n}" for kind, n in sorted(self.faults.items())),
            "variants drawn: "
            + (", ".join(f"{s}={v}" for s, v in sorted(self.variants.items())) or "none"),
        ]
        lines += [f"MISMATCH {m}" for m in self.mismatches[:50]]
        return "\n".join(lines)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Fleet:
    """The simulators, one per provider, and the knobs the chaos turns."""

    def __init__(self, seed: int, *, variants: bool = True) -> None:
        self.sims: dict[str, SimulatorServer] = {}
        self.variants: dict[str, str] = {}
        rng = random.Random(seed)
        for index, provider in enumerate(sorted(SIMULATORS)):
            cls = SIMULATORS[provider]
            names = [n for n in DRAWN_VARIANTS if n in cls.variants] if variants else []
            drawn = rng.choice([None, *names]) if names else None
            if drawn is not None:
                self.variants[f"{provider}-chaos"] = drawn
            sim = cls(
                variant=cls.variants[drawn] if drawn else None,
                seed=seed + index,
                arrival_rate_per_min=40,
                enforce_rate_limit=False,
                history_seconds=900,  # a few hundred runs already there at the first start
            )
            sim.start()
            sim.start_driver(speed=1.0, tick=0.25)
            self.sims[f"{provider}-chaos"] = sim

    def sources(self) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "provider": sim.provider,
                "base_url": sim.base_url,
                "api_key": sim.api_key,
                "backfill": "24h",
                "timeout": "1s",
                "request_deadline": "3s",
                "max_retries": 1,
                "page_size": 10,
                # Audit walks every few seconds: what a drawn variant hides is found in time.
                "audit_interval": "10s",
                "audit_requests_per_cycle": 40,
                **sim.source_settings(),
                **({"webhook_secret": WEBHOOK_SECRET} if self.hooked(sim) else {}),
            }
            for name, sim in self.sims.items()
        ]

    @staticmethod
    def hooked(sim: SimulatorServer) -> bool:
        return registry()[sim.provider].webhook_dialect is not None

    def send_webhooks(self, port: int, seed: int) -> None:
        """Webhooks dropped, duplicated and late, and sent while the exporter is killed too."""
        faults = WebhookFaults(drop_rate=0.2, duplicate_rate=0.2, max_delay=1.0)
        for name, sim in self.sims.items():
            if self.hooked(sim):
                url = f"http://127.0.0.1:{port}/webhooks/{name}"
                sim.send_webhooks(url, WEBHOOK_SECRET, faults, seed)

    def webhook_stats(self, faults: Counter[str]) -> None:
        for sim in self.sims.values():
            if sim.webhooks is not None:
                faults["webhook_dropped"] += sim.webhooks.stats.dropped
                faults["webhook_duplicated"] += sim.webhooks.stats.duplicated
                faults["webhook_unanswered"] += sim.webhooks.stats.failed

    def calm(self) -> None:
        for sim in self.sims.values():
            sim.stop_driver()
            sim.faults.clear()
            sim.arrivals_per_list_request = 0
            sim.deletions_per_list_request = 0
            sim.bad_records.clear()

    def stop(self) -> None:
        for sim in self.sims.values():
            sim.stop()


def _inject(rng: random.Random, sim: SimulatorServer, faults: Counter[str]) -> None:
    """One random fault of the kinds an API really produces."""
    kind = rng.choice(
        [
            "429_retry_after",
            "429_bare",
            "500",
            "502",
            "503",
            "reset",
            "timeout",
            "truncated",
            "malformed_json",
            "bad_record",
            "unknown_status",
            "page_shift",
            "deletion",
        ]
    )
    count = rng.randint(1, 3)
    if kind == "429_retry_after":
        sim.faults.inject("status", count, code=429, retry_after=rng.choice([0, 1]))
    elif kind == "429_bare":
        sim.faults.inject("status", count, code=429)
    elif kind in ("500", "502", "503"):
        sim.faults.inject("status", count, code=int(kind))
    elif kind == "reset":
        sim.faults.inject("reset", count)
    elif kind == "timeout":
        count = 1
        sim.faults.inject("delay", count, seconds=1.3)
    elif kind in ("truncated", "malformed_json"):
        sim.faults.inject(kind, count)
    elif kind == "bad_record":
        sim.bad_record(count)
    elif kind == "unknown_status":
        # New runs with a status nobody maps: they stay `unknown` (active) for good.
        sim.world.add_runs(count, native_status=UNKNOWN_STATUS)
    elif kind == "page_shift":
        sim.arrivals_per_list_request = rng.randint(0, 2)
    elif kind == "deletion":
        sim.deletions_per_list_request = rng.randint(0, 1)
    faults[kind] += count


def _start_exporter(
    config: Path, port: int, log: Path, webhook_port: int
) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                "run",
                "--config.file",
                str(config),
                "--web.listen-address",
                f"127.0.0.1:{port}",
                "--webhook.listen-address",
                f"127.0.0.1:{webhook_port}",
                "--log.level",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def _scrape(port: int) -> dict[str, dict[tuple[str, ...], float]]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    values: dict[str, dict[tuple[str, ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            key: tuple[str, ...] = (
                labels.get("source", ""),
                labels.get("workflow", ""),
                labels.get("status", labels.get("code", labels.get("result", ""))),
            )
            if "step" in labels:  # step series: (source, workflow, step, status or "")
                key = (*key[:2], labels["step"], labels.get("status", ""))
            values.setdefault(sample.name, {})[key] = sample.value
    return values


def _wait_clean_cycles(port: int, sources: list[str], cycles: int, timeout: float) -> bool:
    def successes() -> dict[str, float]:
        counts = _scrape(port).get("workflow_exporter_collections_total", {})
        return {s: counts.get((s, "", "success"), 0.0) for s in sources}

    deadline = time.monotonic() + timeout
    # The last kill may have just restarted the exporter: wait until it listens again.
    while True:
        try:
            start = successes()
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
    while time.monotonic() < deadline:
        now = successes()
        if all(now[s] - start[s] >= cycles for s in sources):
            return True
        time.sleep(0.5)
    return False


def _wait_audits(port: int, sources: list[str], walks: int, timeout: float) -> bool:
    """Waits until each source has completed `walks` more audit walks (the second of two
    started after the wait began)."""

    def completed() -> dict[str, float]:
        counts = _scrape(port).get("workflow_exporter_audits_total", {})
        return {s: counts.get((s, "", "completed"), 0.0) for s in sources}

    start = completed()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = completed()
        if all(now[s] - start[s] >= walks for s in sources):
            return True
        time.sleep(0.5)
    return False


def _by_workflow_only(sim: SimulatorServer) -> bool:
    """Where failure reasons need a lookup the API cannot answer (Extend without its single-run
    endpoint), a failure counts as `unspecified` unless a webhook event carried its reason: the
    errors are compared per workflow, whatever their codes."""
    return sim.provider == "extend" and sim.variant.lookups != "served"


def _per_workflow(series: Mapping[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    return {(workflow, "*"): count for workflow, count in errors_by_workflow(series).items()}


def _compare(fleet: Fleet, port: int, result: ChaosResult) -> None:
    scraped = _scrape(port)
    for source, sim in fleet.sims.items():
        truth = sim.world.truth()
        result.runs_checked += sum(truth.finished.values()) + sum(truth.active.values())
        errors_of = _per_workflow if _by_workflow_only(sim) else dict
        for metric, expected, keyed in (
            ("workflow_runs_finished_total", truth.finished, dict),
            ("workflow_runs_active", truth.active, dict),
            ("workflow_run_errors_total", errors_of(truth.errors), errors_of),
        ):
            got = keyed(
                {(wf, st): v for (s, wf, st), v in scraped.get(metric, {}).items() if s == source}
            )
            for key in set(got) | set(expected):
                result.series_checked += 1
                if got.get(key, 0.0) != expected.get(key, 0):
                    result.mismatches.append(
                        f"{source} {metric}{key}: exporter {got.get(key, 0.0)}, "
                        f"truth {expected.get(key, 0)}"
                    )
        _compare_steps(sim, source, scraped, result)
        counts = scraped.get("workflow_run_duration_seconds_count", {})
        finished = scraped.get("workflow_runs_finished_total", {})
        for (s, wf, st), value in finished.items():
            if s == source and value and counts.get((s, wf, st)) != value:
                result.mismatches.append(
                    f"{source} duration _count{(wf, st)} {counts.get((s, wf, st))} != {value}"
                )


def _compare_steps(
    sim: SimulatorServer,
    source: str,
    scraped: dict[str, dict[tuple[str, ...], float]],
    result: ChaosResult,
) -> None:
    """Step series too: where the source counts steps (its provider's default), exactly the
    truth's; elsewhere none."""
    truth = sim.world.truth()
    counts_steps = registry()[sim.provider].steps_by_default
    for metric, expected in (
        ("workflow_run_steps_total", truth.steps if counts_steps else Counter()),
        (
            "workflow_run_step_duration_seconds_count",
            Counter({(*k, ""): n for k, n in truth.step_durations.items()})
            if counts_steps
            else Counter(),
        ),
    ):
        got = {key[1:]: v for key, v in scraped.get(metric, {}).items() if key[0] == source}
        for key in set(got) | set(expected):
            result.series_checked += 1
            if got.get(key, 0.0) != expected.get(key, 0):
                result.mismatches.append(
                    f"{source} {metric}{key}: exporter {got.get(key, 0.0)}, "
                    f"truth {expected.get(key, 0)}"
                )


def run_chaos(
    *,
    kills: int,
    faults: int,
    seed: int = 7,
    workdir: Path | None = None,
    log: Callable[[str], None] = print,
) -> ChaosResult:
    started = time.monotonic()
    rng = random.Random(seed)
    workdir = workdir or Path(tempfile.mkdtemp(prefix="chaos-"))
    fleet = Fleet(seed)
    result = ChaosResult()
    config = workdir / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "interval": "1s",
                "jitter_ratio": 0,
                "state_path": str(workdir / "state.db"),
                # Counts are compared as soon as the faults stop: no zero-first wait.
                "new_series_hold": "0s",
                "sources": fleet.sources(),
            }
        )
    )
    port, webhook_port = _free_port(), _free_port()
    stderr_log = workdir / "exporter.log"
    proc = _start_exporter(config, port, stderr_log, webhook_port)
    fleet.send_webhooks(webhook_port, seed)
    try:
        while result.kills < kills or sum(result.faults.values()) < faults:
            for _ in range(rng.randint(2, 6)):
                _inject(rng, rng.choice(list(fleet.sims.values())), result.faults)
            time.sleep(rng.uniform(0.2, 0.8))
            if result.kills < kills and rng.random() < 0.5:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                result.kills += 1
                proc = _start_exporter(config, port, stderr_log, webhook_port)
                if result.kills % 10 == 0:
                    log(f"chaos: {result.kills} kills, {sum(result.faults.values())} faults")
        fleet.calm()
        fleet.webhook_stats(result.faults)
        if fleet.variants:
            log(f"chaos: variants {fleet.variants}")
        if not _wait_clean_cycles(port, list(fleet.sims), cycles=4, timeout=120):
            result.mismatches.append("the exporter did not complete clean cycles after calm")
        elif fleet.variants and not _wait_audits(port, list(fleet.sims), walks=2, timeout=180):
            result.mismatches.append("the exporter did not complete audit walks after calm")
        else:
            _compare(fleet, port, result)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        fleet.stop()
    crashes = [
        line for line in stderr_log.read_text(errors="replace").splitlines() if "Traceback" in line
    ]
    if crashes:
        result.mismatches.append(f"{len(crashes)} tracebacks in the exporter's log {stderr_log}")
    result.seconds = time.monotonic() - started
    result.variants = dict(fleet.variants)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--faults", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", "7")))
    args = parser.parse_args(argv)
    result = run_chaos(kills=args.kills, faults=args.faults, seed=args.seed)
    print(result.summary())
    return 0 if not result.mismatches else 1


if __name__ == "__main__":
    raise SystemExit(main())
