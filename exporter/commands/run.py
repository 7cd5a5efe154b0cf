"""`run`: collect on schedule and serve /metrics until a signal says stop.

SIGHUP (and `POST /-/reload` when enabled) reloads the configuration; SIGTERM and SIGINT stop
within a bound.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from exporter.app import Exporter
from exporter.collection.cycle import utc_now
from exporter.config.settings import Config, load_config
from exporter.config.webconfig import WebConfig
from exporter.core.errors import ConfigError, StateError
from exporter.core.logs import get_logger
from exporter.web.landing import SourceStatus
from exporter.web.server import MetricsServer, ServerHooks, ServerLimits
from exporter.webhooks.wiring import WebhookEndpoint, start_webhooks

# Seconds a SIGTERM waits for the running cycles (Kubernetes' grace period is 30 by default).
SHUTDOWN_GRACE = 8.0

log = get_logger("exporter")


def serve(
    config: Config,
    listen: str,
    *,
    web_config: WebConfig | None = None,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    lifecycle: bool = False,
    on_ready: Callable[[MetricsServer], None] | None = None,
    limits: ServerLimits | None = None,
    cycle_summaries: bool = False,
    webhooks: WebhookEndpoint | None = None,
) -> int:
    try:
        exporter = Exporter(config, cycle_summaries=cycle_summaries)
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

    hooks = server_hooks(exporter, reload if lifecycle else None)
    try:
        server = MetricsServer(listen, hooks, web_config, limits)
    except (OSError, ValueError) as exc:
        print(f"cannot listen on {listen}: {exc}", file=sys.stderr)
        exporter.shutdown()
        return 1
    try:
        hooks_in = start_webhooks(exporter, webhooks, limits)
    except (OSError, ValueError) as exc:
        where = webhooks.listen if webhooks else ""
        print(f"cannot listen for webhooks on {where}: {exc}", file=sys.stderr)
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
    if hooks_in is not None:
        hooks_in.stop()
    server.stop()
    return shutdown_within(exporter, SHUTDOWN_GRACE)


def shutdown_within(exporter: Exporter, grace: float) -> int:
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


def server_hooks(exporter: Exporter, reload: Callable[[], str | None] | None = None) -> ServerHooks:
    def sources() -> list[SourceStatus]:
        out = []
        now = utc_now()
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
                    last_hour=exporter.recent.last_hour(runtime.name, now),
                    failures=exporter.recent.failures(runtime.name),
                )
            )
        return out

    return ServerHooks(
        registry=exporter.exposed,
        ready=exporter.ready,
        sources=sources,
        reload=reload,
        generation=lambda: exporter.generation,
        health=exporter.health,
    )
