"""Command line: `run` (default), `demo`, `check`, `simulate`, `slo-rules`.

Which command a command line runs, and the configuration it starts it with; the flags are
`exporter.commands.flags`', the commands themselves the other modules of `exporter.commands`.

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

from exporter.commands.check import check
from exporter.commands.demo import demo, simulate
from exporter.commands.demo_stack import StackSettings, demo_stack
from exporter.commands.flags import COMMANDS, build_parser
from exporter.commands.run import serve
from exporter.commands.slo_rules import slo_rules
from exporter.config.configfile import ENV_PREFIX
from exporter.config.settings import Config, load_config
from exporter.config.webconfig import load_web_config
from exporter.core.errors import ConfigError
from exporter.core.logs import configure
from exporter.core.sharding import ordinal_from_hostname
from exporter.web.server import ServerLimits
from exporter.webhooks.wiring import WebhookEndpoint

# The demo is watched by a person: readable lines, and per-cycle summaries instead of a line per
# failed run. Its first cycles backfill an hour of history at the simulators' rate limits and
# overrun the 5 s interval, as expected: not a warning there.
DEMO_QUIET_EVENTS = frozenset(
    {
        "run failed",
        "collection still running when the next one was due; that one is skipped",
    }
)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if (
        args_list
        and args_list[0] not in COMMANDS
        and args_list[0] not in ("-h", "--help", "--version")
    ):
        args_list.insert(0, "run")  # `workflow-runs-exporter --config.file F` means `run`
    args = build_parser().parse_args(args_list)
    if args.command is None:
        build_parser().print_help()
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
        "slo-rules": _slo_rules,
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


def _slo_rules(args: argparse.Namespace) -> int:
    return slo_rules(args.config_file, args.output, args.runbook_url, dict(os.environ))


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
