"""Command line: `run` (default), `demo`, `check`, `simulate`.

Exit codes: 0 fine, 1 a source failed (`check`) or the exporter could not start, 2 bad
configuration or usage.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from exporter import __version__
from exporter.app import Exporter
from exporter.collect import CycleReport
from exporter.configfile import ENV_PREFIX
from exporter.diagnostics import advice
from exporter.errors import ConfigError, StateError
from exporter.logs import configure, get_logger
from exporter.server import MetricsServer, ServerHooks, ServerLimits, SourceStatus
from exporter.settings import Config, config_from_data, load_config
from exporter.sharding import ordinal_from_hostname
from exporter.webconfig import WebConfig, load_web_config

DEFAULT_LISTEN = ":9855"
DEMO_LISTEN = "127.0.0.1:9855"
COMMANDS = ("run", "demo", "check", "simulate")
DEFAULT_LIMITS = ServerLimits()
# Seconds a SIGTERM waits for the running cycles (Kubernetes' grace period is 30 by default).
SHUTDOWN_GRACE = 8.0

log = get_logger("exporter")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workflow-runs-exporter",
        description="Prometheus exporter for document-AI workflow runs.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command")

    def logging_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--log.level",
            dest="log_level",
            default="info",
            choices=["debug", "info", "warning", "error"],
        )
        p.add_argument(
            "--log.format",
            dest="log_format",
            default=None,
            choices=["json", "console"],
            help="default: console on a terminal, json otherwise",
        )

    def shard_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--shard.index",
            dest="shard_index",
            type=int,
            default=None,
            help="this replica's shard, 0 to shard.count - 1 (overrides shard.index)",
        )
        p.add_argument(
            "--shard.count",
            dest="shard_count",
            type=int,
            default=None,
            help="how many replicas share the sources (overrides shard.count)",
        )
        p.add_argument(
            "--shard.index-from-hostname",
            dest="shard_from_hostname",
            action="store_true",
            help="take the shard index from the host name's trailing -N (a StatefulSet ordinal)",
        )

    run = sub.add_parser("run", help="collect from the configured sources and serve /metrics")
    run.add_argument("--config.file", dest="config_file", type=Path, required=True)
    shard_flags(run)
    run.add_argument("--web.listen-address", dest="listen", default=DEFAULT_LISTEN)
    run.add_argument(
        "--web.config.file",
        dest="web_config_file",
        type=Path,
        default=None,
        help="TLS and basic auth for the endpoints (exporter-toolkit format)",
    )
    run.add_argument(
        "--web.enable-lifecycle",
        dest="enable_lifecycle",
        action="store_true",
        help="enable POST /-/reload (SIGHUP always reloads)",
    )
    run.add_argument(
        "--web.read-timeout",
        dest="read_timeout",
        type=float,
        default=DEFAULT_LIMITS.read_timeout,
        metavar="SECONDS",
        help="a request's line and headers must arrive within this (default: %(default)s)",
    )
    run.add_argument(
        "--web.idle-timeout",
        dest="idle_timeout",
        type=float,
        default=DEFAULT_LIMITS.idle_timeout,
        metavar="SECONDS",
        help="a kept-alive connection with no request is closed after this (default: %(default)s)",
    )
    run.add_argument(
        "--web.max-connections",
        dest="max_connections",
        type=int,
        default=DEFAULT_LIMITS.max_connections,
        help="open connections at most; past it the longest idle one is closed "
        "(default: %(default)s)",
    )
    run.add_argument(
        "--web.workers",
        dest="workers",
        type=int,
        default=DEFAULT_LIMITS.workers,
        help="requests served at once (default: %(default)s)",
    )
    logging_flags(run)

    demo = sub.add_parser("demo", help="simulated providers on loopback plus the exporter")
    demo.add_argument("--web.listen-address", dest="listen", default=DEMO_LISTEN)
    demo.add_argument("--speed", type=float, default=30.0, help="simulated seconds per real second")
    demo.add_argument(
        "--alertmanager.url",
        dest="alertmanagers",
        action="append",
        default=[],
        metavar="URL",
        help="send per-run alerts (failed, stuck, waiting on review) to this Alertmanager",
    )
    logging_flags(demo)

    check = sub.add_parser("check", help="validate, collect once per source, report")
    check.add_argument("--config.file", dest="config_file", type=Path, required=True)
    shard_flags(check)
    logging_flags(check)

    simulate = sub.add_parser("simulate", help="run one provider simulator standalone")
    simulate.add_argument("--provider", required=True)
    simulate.add_argument("--port", type=int, default=0)
    simulate.add_argument("--api-key", dest="api_key", default=None)
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--speed", type=float, default=1.0)
    simulate.add_argument(
        "--variant",
        default=None,
        metavar="NAME",
        help="answer what the provider's docs leave open another way (page order, first page, "
        "page size cap, timestamps, ...); the names depend on the provider",
    )
    logging_flags(simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if (
        args_list
        and args_list[0] not in COMMANDS
        and args_list[0] not in ("-h", "--help", "--version")
    ):
        args_list.insert(0, "run")  # `workflow-runs-exporter --config.file F` means `run`
    args = _parser().parse_args(args_list)
    if args.command is None:
        _parser().print_help()
        return 2
    configure(args.log_level, args.log_format)
    handler = {"run": _run, "demo": _demo, "check": _check, "simulate": _simulate}
    return handler[args.command](args)


def _load(path: Path, environ: Mapping[str, str]) -> Config | None:
    try:
        return load_config(path, environ)
    except ConfigError as exc:
        _print_problems(exc)
        return None


def _environ(args: argparse.Namespace) -> dict[str, str] | None:
    """The environment with the shard flags laid over it as settings overrides, so they are
    validated (and reported) like any other setting, and survive reloads. None: bad flags."""
    environ = dict(os.environ)
    index = args.shard_index
    if args.shard_from_hostname:
        try:
            index = ordinal_from_hostname(socket.gethostname())
        except ValueError as exc:
            print(f"config error: --shard.index-from-hostname: {exc}", file=sys.stderr)
            return None
    if index is not None:
        environ[f"{ENV_PREFIX}SHARD__INDEX"] = str(index)
    if args.shard_count is not None:
        environ[f"{ENV_PREFIX}SHARD__COUNT"] = str(args.shard_count)
    return environ


def _run(args: argparse.Namespace) -> int:
    environ = _environ(args)
    if environ is None:
        return 2
    config = _load(args.config_file, environ)
    if config is None:
        return 2
    try:
        web = load_web_config(args.web_config_file) if args.web_config_file else None
    except ConfigError as exc:
        _print_problems(exc)
        return 2
    if (
        min(args.read_timeout, args.idle_timeout) <= 0
        or min(args.max_connections, args.workers) < 1
    ):
        print("config error: --web.* timeouts and counts must be positive", file=sys.stderr)
        return 2
    limits = ServerLimits(
        read_timeout=args.read_timeout,
        idle_timeout=args.idle_timeout,
        max_connections=args.max_connections,
        workers=args.workers,
    )
    return _serve(
        config,
        args.listen,
        web_config=web,
        config_file=args.config_file,
        environ=environ,
        lifecycle=args.enable_lifecycle,
        limits=limits,
    )


def _print_problems(exc: ConfigError) -> None:
    for problem in exc.problems:
        print(f"config error: {problem}", file=sys.stderr)


def _serve(
    config: Config,
    listen: str,
    *,
    web_config: WebConfig | None = None,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    lifecycle: bool = False,
    on_ready: Any = None,
    limits: ServerLimits | None = None,
) -> int:
    try:
        exporter = Exporter(config)
    except StateError as exc:
        print(f"state error: {exc}", file=sys.stderr)
        return 1
    reload_lock = threading.Lock()

    def reload() -> str | None:
        """Reads the config file again; a bad one is refused and the running one kept."""
        if config_file is None:
            return "no configuration file to reload (demo)"
        with reload_lock:
            try:
                new = load_config(config_file, environ)
            except ConfigError as exc:
                for problem in exc.problems:
                    log.error("reload refused; keeping the running configuration", problem=problem)
                return "; ".join(exc.problems)
            changed = exporter.reload(new)
            log.info("configuration reloaded", changes=changed or ["none"])
            return None

    hooks = _hooks(exporter, reload if lifecycle else None)
    try:
        server = MetricsServer(listen, hooks, web_config, limits)
    except (OSError, ValueError) as exc:
        print(f"cannot listen on {listen}: {exc}", file=sys.stderr)
        exporter.shutdown()
        return 1
    stop = threading.Event()
    reload_requested = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload_requested.set())
    server.start()
    exporter.start()
    log.info("serving", url=server.url("/metrics"), sources=len(exporter.sources))
    if on_ready is not None:
        on_ready(server)
    while not stop.is_set():
        # Signal handlers only set flags: the reload itself runs here, outside the handler.
        if reload_requested.wait(0.2):
            reload_requested.clear()
            reload()
    log.info("shutting down")
    server.stop()
    return _shutdown_within(exporter, SHUTDOWN_GRACE)


def _shutdown_within(exporter: Exporter, grace: float) -> int:
    """Lets a running cycle end (requests notice the stop within a second), but not for longer
    than `grace`: a connect to a black-holed host cannot be interrupted, and an orchestrator
    that waits in vain kills the process anyway. Leaving without closing the store is safe: every
    cycle commits in one transaction, the way a kill leaves it."""
    done = threading.Thread(target=exporter.shutdown, name="shutdown", daemon=True)
    done.start()
    done.join(grace)
    if not done.is_alive():
        return 0
    log.error("shutdown not finished in time; exiting without waiting", grace_seconds=grace)
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(1)


def _hooks(exporter: Exporter, reload: Any = None) -> ServerHooks:
    def sources() -> list[SourceStatus]:
        out = []
        for runtime in exporter.status():
            report = runtime.last_report
            out.append(
                SourceStatus(
                    name=runtime.name,
                    provider=runtime.settings.provider,
                    up=None if report is None else report.ok,
                    last_error=report.error if report else None,
                    last_collection=report.finished_at if report else None,
                    active=report.active if report else 0,
                    counted_last_cycle=report.counted if report else 0,
                )
            )
        return out

    return ServerHooks(
        registry=exporter.registry,
        ready=exporter.ready,
        sources=sources,
        reload=reload,
        generation=lambda: exporter.generation,
    )


def _check(args: argparse.Namespace) -> int:
    environ = _environ(args)
    if environ is None:
        return 2
    config = _load(args.config_file, environ)
    if config is None:
        return 2
    # A throwaway store: checking never moves the real state's cursors.
    exporter = Exporter(config, state_path=":memory:")
    failed = 0
    try:
        for report in exporter.collect_all():
            failed += not report.ok
            print("\n".join(_diagnose(exporter, report)))
    finally:
        exporter.shutdown()
    return 1 if failed else 0


def _diagnose(exporter: Exporter, report: CycleReport) -> list[str]:
    runtime = exporter.sources[report.source]
    instruments = runtime.collector.instruments
    settings = runtime.settings
    seen = ", ".join(f"{k}={v}" for k, v in sorted(report.seen_by_status.items()))
    state = "ok" if report.ok else "FAILED"
    lines = [
        f"{report.source} ({report.provider}): {state} in {report.seconds:.2f}s; "
        f"runs seen: {seen or 'none'}; active: {report.active}"
    ]
    first = instruments.first_request
    if first is None:
        lines.append("  auth: no request answered")
    else:
        endpoint, code, seconds = first
        verdict = "refused" if code in ("401", "403") else ("ok" if code == "200" else code)
        lines.append(f"  auth: {verdict} (first {endpoint} answered HTTP {code} in {seconds:.3f}s)")
    version = getattr(settings, "api_version", None)
    if version is not None:
        accepted = "accepted" if report.ok else "not confirmed"
        lines.append(f"  api version: {version} {accepted}")
    headers = instruments.rate_limit_headers
    lines.append(
        "  rate-limit headers: "
        + (", ".join(f"{k}={v}" for k, v in sorted(headers.items())) or "none seen")
    )
    unknown = sorted(getattr(runtime.collector.provider.events, "unknown_statuses", ()))
    lines.append(
        "  unknown statuses: "
        + (", ".join(unknown) + " (map them with status_map)" if unknown else "none")
    )
    provider = runtime.collector.provider
    facts = provider.list_facts()
    lines.append("  list: " + ", ".join(f"{fact} {value}" for fact, value in facts.items()))
    events = provider.events
    for fact, (value, why) in sorted(getattr(events, "learned_facts", {}).items()):
        lines.append(f"  learned: {fact} {value} ({why})")
    for reason, detail in getattr(events, "inconsistencies", ()):
        lines.append(f"  inconsistent: {reason}: {detail}")
    if report.error:
        lines.append(f"  error: {report.error}")
        lines.append(f"  advice: {advice(report.provider, report.failure, settings.model_dump())}")
    return lines


def _demo(args: argparse.Namespace) -> int:
    from exporter.simulator import SIMULATORS

    simulators = []
    sources: list[dict[str, Any]] = []
    for seed, (provider, sim_cls) in enumerate(sorted(SIMULATORS.items()), start=1):
        # An hour of history, so the dashboards have something to show at once.
        sim = sim_cls(seed=seed, history_seconds=3600)
        sim.start()
        sim.start_driver(speed=args.speed)
        simulators.append(sim)
        sources.append(
            {
                "name": f"{provider}-demo",
                "provider": provider,
                "base_url": sim.base_url,
                "api_key": sim.api_key,
                **sim.source_settings(),
            }
        )
    state_dir = tempfile.mkdtemp(prefix="workflow-runs-exporter-demo-")
    data: dict[str, Any] = {
        "interval": "5s",
        "state_path": str(Path(state_dir) / "state.db"),
        "sources": sources,
    }
    if args.alertmanagers:
        # Thresholds short enough that the hour of simulated history has stuck runs and runs
        # waiting on review to show.
        data["alerting"] = {
            "alertmanagers": [{"url": url} for url in args.alertmanagers],
            "stuck": {"after": "10m"},
            "review": {"after": "15m"},
            "dashboard_url": "http://127.0.0.1:3000/d/workflow-runs?var-source={source}"
            "&var-workflow={workflow}",
        }
    config = config_from_data(data)

    def announce(server: MetricsServer) -> None:
        print(
            f"demo: {len(simulators)} simulated providers; metrics at {server.url('/metrics')}",
            flush=True,
        )
        for url in args.alertmanagers:
            print(f"demo: per-run alerts go to {url}/api/v2/alerts", flush=True)

    try:
        return _serve(config, args.listen, on_ready=announce)
    finally:
        for sim in simulators:
            sim.stop()


def _simulate(args: argparse.Namespace) -> int:
    from exporter.simulator import SIMULATORS

    sim_cls = SIMULATORS.get(args.provider)
    if sim_cls is None:
        print(
            f"unknown provider {args.provider!r} (one of: {', '.join(SIMULATORS)})", file=sys.stderr
        )
        return 2
    kwargs: dict[str, Any] = {"seed": args.seed, "port": args.port, "history_seconds": 3600}
    if args.api_key:
        kwargs["api_key"] = args.api_key
    if args.variant is not None:
        variant = sim_cls.variants.get(args.variant)
        if variant is None:
            names = ", ".join(sim_cls.variants) or "none"
            print(
                f"unknown variant {args.variant!r} for {args.provider} (one of: {names})",
                file=sys.stderr,
            )
            return 2
        kwargs["variant"] = variant
    sim = sim_cls(**kwargs)
    sim.start()
    sim.start_driver(speed=args.speed)
    shown = f", variant {args.variant}" if args.variant else ""
    print(f"{args.provider} simulator at {sim.base_url} (api key {sim.api_key}{shown})", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    sim.stop()
    return 0
