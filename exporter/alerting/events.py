"""Which alerts one collection cycle sends: a pure function of what the cycle counted and what is
still active, tested without a network.

Every event has a key that names it for good (`failed/<source>/<run>`, `stuck/<source>/<run>/0`,
`.../resolved`). The store enqueues events in the same transaction that counts the runs, under
those keys, so a crash can neither lose an event nor make one twice.

Alertmanager tells alerts apart by their labels, so each carries `run_id` as a label too: without
it two failures of one workflow with one code would merge into a single alert. These are
Alertmanager alerts, not Prometheus series; they expire, so the label costs no cardinality.

Over 300 lines with no named split: the planner's open, refresh and resolve steps share one
record of open alerts, and the payload it sends is theirs alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from exporter.config.alerting import AlertingSettings
from exporter.core.accounting import FinishedRun
from exporter.core.logs import mask
from exporter.core.model import RunStatus
from exporter.core.tracking import ActiveRun

FAILED = "WorkflowRunFailed"
STUCK = "WorkflowRunStuck"
REVIEW = "WorkflowReviewWaiting"
ALERTNAMES = {"failed": FAILED, "stuck": STUCK, "review": REVIEW}

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


@dataclass(frozen=True, slots=True)
class AlertEvent:
    key: str
    source: str
    payload: dict[str, Any]  # one alert in Alertmanager's v2 API shape

    @property
    def kind(self) -> str:
        return self.key.split("/", 1)[0]


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """A stuck or review alert that has fired and not yet been resolved."""

    run_id: str
    kind: str  # "stuck" or "review"
    started_at: datetime
    last_sent: datetime
    sends: int
    labels: Mapping[str, str]
    annotations: Mapping[str, str]


@dataclass(slots=True)
class AlertPlan:
    events: list[AlertEvent] = field(default_factory=list)
    opened: list[OpenAlert] = field(default_factory=list)  # new or refreshed
    closed: list[tuple[str, str]] = field(default_factory=list)  # (run id, kind)


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def as_sent(event: AlertEvent, now: datetime, lifetime: timedelta) -> dict[str, Any]:
    """The payload to send now. Alertmanager never notifies an alert that arrives already ended,
    so a firing alert that waited in the queue past its `endsAt` (Alertmanager away longer than
    the alert lives) gets `lifetime` from now; a resolution is sent as it is."""
    if event.key.endswith("/resolved") or not isinstance(event.payload.get("endsAt"), str):
        # Without an end Alertmanager applies its resolve_timeout itself: nothing to extend.
        return event.payload
    try:
        ends = datetime.fromisoformat(event.payload["endsAt"])
    except ValueError:
        return event.payload  # Alertmanager names the bad field; the sender drops that alert alone
    if ends.tzinfo is None:
        ends = ends.replace(tzinfo=UTC)
    if ends > now:
        return event.payload
    return {**event.payload, "endsAt": _iso(now + lifetime)}


def sanitise(message: str, limit: int, secrets: Iterable[str] = ()) -> str:
    """One line of printable text, secrets masked, cut to `limit` characters."""
    message = mask(message, secrets, "[redacted]")
    text = " ".join(_CONTROL.sub(" ", message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Planner:
    settings: AlertingSettings
    secrets: Callable[[], Iterable[str]] = tuple

    def plan(
        self,
        source: str,
        provider: str,
        finished: Iterable[FinishedRun],
        active: Mapping[str, ActiveRun],
        open_alerts: Mapping[tuple[str, str], OpenAlert],
        now: datetime,
        static_labels: Mapping[str, str] | None = None,
    ) -> AlertPlan:
        """`static_labels`: the source's `labels` (team, env), on every alert it opens, so
        Alertmanager can route by them; an open alert keeps the labels it was sent with (they are
        its identity), so a changed label shows on the alerts opened after the change."""
        plan = AlertPlan()
        static = static_labels or {}
        for run in finished:
            self._failed(plan, source, provider, run, now, static)
        wanted = self._open_wanted(source, active, now)
        for (run_id, kind), active_run in wanted.items():
            current = open_alerts.get((run_id, kind))
            if current is None:
                self._open(plan, source, provider, kind, active_run, now, static)
            elif now - current.last_sent >= self.settings.refresh_every:
                self._refresh(plan, source, kind, current, now)
        for (run_id, kind), current in open_alerts.items():
            if (run_id, kind) not in wanted:
                self._resolve(plan, source, kind, current, now)
        return plan

    # Failed runs ------------------------------------------------------------------------------

    def _failed(
        self,
        plan: AlertPlan,
        source: str,
        provider: str,
        run: FinishedRun,
        now: datetime,
        static: Mapping[str, str],
    ) -> None:
        cfg = self.settings.failed
        if not cfg.enabled or run.status not in cfg.statuses:
            return
        if not self.settings.wants(source, run.workflow) or now - run.finished_at > cfg.max_age:
            return
        # The event is the run's (its key, `run.id`); what it says is the id as shown.
        shown = run.shown
        labels = self._labels(FAILED, source, provider, run.workflow, shown, cfg.severity, static)
        labels["code"] = run.code
        annotations = {
            "summary": f"Run {shown} of {run.workflow} {run.status.value} ({source})",
            "description": (
                f"Run {shown} of workflow {run.workflow} on source {source} ({provider}) ended "
                f"{run.status.value} with code {run.code}."
            ),
            "run_id": shown,
            "status": run.status.value,
            "created_at": _iso(run.created_at),
            "finished_at": _iso(run.finished_at),
        }
        if run.error_message:
            annotations["error_message"] = sanitise(
                run.error_message, self.settings.max_message_length, self.secrets()
            )
        link = run.dashboard_url or self._link(source, run.workflow, shown)
        if link:
            annotations["run_url"] = link
        plan.events.append(
            AlertEvent(
                f"failed/{source}/{run.id}",
                source,
                self._payload(labels, annotations, run.finished_at, now + cfg.resolve_after, link),
            )
        )

    # Stuck runs and runs waiting on review ----------------------------------------------------

    def _open_wanted(
        self, source: str, active: Mapping[str, ActiveRun], now: datetime
    ) -> dict[tuple[str, str], ActiveRun]:
        stuck, review = self.settings.stuck, self.settings.review
        wanted: dict[tuple[str, str], ActiveRun] = {}
        for run in active.values():
            if run.awaiting_detail or not self.settings.wants(source, run.workflow):
                continue
            age = now - run.created_at
            if stuck.enabled and run.status in stuck.statuses and age >= stuck.after:
                wanted[(run.id, "stuck")] = run
            elif review.enabled and run.status is RunStatus.NEEDS_REVIEW and age >= review.after:
                wanted[(run.id, "review")] = run
        return wanted

    def _open(
        self,
        plan: AlertPlan,
        source: str,
        provider: str,
        kind: str,
        run: ActiveRun,
        now: datetime,
        static: Mapping[str, str],
    ) -> None:
        severity = (
            self.settings.stuck.severity if kind == "stuck" else self.settings.review.severity
        )
        # The alert is the run's (its key, `run.id`); what it says is the id as shown.
        labels = self._labels(
            ALERTNAMES[kind], source, provider, run.workflow, run.shown, severity, static
        )
        labels["code"] = run.status.value
        waiting = "waits on human review" if kind == "review" else f"is {run.status.value}"
        annotations = {
            "summary": f"Run {run.shown} of {run.workflow} {waiting} ({source})",
            "description": (
                f"Run {run.shown} of workflow {run.workflow} on source {source} ({provider}) "
                f"{waiting} since {_iso(run.created_at)} (created)."
            ),
            "run_id": run.shown,
            "status": run.status.value,
            "created_at": _iso(run.created_at),
        }
        link = self._link(source, run.workflow, run.shown)
        if link:
            annotations["run_url"] = link
        alert = OpenAlert(run.id, kind, now, now, 1, labels, annotations)
        plan.opened.append(alert)
        plan.events.append(self._open_event(source, kind, alert, now, 0))

    def _refresh(
        self, plan: AlertPlan, source: str, kind: str, current: OpenAlert, now: datetime
    ) -> None:
        alert = replace(current, last_sent=now, sends=current.sends + 1)
        plan.opened.append(alert)
        plan.events.append(self._open_event(source, kind, alert, now, current.sends))

    def _open_event(
        self, source: str, kind: str, alert: OpenAlert, now: datetime, index: int
    ) -> AlertEvent:
        # Two refresh periods: one missed refresh does not resolve it, a dead exporter does.
        ends = now + 2 * self.settings.refresh_every
        link = alert.annotations.get("run_url")
        return AlertEvent(
            f"{kind}/{source}/{alert.run_id}/{index}",
            source,
            self._payload(
                dict(alert.labels), dict(alert.annotations), alert.started_at, ends, link
            ),
        )

    def _resolve(
        self, plan: AlertPlan, source: str, kind: str, current: OpenAlert, now: datetime
    ) -> None:
        plan.closed.append((current.run_id, kind))
        link = current.annotations.get("run_url")
        plan.events.append(
            AlertEvent(
                f"{kind}/{source}/{current.run_id}/resolved",
                source,
                self._payload(
                    dict(current.labels), dict(current.annotations), current.started_at, now, link
                ),
            )
        )

    # Shapes -----------------------------------------------------------------------------------

    @staticmethod
    def _labels(
        alertname: str,
        source: str,
        provider: str,
        workflow: str,
        run_id: str,
        severity: str,
        static: Mapping[str, str],
    ) -> dict[str, str]:
        # Static labels first: the alert's own labels win (settings refuse their names anyway).
        return {
            **static,
            "alertname": alertname,
            "source": source,
            "provider": provider,
            "workflow": workflow,
            "severity": severity,
            "run_id": run_id,
        }

    def _link(self, source: str, workflow: str, run_id: str) -> str | None:
        template = self.settings.dashboard_url
        if not template:
            return None
        return template.format(source=source, workflow=workflow, run_id=run_id)

    @staticmethod
    def _payload(
        labels: dict[str, str],
        annotations: dict[str, str],
        starts: datetime,
        ends: datetime,
        link: str | None,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "labels": labels,
            "annotations": annotations,
            "startsAt": _iso(starts),
            "endsAt": _iso(max(ends, starts + timedelta(seconds=1))),
        }
        if link:
            payload["generatorURL"] = link
        return payload
