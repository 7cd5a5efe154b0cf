"""The command line's flags: each command's arguments, their defaults and their help text (the
commands themselves are the other modules of this package)."""

from __future__ import annotations

import argparse
from pathlib import Path

from exporter import __version__
from exporter.commands.demo_stack import RULES_FILE
from exporter.web.server import ServerLimits

DEFAULT_LISTEN = ":9855"
DEMO_LISTEN = "127.0.0.1:9855"
COMMANDS = ("run", "demo", "demo-stack", "check", "simulate", "slo-rules")
DEFAULT_LIMITS = ServerLimits()


def build_parser() -> argparse.ArgumentParser:
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

    slo_rules = sub.add_parser(
        "slo-rules", help="write the Prometheus rules of the configured SLOs (slos:)"
    )
    slo_rules.add_argument("--config.file", dest="config_file", type=Path, required=True)
    slo_rules.add_argument(
        "--output", type=Path, default=None, help="the rules file to write (default: stdout)"
    )
    slo_rules.add_argument(
        "--runbook-url",
        dest="runbook_url",
        default=None,
        help="the page the alerts' runbook_url points into (default: the project's alerting.md)",
    )
    logging_flags(slo_rules)
    return parser
