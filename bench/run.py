"""Benchmarks (`make bench`): every figure beside its target, each speed as a ratio to a baseline
measured in the same run, since these machines are noisy. Writes bench/RESULTS.md.

    python -m bench.run [--quick]
    python -m bench.run --only ingest [--quick]    # the ingest figures alone, printed
    python -m bench.run --million    # 1,000,000 runs through the API: bench/RESULTS-million.md
    python -m bench.run --only scrape    # the /metrics render times alone, printed
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from bench.common import MILLION, RESULTS, Figure, machine
from bench.ingest import ingest_figures
from bench.requests import bench_audit, bench_efficiency, bench_order
from bench.scale import scale_rows
from bench.scrape import scrape_figures
from bench.state import bench_state
from exporter.core import logs
from exporter.simulator import SIMULATORS

# The report ------------------------------------------------------------------------------------


NOTES = "## The misses, and why"


def _kept_notes(path: Path) -> str:
    """The hand-written section explaining the misses, kept across runs of the benchmark."""
    if not path.exists():
        return ""
    text = path.read_text()
    return "\n" + text[text.index(NOTES) :] if NOTES in text else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument(
        "--million",
        action="store_true",
        help="only ingest 1,000,000 runs through the API (over twenty minutes: the "
        "simulator serving the pages is the slow part) and write bench/RESULTS-million.md",
    )
    parser.add_argument(
        "--only",
        choices=["ingest", "scrape"],
        help="only this section, its figures printed and bench/RESULTS.md left as it is",
    )
    args = parser.parse_args(argv)
    logs.configure("warning", "json")
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    figures: list[Figure] = []
    details: list[str] = []
    if args.million:
        ingest_figures("plextera", 1_000_000, workdir, figures, details, baseline=False)
        _report(MILLION, "make bench-million", figures, details, notes=_kept_notes(MILLION))
        return 0
    if args.only == "scrape":
        scrape_figures(workdir, figures)
        print("\n".join(figure.row() for figure in figures))
        return 0
    for provider in sorted(SIMULATORS):
        for n in [10_000] if args.quick else [10_000, 100_000]:
            ingest_figures(provider, n, workdir, figures, details, baseline=True)
    if args.only == "ingest":
        print("\n".join(["| figure | value | target | |", *(f.row() for f in figures)]))
        return 0
    for provider in sorted(SIMULATORS):
        for change in (0.01, 0.10):
            eff = bench_efficiency(provider, change, workdir)
            print(f"efficiency {provider} {change:.0%}: {eff.ratio:.2f}x ({eff.detail()})")
            details.append(f"API requests, {provider}, {change:.0%} changing: {eff.detail()}")
            figures.append(
                Figure(
                    f"API requests per cycle, {provider}, {change:.0%} changing",
                    f"{eff.ratio:.2f}x minimum",
                    "<= 1.1x",
                    eff.ratio <= 1.1,
                )
            )
    for provider in ("plextera", "noxus"):
        order = bench_order(provider, 10_000 if args.quick else 100_000)
        line = (
            f"{provider}, {order.runs:,} runs: oldest-first {order.requests['oldest_first']:.2f}"
            f" requests per cycle, newest-first {order.requests['newest_first']:.2f}"
        )
        print(f"order {line}", flush=True)
        details.append(f"List order, {line} (30 new and 15 finishing runs a cycle)")
        figures.append(
            Figure(
                f"steady-state requests per cycle, oldest-first vs newest-first list, {provider}, "
                f"{order.runs:,} runs",
                f"{order.ratio:.2f}x",
                "<= 1.1x",
                order.ratio <= 1.1,
            )
        )
    for provider in sorted(SIMULATORS):
        for n in [10_000] if args.quick or provider in ("plextera", "noxus") else [10_000, 100_000]:
            audit = bench_audit(provider, n, workdir)
            line = (
                f"{provider}, {n:,} runs in the retention window: {audit.requests:,} requests a "
                f"walk ({audit.ratio:.2f}x the window's pages), so {audit.requests:,} per hour "
                f"at the default audit_interval of 1h, {audit.share()}"
            )
            print(f"audit {line}", flush=True)
            details.append(f"Audit walk, {line}")
            figures.append(
                Figure(
                    f"audit walk, {provider}, {n:,} runs in the window",
                    f"{audit.requests:,} requests an hour ({audit.share()})",
                    "<= 1.1x the window's pages",
                    audit.ratio <= 1.1,
                )
            )
    scrape_figures(workdir, figures)
    figures += [Figure(*row) for row in scale_rows(100 if args.quick else 1000)]
    runs = 100_000 if args.quick else 1_000_000
    size, fill_rss, restart_seconds, restart_rss = bench_state(runs, workdir)
    figures.append(
        Figure(f"state file with {runs:,} counted runs", f"{size / 2**20:.0f} MiB", "", None)
    )
    figures.append(
        Figure(
            f"peak RSS writing {runs:,} runs into the state",
            f"{fill_rss / 2**20:.0f} MiB",
            "<= 150 MB",
            fill_rss <= 150e6,
        )
    )
    figures.append(
        Figure(
            f"restart with {runs:,} runs in the state (start + first render)",
            f"{restart_seconds:.2f} s, peak RSS {restart_rss / 2**20:.0f} MiB",
            "<= 5 s, <= 150 MB",
            restart_seconds <= 5 and restart_rss <= 150e6,
        )
    )
    command = "python -m bench.run --quick" if args.quick else "make bench"
    _report(RESULTS, command, figures, details, notes=_kept_notes(RESULTS))
    return 0


def _report(
    path: Path, command: str, figures: list[Figure], details: list[str], *, notes: str
) -> None:
    table = "\n".join(
        ["| figure | value | target | |", "|---|---|---|---|", *(f.row() for f in figures)]
    )
    print(table)
    path.write_text(
        f"# Benchmark results\n\nMachine: {machine()}  \n"
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  \n"
        f"Command: `{command}`\n\n{table}\n\n## Details\n\n"
        + "".join(f"- {line}\n" for line in details)
        + notes
    )
    print(f"written {path}")
    misses = Counter(f.met for f in figures)[False]
    print(f"{misses} targets missed")


if __name__ == "__main__":
    raise SystemExit(main())
