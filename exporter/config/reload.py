"""What a new configuration changes in a running process: sources to remove, to build anew (added
or changed), whether alerting changed, and which settings wait for a restart.

Pure: the exporter applies the plan. Unchanged sources are left running untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from exporter.config.alerting import AlertingSettings
from exporter.config.settings import Config
from exporter.core.logs import get_logger
from exporter.providers import SourceSettings

log = get_logger("exporter")


@dataclass(frozen=True)
class ReloadPlan:
    # The new configuration, with what cannot change without a restart kept as it runs.
    config: Config
    alerting_changed: bool = False
    removed: list[str] = field(default_factory=list)
    # (position among this shard's sources, settings): the position staggers the first cycles.
    rebuilt: list[tuple[int, SourceSettings]] = field(default_factory=list)
    # Sources whose static labels alone changed: their new settings are swapped in, the source
    # keeps running (its client, what its provider learned of the API).
    relabelled: list[SourceSettings] = field(default_factory=list)
    # What changed, for the log, in the order it is applied.
    changes: list[str] = field(default_factory=list)


def plan_reload(
    running: Config,
    new: Config,
    sources: Mapping[str, SourceSettings],
    alerting: AlertingSettings | None,
) -> ReloadPlan:
    """`sources` and `alerting`: what runs now (this shard's sources, the agent's settings)."""
    if new.app.state_path != running.app.state_path:
        log.warning("state_path cannot change without a restart; keeping the current file")
    if new.app.buckets != running.app.buckets:
        log.warning("bucket changes take effect at the next restart")
    if new.app.shard != running.app.shard:
        # Providers of unchanged sources keep the shard they were built with: a new one would
        # split the sources and workflows differently from them.
        log.warning("shard changes take effect at the next restart")
        new = replace(new, app=new.app.model_copy(update={"shard": running.app.shard}))
    if new.app.webhooks != running.app.webhooks:
        log.warning("webhooks settings take effect at the next restart")
    wanted = {s.name: s for s in new.own_sources()}
    plan = ReloadPlan(config=new, alerting_changed=new.app.alerting != alerting)
    if plan.alerting_changed:
        plan.changes.append("alerting changed")
    for name in sources:
        if name not in wanted:
            plan.removed.append(name)
            plan.changes.append(f"removed {name}")
    for index, (name, settings) in enumerate(wanted.items()):
        current = sources.get(name)
        if current == settings:
            continue
        if current is not None and current.model_copy(update={"labels": settings.labels}) == (
            settings
        ):
            plan.relabelled.append(settings)
            plan.changes.append(f"relabelled {name}")
            continue
        plan.rebuilt.append((index, settings))
        plan.changes.append(f"{'added' if current is None else 'changed'} {name}")
    return plan
