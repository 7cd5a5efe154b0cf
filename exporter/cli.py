"""Command line: `run` (default), `demo`, `check`, `simulate`.

The flags and what they mean here; the commands themselves are in `exporter.commands`.

Exit codes: 0 fine, 1 a source failed (`check`) or the exporter could not start, 2 bad
configuration or usage.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from exporter import __version__
from exporter.commands.check import check
from exporter.commands.demo import demo, simulate
from exporter.commands.demo_stack import RULES_FILE, StackSettings, demo_stack
from exporter.commands.run import serve
from exporter.config.configfile import ENV_PREFIX
from exporter.config.settings import Config, load_config
from exporter.config.webconfig import load_web_config
from exporter.core.errors import ConfigError
from exporter.core.logs import configure
from exporter.core.sharding import ordinal_from_hostname
from exporter.web.server import ServerLimits
from exporter.webhooks.wiring import WebhookEndpoint

DEFAULT_LISTEN = ":9855"
DEMO_LISTEN = "127.0.0.1:9855"
COMMANDS = ("run", "demo", "demo-stack", "check", "simulate")
# The demo is watched by a person: readable lines, and per-cycle summaries instead of a line per
# failed run. Its first cycles backfill an hour of history at the simulators' rate limits and
# overrun the 5 s interval, as expected: not a warning there.
DEMO_QUIET_EVENTS = frozenset(
    {
        "run failed",
        "collection still running when the next one was due; that one is skipped",
    }
)
DEFAULT_LIMITS = ServerLimits()


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
    run.add_argument(
        "--webhook.listen-address",
        dest="webhook_listen",
        default=None,
        metavar="HOST:PORT",
        help="accept signed webhook events at POST /webhooks/<source> here (default: off)",
    )
    run.add_argument(
        "--webhook.config.file",
        dest="webhook_config_file",
        type=Path,
        default=None,
        help="TLS for the webhook listener (exporter-toolkit format; tls_server_config only)",
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
    demo.add_argument(
        "--incident",
        action="store_true",
        help="a minute in, one workflow starts failing with a new error code, then recovers",
    )
    logging_flags(demo)

    stack = sub.add_parser(
        "demo-stack",
        help="the demo with a real Prometheus (shipped alert rules) and Alertmanager on loopback",
    )
    stack.add_argument("--web.listen-address", dest="listen", default=DEMO_LISTEN)
    stack.add_argument("--prometheus.listen-address", dest="prometheus", default="127.0.0.1:9090")
    stack.add_argument(
        "--alertmanager.listen-address", dest="alertmanager", default="127.0.0.1:9093"
    )
    stack.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="simulated seconds per real second (default: %(default)s, so that ordinary "
        "failures stay below the spike alert's threshold)",
    )
    stack.add_argument(
        "--incident.after",
        dest="incident_after",
        type=float,
        default=45.0,
        metavar="SECONDS",
        help="when the scripted incident starts (default: %(default)s)",
    )
    stack.add_argument("--no-incident", dest="incident", action="store_false")
    stack.add_argument(
        "--evaluation-interval",
        dest="evaluation_interval",
        default="5s",
        help="Prometheus's scrape and rule evaluation interval (default: %(default)s)",
    )
    stack.add_argument(
        "--rules.file",
        dest="rules_file",
        type=Path,
        default=RULES_FILE,
        help="the alert rules Prometheus loads (default: the repository's)",
    )
    # Shortens every rule's `for:` and speeds the incident up: for tests, which cannot wait.
    stack.add_argument(
        "--incident.rate", dest="incident_rate", type=float, default=12.0, help=argparse.SUPPRESS
    )
    stack.add_argument("--rules.for", dest="rules_for", default=None, help=argparse.SUPPRESS)
    logging_flags(stack)

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
    if args.command in ("demo", "demo-stack"):
        configure(args.log_level, args.log_format or "console", quiet_events=DEMO_QUIET_EVENTS)
    elif args.command == "check":
        # Its report names what failed; one line per failed run would bury it.
        configure(args.log_level, args.log_format, quiet_events=frozenset({"run failed"}))
    else:
        configure(args.log_level, args.log_format)
    handler = {
        "run": _run,
        "demo": _demo,
        "demo-stack": _demo_stack,
        "check": _check,
        "simulate": _simulate,
    }
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
    ok, webhooks = _webhook_endpoint(args)
    if not ok:
        return 2
    return serve(
        config,
        args.listen,
        web_config=web,
        config_file=args.config_file,
        environ=environ,
        lifecycle=args.enable_lifecycle,
        limits=limits,
        webhooks=webhooks,
    )


def _webhook_endpoint(args: argparse.Namespace) -> tuple[bool, WebhookEndpoint | None]:
    """The webhook listener's flags (None: off); False: they are wrong (said on stderr)."""
    if args.webhook_listen is None:
        if args.webhook_config_file is not None:
            print(
                "config error: --webhook.config.file needs --webhook.listen-address",
                file=sys.stderr,
            )
            return False, None
        return True, None
    try:
        web = load_web_config(args.webhook_config_file) if args.webhook_config_file else None
    except ConfigError as exc:
        _print_problems(exc)
        return False, None
    if web is not None and web.basic_auth_users:
        # Platforms sign their events and send no passwords: a password here would be ignored.
        print(
            "config error: --webhook.config.file: basic_auth_users is not used for webhooks "
            "(their signature is checked)",
            file=sys.stderr,
        )
        return False, None
    return True, WebhookEndpoint(args.webhook_listen, web)


def _print_problems(exc: ConfigError) -> None:
    for problem in exc.problems:
        print(f"config error: {problem}", file=sys.stderr)


def _check(args: argparse.Namespace) -> int:
    environ = _environ(args)
    if environ is None:
        return 2
    config = _load(args.config_file, environ)
    if config is None:
        return 2
    return check(config)


def _demo(args: argparse.Namespace) -> int:
    return demo(
        args.listen,
        speed=args.speed,
        alertmanagers=args.alertmanagers,
        incident_after=60.0 if args.incident else None,
    )


def _demo_stack(args: argparse.Namespace) -> int:
    settings = StackSettings(
        exporter=args.listen,
        prometheus=args.prometheus,
        alertmanager=args.alertmanager,
        speed=args.speed,
        incident_after=args.incident_after if args.incident else None,
        evaluation_interval=args.evaluation_interval,
        incident_rate=args.incident_rate,
        rules_for=args.rules_for,
        rules_file=args.rules_file,
    )
    return demo_stack(settings)


def _simulate(args: argparse.Namespace) -> int:
    return simulate(
        args.provider,
        port=args.port,
        api_key=args.api_key,
        seed=args.seed,
        speed=args.speed,
        variant=args.variant,
    )
