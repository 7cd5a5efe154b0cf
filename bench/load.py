"""Load test (`make bench-load`): an exporter serving ~10,000 series on loopback, 1,000 sockets
held open that send nothing, and 200 concurrent scrapers for 30 s. Reports the scrapes' latency
and errors beside the target, and writes its section of bench/RESULTS.md.

Over 300 lines with no named split: the scrapers, the silent sockets and the report are one
experiment run together.

    python -m bench.load [--seconds 30] [--scrapers 200] [--silent 1000] [--interval 1]
"""

from __future__ import annotations

import argparse
import random
import resource
import selectors
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml

from bench.common import RESULTS, ROOT, machine
from bench.scrape import store_with_series

SECTION = "## Load: hostile clients"
TARGET_P99 = 0.25
# What Prometheus sends with each scrape: OpenMetrics first, gzip, its scrape timeout.
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "X-Prometheus-Scrape-Timeout-Seconds": "10",
}
OPENMETRICS = "application/openmetrics-text"


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SilentSockets:
    """Keeps `count` connections open that never send a byte, reopening each one the server
    closes (it does, after its read timeout)."""

    def __init__(self, port: int, count: int) -> None:
        self._port = port
        self._count = count
        self._stop = threading.Event()
        self.reopened = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _open(self, selector: selectors.BaseSelector) -> None:
        sock = socket.create_connection(("127.0.0.1", self._port))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        for _ in range(self._count):
            self._open(selector)
        while not self._stop.is_set():
            for key, _ in selector.select(0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    selector.unregister(sock)
                    sock.close()
                    self._open(selector)
                    self.reopened += 1
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        selector.close()


@dataclass
class Outcome:
    latencies: list[float]
    errors: int
    reopened: int
    samples: int

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def scrape_loop(
    client: httpx.Client,
    url: str,
    until: float,
    interval: float,
    latencies: list[float],
    errors: list[int],
) -> None:
    """One scraper: keeps its connection alive and asks for OpenMetrics and gzip with
    Prometheus's own headers, and, like Prometheus's targets, starts at its own offset within
    the interval. The body is read whole but not decompressed: that is the scraper's work, not
    the server's. An answer in another format or not gzipped counts as failed."""
    with client:
        next_at = time.monotonic() + random.uniform(0, interval)
        while True:
            time.sleep(max(0.0, next_at - time.monotonic()))
            if time.monotonic() >= until:
                return
            started = time.monotonic()
            try:
                with client.stream("GET", url) as response:
                    size = sum(len(chunk) for chunk in response.iter_raw())
                ok = (
                    response.status_code == 200
                    and size > 0
                    and response.headers.get("content-type", "").startswith(OPENMETRICS)
                    and response.headers.get("content-encoding") == "gzip"
                )
            except httpx.HTTPError:
                ok = False
            latencies.append(time.monotonic() - started)
            if not ok:
                errors.append(1)
            next_at += interval


def scrapers_process(
    url: str, until: float, interval: float, count: int
) -> tuple[list[float], int]:
    """`count` scrapers in threads of one process; `until` is on the shared monotonic clock."""
    latencies: list[float] = []
    errors: list[int] = []
    # Clients made before any scraper starts, sharing one TLS context (unused on http://, but
    # each would load the CA bundle): making them is the benchmark's cost, not a scrape's.
    tls = ssl.create_default_context()
    clients = [
        httpx.Client(timeout=10, headers=PROMETHEUS_HEADERS, verify=tls) for _ in range(count)
    ]
    threads = [
        threading.Thread(target=scrape_loop, args=(client, url, until, interval, latencies, errors))
        for client in clients
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, len(errors)


def run_load(
    seconds: float, scrapers: int, silent: int, interval: float, processes: int
) -> Outcome:
    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    store = store_with_series(10_000, workdir)
    state = Path(store.path)
    store.close()
    config = workdir / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_path": str(state),
                # The state's source, pointed at a closed port: it is exported, never collected.
                "sources": [
                    {
                        "name": "bench",
                        "provider": "plextera",
                        "base_url": "http://127.0.0.1:9",
                        "api_key": "k-bench-load",
                        "interval": "1h",
                    }
                ],
            }
        )
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter",
            "--config.file",
            str(config),
            "--web.listen-address",
            f"127.0.0.1:{port}",
            "--log.level",
            "warning",
        ],
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                first = httpx.get(url, headers=PROMETHEUS_HEADERS, timeout=5)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        samples = sum(1 for line in first.text.splitlines() if line and not line.startswith("#"))
        holders = SilentSockets(port, silent)
        holders.start()
        time.sleep(1)
        until = time.monotonic() + seconds
        # Scrapers in several processes, so that the client's own interpreter lock does not
        # queue them and show its waits as the server's.
        shares = [scrapers // processes + (n < scrapers % processes) for n in range(processes)]
        with ProcessPoolExecutor(processes) as pool:
            parts = list(
                pool.map(
                    scrapers_process,
                    [url] * processes,
                    [until] * processes,
                    [interval] * processes,
                    shares,
                )
            )
        latencies = [t for part, _ in parts for t in part]
        errors = sum(e for _, e in parts)
        holders.stop()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return Outcome(latencies, errors, holders.reopened, samples)


def write_section(text: str) -> None:
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if SECTION in current:
        head, _, rest = current.partition(SECTION)
        following = rest.find("\n## ")
        tail = rest[following + 1 :] if following >= 0 else ""
        current = head.rstrip("\n") + "\n\n" + text + ("\n" + tail if tail else "")
    else:
        current = current.rstrip("\n") + "\n\n" + text
    RESULTS.write_text(current)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--scrapers", type=int, default=200)
    parser.add_argument("--silent", type=int, default=1000)
    parser.add_argument(
        "--interval",
        type=float,
        default=1.0,
        help="seconds between one scraper's scrapes (0: back to back)",
    )
    parser.add_argument("--processes", type=int, default=4, help="processes the scrapers share")
    args = parser.parse_args(argv)
    limit = raise_fd_limit()
    if limit < args.silent + args.scrapers + 64:
        print(f"the hard limit on open files ({limit}) is too low", file=sys.stderr)
        return 1
    outcome = run_load(args.seconds, args.scrapers, args.silent, args.interval, args.processes)
    p50, p99 = outcome.quantile(0.5), outcome.quantile(0.99)
    met = p99 <= TARGET_P99 and outcome.errors == 0
    rate = len(outcome.latencies) / args.seconds
    pace = f"each every {args.interval:g} s" if args.interval else "back to back"
    lines = [
        SECTION,
        "",
        f"Machine: {machine()}  ",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  ",
        "Command: `make bench-load` (`python -m bench.load "
        + " ".join(f"--{k} {v:g}" for k, v in vars(args).items())
        + "`)",
        "",
        "| figure | value | target | |",
        "|---|---|---|---|",
        f"| /metrics latency, {outcome.samples:,} series, {args.scrapers} scrapers ({pace}, "
        "OpenMetrics and gzip asked for as Prometheus does, keep-alive) beside "
        f"{args.silent:,} silent sockets | p50 {p50 * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms | p99 <= {TARGET_P99 * 1000:.0f} ms | "
        f"{'met' if p99 <= TARGET_P99 else 'MISSED'} |",
        f"| failed scrapes | {outcome.errors} of {len(outcome.latencies):,} | 0 | "
        f"{'met' if outcome.errors == 0 else 'MISSED'} |",
        "",
        f"- {len(outcome.latencies):,} scrapes in {args.seconds:g} s ({rate:.0f}/s); the "
        f"server closed {outcome.reopened:,} silent sockets after its read timeout (each "
        f"reopened at once, so {args.silent:,} were open throughout).",
        "- The exporter runs in a process of its own (`python -m exporter`, default flags) on a "
        "state holding the series; the silent sockets are held by the benchmark's process, the "
        f"scrapers run in {args.processes} processes of their own.",
        "- Both listeners read requests and write answers with h11, behind the strict framing "
        "checks (docs/security.md: how requests are read).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    write_section(text)
    print(f"written {RESULTS}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
