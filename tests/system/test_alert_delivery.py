"""Delivery from the outbox to a real Alertmanager on loopback: batches, the rate cap, a batch with
one alert Alertmanager refuses, and an Alertmanager that is not there."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from exporter.alerting.delivery import Sender
from exporter.alerting.events import AlertEvent, AlertPlan, Planner
from exporter.alerting.outbox import Outbox, writer
from exporter.config.alerting import AlertingSettings
from exporter.core.accounting import FinishedRun
from exporter.core.model import RunStatus
from exporter.core.units import DEFAULT_BUCKETS
from exporter.state.store import Store
from tests.loopback import Processes, Webhook, free_port, serve_webhook, start_alertmanager, until

pytestmark = pytest.mark.system

NOW = datetime.now(UTC).replace(microsecond=0)
CHAT_ROUTE = (
    Path(__file__).resolve().parents[2] / "monitoring" / "alertmanager" / "workflow-runs-chat.yml"
)


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    processes = Processes()
    port = free_port()
    try:
        start_alertmanager(
            processes,
            tmp_path_factory.mktemp("alertmanager"),
            port,
            {"route": {"receiver": "none"}, "receivers": [{"name": "none"}]},
        )
        yield f"http://127.0.0.1:{port}"
    finally:
        processes.stop_all()


class RecordingObserver:
    """What the exporter's AlertInstruments would count."""

    def __init__(self) -> None:
        self.sent_by_kind: Counter[str] = Counter()
        self.failed_by_reason: Counter[str] = Counter()

    def sent(self, kind: str, count: int) -> None:
        self.sent_by_kind[kind] += count

    def failed(self, reason: str, count: int) -> None:
        self.failed_by_reason[reason] += count


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _event(alertname: str, n: int, *, ends: datetime | None = None) -> AlertEvent:
    return AlertEvent(
        f"failed/test/{alertname}-{n}",
        "test",
        {
            "labels": {"alertname": alertname, "run_id": f"run-{n}", "source": "test"},
            "annotations": {"summary": f"run {n}"},
            "startsAt": NOW.isoformat(),
            "endsAt": (ends or NOW + timedelta(hours=1)).isoformat(),
        },
    )


def _queue(store: Store, events: list[AlertEvent]) -> None:
    store.write(writer("test", AlertPlan(events=events), NOW))


@contextmanager
def _sender(
    store: Store, urls: str | list[str], clock: Clock, **settings: Any
) -> Iterator[tuple[Sender, Outbox, RecordingObserver]]:
    outbox = Outbox(store)
    observer = RecordingObserver()
    targets = [{"url": url} for url in ([urls] if isinstance(urls, str) else urls)]
    config = AlertingSettings.model_validate({"alertmanagers": targets, **settings})
    sender = Sender(config, outbox, observer, clock=clock)
    try:
        yield sender, outbox, observer
    finally:
        sender.close()


def _in_alertmanager(url: str, alertname: str) -> set[str]:
    alerts = httpx.get(f"{url}/api/v2/alerts", timeout=5).json()
    return {a["labels"]["run_id"] for a in alerts if a["labels"]["alertname"] == alertname}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "state.db", DEFAULT_BUCKETS)
    yield store
    store.close()


def test_batches_reach_alertmanager_and_leave_the_outbox(alertmanager: str, store: Store) -> None:
    _queue(store, [_event("DeliveryBatches", n) for n in range(10)])
    with _sender(store, alertmanager, Clock(), batch_size=4) as (sender, outbox, observer):
        assert sender.flush() == 10
        assert outbox.depth() == 0
        assert observer.sent_by_kind == Counter({"failed": 10})
        assert _in_alertmanager(alertmanager, "DeliveryBatches") == {f"run-{n}" for n in range(10)}
        assert sender.flush() == 0  # nothing left, nothing resent


def test_one_invalid_alert_is_dropped_and_the_rest_of_its_batch_delivered(
    alertmanager: str, store: Store
) -> None:
    # Alertmanager refuses a whole batch (400) for one alert with a label name it cannot take.
    events = [_event("DeliveryInvalid", n) for n in range(7)]
    events[4].payload["labels"]["not-a-label-name"] = "x"
    _queue(store, events)
    with _sender(store, alertmanager, Clock(), batch_size=64) as (sender, outbox, observer):
        assert sender.flush() == 6
        assert outbox.depth() == 0, "the refused alert does not block the queue"
        assert observer.failed_by_reason == Counter({"invalid": 1})
        assert _in_alertmanager(alertmanager, "DeliveryInvalid") == {
            f"run-{n}" for n in range(7) if n != 4
        }


def test_the_rate_cap_holds_the_rest_queued_until_tokens_return(
    alertmanager: str, store: Store
) -> None:
    _queue(store, [_event("DeliveryCapped", n) for n in range(5)])
    clock = Clock()
    with _sender(store, alertmanager, clock, max_per_minute=3) as (sender, outbox, _):
        assert sender.flush() == 3
        assert sender.flush() == 0
        assert outbox.depth() == 2
        clock.now += 40  # two tokens at three a minute
        assert sender.flush() == 2
        assert outbox.depth() == 0
        assert len(_in_alertmanager(alertmanager, "DeliveryCapped")) == 5


def test_an_unreachable_alertmanager_keeps_the_queue_and_backs_off(
    alertmanager: str, store: Store
) -> None:
    _queue(store, [_event("DeliveryDown", n) for n in range(3)])
    clock = Clock()
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with _sender(store, down, clock) as (sender, outbox, observer):
        assert sender.flush() == 0
        assert outbox.depth() == 3
        assert observer.failed_by_reason == Counter({"error": 3})
        assert sender.flush() == 0
        assert observer.failed_by_reason == Counter({"error": 3}), "no retry before the backoff"
        clock.now += 1.5
        assert sender.flush() == 0
        assert observer.failed_by_reason == Counter({"error": 6}), "retried after 1 s"
        clock.now += 1.5
        sender.flush()
        assert observer.failed_by_reason == Counter({"error": 6}), "the backoff doubled to 2 s"

    # Another Alertmanager configured later takes the events that waited.
    with _sender(store, alertmanager, clock) as (sender, outbox, _):
        assert sender.flush() == 3
        assert outbox.depth() == 0


def test_every_alertmanager_gets_each_event_once_even_when_one_is_down(
    alertmanager: str, store: Store
) -> None:
    _queue(store, [_event("DeliveryPair", n) for n in range(4)])
    clock = Clock()
    down = f"http://127.0.0.1:{free_port()}"
    with _sender(store, [alertmanager, down], clock) as (sender, outbox, _):
        assert sender.flush() == 4
        # Taken by one target, not the other: still queued, but not for the one that took it.
        assert outbox.depth() == 4
        assert outbox.pending(alertmanager, 10) == []
        assert len(outbox.pending(down, 10)) == 4


def test_the_documented_chat_route_posts_each_failed_run_with_its_message_and_link(
    tmp_path: Path, store: Store
) -> None:
    """monitoring/alertmanager/workflow-runs-chat.yml on a real Alertmanager, its Slack webhook
    pointed at a local recorder: the chat message names each run, its error and its link."""
    config = yaml.safe_load(CHAT_ROUTE.read_text(encoding="utf-8"))
    chat = Webhook()
    server, port = serve_webhook(chat)
    route = config["route"]["routes"][0]
    route["group_wait"] = route["group_interval"] = "1s"
    (slack,) = config["receivers"][1]["slack_configs"]
    del slack["api_url_file"]
    slack["api_url"] = f"http://127.0.0.1:{port}/"
    processes = Processes()
    am_port = free_port()
    try:
        start_alertmanager(processes, tmp_path, am_port, config)
        planner = Planner(AlertingSettings.model_validate({"alertmanagers": [{"url": "http://x"}]}))
        now = datetime.now(UTC)
        runs = [
            FinishedRun(
                f"run-{n}",
                "Invoices",
                RunStatus.FAILED,
                "OCR_TIMEOUT",
                now - timedelta(minutes=2),
                now - timedelta(seconds=10),
                error_message="OCR timed out on page 3",
                dashboard_url=f"https://dashboard.extend.ai/workflows/runs/run-{n}",
            )
            for n in range(2)
        ]
        plan = planner.plan("extend-prod", "extend", runs, {}, {}, now)
        store.write(writer("extend-prod", plan, now))
        with _sender(store, f"http://127.0.0.1:{am_port}", Clock()) as (sender, _, _):
            assert sender.flush() == 2
        until("a chat message", lambda: bool(chat.notifications), 20)
    finally:
        processes.stop_all()
        server.shutdown()
        server.server_close()
    (message,) = chat.notifications
    assert message["channel"] == "#document-workflows"
    (attachment,) = message["attachments"]
    assert attachment["title"] == "FIRING WorkflowRunFailed: Invoices on extend-prod (2)"
    for n in range(2):
        assert (
            f"• Run run-{n} of Invoices failed (extend-prod): OCR timed out on page 3 "
            f"<https://dashboard.extend.ai/workflows/runs/run-{n}|open>"
        ) in attachment["text"]


def test_the_alerting_docs_show_the_chat_route_as_tested() -> None:
    page = (CHAT_ROUTE.parent.parent.parent / "docs" / "alerting.md").read_text(encoding="utf-8")
    assert CHAT_ROUTE.read_text(encoding="utf-8") in page


def test_a_failure_queued_longer_than_it_lives_still_fires_and_a_resolution_stays_resolved(
    alertmanager: str, store: Store
) -> None:
    """Alertmanager away for three hours: the failed-run alert ended (an hour after the run) while
    it waited. Sent as queued, Alertmanager would file it as resolved and never notify."""
    long_ago = NOW - timedelta(hours=3)
    late = _event("DeliveryLate", 1, ends=long_ago + timedelta(hours=1))
    late.payload["startsAt"] = long_ago.isoformat()
    resolution = AlertEvent(
        "stuck/test/DeliveryLate-2/resolved",
        "test",
        {**_event("DeliveryLate", 2).payload, "endsAt": long_ago.isoformat()},
    )
    resolution.payload["startsAt"] = (long_ago - timedelta(hours=1)).isoformat()
    _queue(store, [late, resolution])
    with _sender(store, alertmanager, Clock(), failed={"resolve_after": "2h"}) as (sender, _, _):
        assert sender.flush() == 2
    alerts = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
    (fired,) = [a for a in alerts if a["labels"]["alertname"] == "DeliveryLate"]
    assert fired["labels"]["run_id"] == "run-1"
    assert fired["status"]["state"] == "active"
    ends = datetime.fromisoformat(fired["endsAt"])
    assert timedelta(hours=1, minutes=59) < ends - datetime.now(UTC) <= timedelta(hours=2)
