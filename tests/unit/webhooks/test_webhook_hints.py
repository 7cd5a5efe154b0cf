"""Hints through the exporter's own core (no HTTP): exactly once with polls, whatever the order;
and the service's answers: queue full, replays, a rotated secret, unknown sources, metrics."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from exporter.app import Exporter
from exporter.config.webhooks import WebhookSettings
from exporter.simulator.extend import ExtendSimulator
from exporter.webhooks.service import WebhookService
from exporter.webhooks.wiring import webhook_service
from tests.conftest import ExporterFactory, SimFactory, source_for
from tests.series import active, errors, finished, samples, steps

SECRET = "whsec-hints-0123456789abcdef"
WORKFLOW = "Hinted"


def truth(sim: Any) -> Counter[tuple[str, ...]]:
    return Counter({key: n for key, n in sim.world.truth().finished.items() if n})


def test_a_hint_and_a_poll_count_a_run_once_in_either_order(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("extend", seed=3, arrival_rate_per_min=0)
    sim.world.add_workflow(WORKFLOW)
    exporter = exporter_factory([source_for(sim, "extend", name="ext")])
    exporter.collect_all()
    failed = sim.world.add_runs(3, workflow=WORKFLOW, native_status="FAILED")
    # Before any poll sees them: counted by the hints, with their failure reason.
    report = exporter.apply_hints("ext", [r.id for r in failed] + [failed[0].id])
    assert report is not None
    assert report.counted == 3
    assert report.lookups == 3  # a run named twice is looked up once
    assert finished(exporter, "ext") == Counter({(WORKFLOW, "failed"): 3})
    assert sum(errors(exporter, "ext").values()) == 3
    assert errors(exporter, "ext")[(WORKFLOW, "unspecified")] == 0
    # The poll sees them again, and a hint after the poll too: nothing twice.
    exporter.collect_all()
    exporter.apply_hints("ext", [r.id for r in failed])
    assert finished(exporter, "ext") == truth(sim)
    # A run the poll saw active and a hint then saw finished.
    (running,) = sim.world.add_runs(1, workflow=WORKFLOW, native_status="PROCESSING")
    exporter.collect_all()
    sim.world.finish(running.id, "PROCESSED")
    exporter.apply_hints("ext", [running.id, "no-such-run"])
    assert finished(exporter, "ext") == truth(sim)
    exporter.collect_all()
    assert finished(exporter, "ext") == truth(sim)
    assert exporter.apply_hints("gone", ["x"]) is None


def test_hints_and_polls_racing_never_double_count(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("plextera", seed=4, arrival_rate_per_min=0)
    sim.world.add_workflow(WORKFLOW)
    exporter = exporter_factory([source_for(sim, "plextera", name="plx")])
    exporter.collect_all()
    runs = sim.world.add_runs(40, workflow=WORKFLOW, native_status="COMPLETED")
    ids = [r.id for r in runs]

    def hints() -> None:
        for chunk in range(0, len(ids), 5):
            exporter.apply_hints("plx", ids[chunk : chunk + 5])

    thread = threading.Thread(target=hints)
    thread.start()
    for _ in range(3):
        exporter.collect_all()
    thread.join()
    assert finished(exporter, "plx") == truth(sim) == Counter({(WORKFLOW, "succeeded"): 40})


def extend_request(body: dict[str, Any], secret: str = SECRET) -> tuple[dict[str, str], bytes]:
    raw = json.dumps(body).encode()
    stamp = str(int(time.time()))
    sig = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + raw, hashlib.sha256).hexdigest()
    return {"x-extend-request-timestamp": stamp, "x-extend-request-signature": sig}, raw


def event(n: int) -> dict[str, Any]:
    return {
        "eventId": f"evt_{n}",
        "eventType": "workflow_run.completed",
        "payload": {"id": f"run_{n}"},
    }


def received(exporter: Exporter, source: str) -> dict[str, float]:
    return {
        labels["result"]: value
        for labels, value in samples(exporter.registry, "workflow_exporter_webhooks_received_total")
        if labels["source"] == source
    }


def test_the_service_answers_and_counts_without_http(
    simulator: SimFactory, exporter_factory: ExporterFactory, tmp_path: Path
) -> None:
    sim = simulator("extend", seed=5, arrival_rate_per_min=0)
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n", encoding="utf-8")
    exporter = exporter_factory(
        [
            source_for(sim, "extend", name="ext", webhook_secret_file=str(secret_file)),
            source_for(sim, "extend", name="quiet"),
        ],
        webhooks={"queue_size": 2},
    )
    release = threading.Event()
    applied: list[list[str]] = []

    def blocked(name: str, run_ids: list[str], payloads: Mapping[str, Any]) -> None:
        release.wait(5)
        applied.append(run_ids)

    service = WebhookService(
        WebhookSettings(queue_size=2),
        exporter.registry,
        source_settings=lambda n: exporter.sources[n].settings if n in exporter.sources else None,
        configured=lambda: [r.settings for r in exporter.sources.values()],
        apply_hints=blocked,
        poll=lambda name: None,
    )
    try:
        # Zero from the start, for the sources that take webhooks only.
        assert set(received(exporter, "ext").values()) == {0.0}
        assert received(exporter, "quiet") == {}
        assert not service.accepts("quiet")
        assert service.receive("nope", *extend_request(event(0))).status == 404

        assert service.receive("ext", *extend_request(event(1))).status == 202
        time.sleep(0.2)  # the worker takes run_1 and waits in `blocked`
        assert service.receive("ext", *extend_request(event(2))).status == 202
        assert service.receive("ext", *extend_request(event(3))).status == 202
        full = service.receive("ext", *extend_request(event(4)))
        assert full.status == 429
        assert full.headers["Retry-After"]
        assert service.receive("ext", *extend_request(event(2))).status == 200  # replayed
        release.set()
        deadline = time.monotonic() + 5
        while len(applied) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        # The refused event's retry is taken: its id was not remembered.
        assert service.receive("ext", *extend_request(event(4))).status == 202
        assert received(exporter, "ext")["queue_full"] == 1
        assert received(exporter, "ext")["replayed"] == 1

        # A rotated secret file: the old secret is refused from the next request on.
        new_secret = SECRET + "-rotated"
        secret_file.write_text(new_secret, encoding="utf-8")
        assert service.receive("ext", *extend_request(event(5))).status == 401
        assert service.receive("ext", *extend_request(event(6), new_secret)).status == 202
    finally:
        release.set()
        service.stop()


def test_wired_service_counts_through_the_exporter(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("extend", seed=6, arrival_rate_per_min=0)
    assert isinstance(sim, ExtendSimulator)
    sim.world.add_workflow(WORKFLOW)
    exporter = exporter_factory([source_for(sim, "extend", name="ext", webhook_secret=SECRET)])
    exporter.collect_all()
    service = webhook_service(exporter)
    try:
        (run,) = sim.world.add_runs(1, workflow=WORKFLOW, native_status="FAILED")
        body = {"eventId": "e1", "eventType": "workflow_run.failed", "payload": {"id": run.id}}
        assert service.receive("ext", *extend_request(body)).status == 202
        deadline = time.monotonic() + 5
        while not finished(exporter, "ext") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert finished(exporter, "ext") == Counter({(WORKFLOW, "failed"): 1})
        latency = samples(exporter.registry, "workflow_exporter_webhook_hint_latency_seconds_count")
        assert latency == [({"source": "ext"}, 1.0)]
        # A payload delivered as a URL names no run: the source is polled now instead.
        (other,) = sim.world.add_runs(1, workflow=WORKFLOW, native_status="PROCESSED")
        as_url = {
            "eventId": "e2",
            "eventType": "workflow_run.completed",
            "payload": {"data": "https://files.example/signed"},
        }
        assert service.receive("ext", *extend_request(as_url)).status == 202
        deadline = time.monotonic() + 5
        while finished(exporter, "ext") != truth(sim) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert finished(exporter, "ext") == truth(sim)
        assert other.id
    finally:
        service.stop()


def test_webhook_settings_are_checked_with_the_field_path(tmp_path: Path) -> None:
    from exporter.config.settings import config_from_data
    from exporter.core.errors import ConfigError

    def problems(**source: Any) -> list[str]:
        base = {"name": "s", "api_key": "k-1234567890", **source}
        try:
            config_from_data({"sources": [base]}, environ={})
        except ConfigError as exc:
            return exc.problems
        return []

    assert problems(provider="extend", webhook_secret=SECRET) == []
    assert "sends no webhooks" in " ".join(problems(provider="noxus", webhook_secret=SECRET))
    both = problems(provider="plextera", webhook_secret=SECRET, webhook_secret_file="/x")
    assert "mutually exclusive" in " ".join(both)
    missing = problems(provider="extend", webhook_secret_file=str(tmp_path / "none"))
    assert missing[0].startswith("sources[0].webhook_secret_file:")
    assert SECRET not in " ".join(both + missing)


def test_the_cli_refuses_basic_auth_on_the_webhook_listener(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from exporter.cli import main

    config = tmp_path / "config.yml"
    config.write_text(
        "sources:\n  - {name: e, provider: extend, api_key: k-1234567890}\n", encoding="utf-8"
    )
    web = tmp_path / "web.yml"
    import bcrypt

    hashed = bcrypt.hashpw(b"pw-123456", bcrypt.gensalt(rounds=4)).decode()
    web.write_text(f"basic_auth_users: {{p: '{hashed}'}}\n", encoding="utf-8")
    args = ["run", "--config.file", str(config), "--webhook.config.file", str(web)]
    assert main(args) == 2  # a config file without a listener
    assert main([*args, "--webhook.listen-address", "127.0.0.1:0"]) == 2
    assert "basic_auth_users is not used for webhooks" in capsys.readouterr().err


def test_a_run_deleted_before_its_lookup_is_counted_from_its_signed_payload(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    extend = simulator("extend", seed=7, arrival_rate_per_min=0)
    plextera = simulator("plextera", seed=7, arrival_rate_per_min=0)
    for sim in (extend, plextera):
        sim.world.add_workflow(WORKFLOW)
    exporter = exporter_factory(
        [source_for(extend, "extend", name="ext"), source_for(plextera, "plextera", name="plx")]
    )
    (running,) = extend.world.add_runs(1, workflow=WORKFLOW, native_status="PROCESSING")
    exporter.collect_all()  # `running` is tracked active
    (failed,) = extend.world.add_runs(1, workflow=WORKFLOW, native_status="FAILED")
    (done,) = plextera.world.add_runs(1, workflow=WORKFLOW, native_status="FAILED")
    payloads = {
        failed.id: extend.render(failed, detailed=True),  # type: ignore[attr-defined]
        running.id: extend.render(running, detailed=True),  # type: ignore[attr-defined]
    }
    plx_payload = {done.id: plextera.render(done)}  # type: ignore[attr-defined]
    for sim, run in ((extend, failed), (plextera, done), (extend, running)):
        sim.world.delete(run.id)

    report = exporter.apply_hints("ext", [failed.id, running.id], payloads)
    assert report is not None
    assert report.counted == 1
    assert finished(exporter, "ext") == Counter({(WORKFLOW, "failed"): 1})
    # With its reason, from the payload; the deleted active run dropped, not counted.
    assert errors(exporter, "ext") == Counter({(WORKFLOW, failed.error_code): 1})
    exporter.apply_hints("plx", [done.id], plx_payload)
    assert finished(exporter, "plx") == Counter({(WORKFLOW, "failed"): 1})
    exporter.collect_all()
    assert finished(exporter, "ext") == truth(extend)
    assert finished(exporter, "plx") == truth(plextera)


def test_hints_keep_to_the_workflow_filter_and_look_up_no_counted_run(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("extend", seed=5, arrival_rate_per_min=0)
    sim.world.add_workflow(WORKFLOW)
    sim.world.add_workflow("Sandbox")
    source = {**source_for(sim, "extend", name="ext"), "workflows": {"exclude": ["Sandbox"]}}
    exporter = exporter_factory([source])
    exporter.collect_all()
    kept = sim.world.add_runs(2, workflow=WORKFLOW, native_status="FAILED")
    left_out = sim.world.add_runs(2, workflow="Sandbox", native_status="FAILED")

    report = exporter.apply_hints("ext", [r.id for r in kept + left_out])
    assert report is not None
    assert report.counted == 2
    assert finished(exporter, "ext") == Counter({(WORKFLOW, "failed"): 2})
    # A platform's retried delivery of runs already counted costs no request.
    again = exporter.apply_hints("ext", [r.id for r in kept])
    assert again is not None
    assert again.lookups == 0
    exporter.collect_all()
    assert finished(exporter, "ext") == Counter({(WORKFLOW, "failed"): 2})


def test_a_finished_run_in_a_signed_extend_event_is_counted_without_a_lookup(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("extend", seed=6, arrival_rate_per_min=0)
    assert isinstance(sim, ExtendSimulator)
    sim.world.add_workflow(WORKFLOW)
    exporter = exporter_factory([source_for(sim, "extend", name="ext")])
    exporter.collect_all()
    failed = sim.world.add_runs(2, workflow=WORKFLOW, native_status="FAILED")
    (running,) = sim.world.add_runs(1, workflow=WORKFLOW, native_status="PROCESSING")
    with sim.world.lock:
        events = {r.id: sim.render(r, detailed=True) for r in [*failed, running]}
    sim.clear_requests()

    report = exporter.apply_hints("ext", list(events), events)
    assert report is not None
    # The failed runs came whole, reason and all; the unfinished one is looked up.
    assert report.lookups == 1
    assert [r.path for r in sim.requests] == [f"/workflow_runs/{running.id}"]
    assert finished(exporter, "ext") == Counter({(WORKFLOW, "failed"): 2})
    assert errors(exporter, "ext")[(WORKFLOW, "unspecified")] == 0
    exporter.collect_all()
    assert finished(exporter, "ext") == truth(sim)


def test_replay_memory_is_written_only_for_signed_fresh_events_and_keyed_per_source(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("extend", seed=8, arrival_rate_per_min=0)
    exporter = exporter_factory(
        [
            source_for(sim, "extend", name="ext", webhook_secret=SECRET),
            source_for(sim, "extend", name="ext2", webhook_secret=SECRET),
        ]
    )
    now = [time.time()]
    applied: list[tuple[str, list[str]]] = []
    service = WebhookService(
        WebhookSettings(),
        exporter.registry,
        source_settings=lambda n: exporter.sources[n].settings if n in exporter.sources else None,
        configured=lambda: [r.settings for r in exporter.sources.values()],
        apply_hints=lambda name, ids, _p: applied.append((name, ids)),
        poll=lambda name: None,
        clock=lambda: now[0],
    )
    guards = service._guards
    try:
        headers, raw = extend_request(event(1))
        # Unsigned, wrongly signed and stale requests leave nothing in the memory.
        for _ in range(50):
            assert service.receive("ext", {}, raw).status == 401
            forged = {**headers, "x-extend-request-signature": "0" * 64}
            assert service.receive("ext", forged, raw).status == 401
        now[0] += 600
        assert service.receive("ext", headers, raw).status == 401  # stale
        assert sum(len(g) for g in guards.values()) == 0
        # Then the same event, freshly signed, is taken: a stale copy did not burn its id.
        now[0] = time.time()
        assert service.receive("ext", *extend_request(event(1))).status == 202
        assert len(guards["ext"]) == 1
        # Signed again (another timestamp, so another signature), same eventId: a replay.
        time.sleep(1.05)
        again = extend_request(event(1))
        assert again[0]["x-extend-request-signature"] != headers["x-extend-request-signature"]
        assert service.receive("ext", *again).status == 200
        # The same eventId at another source is that source's own.
        assert service.receive("ext2", *extend_request(event(1))).status == 202
        deadline = time.monotonic() + 3
        while len(applied) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sorted(applied) == [("ext", ["run_1"]), ("ext2", ["run_1"])]
        assert received(exporter, "ext")["replayed"] == 1
    finally:
        service.stop()


def test_extend_counts_failed_runs_steps_only_whether_a_run_came_by_event_lookup_or_poll(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    """With `steps: true` an Extend source counts the steps of failed runs only
    (docs/providers.md: Steps); a succeeded run's detail, from a signed event or a hint's lookup,
    carries its steps too, and counting them there would make the step counts depend on how the
    run was delivered."""
    sim = simulator("extend", seed=8, arrival_rate_per_min=0)
    assert isinstance(sim, ExtendSimulator)
    sim.world.add_workflow(WORKFLOW)
    exporter = exporter_factory([source_for(sim, "extend", name="ext", steps=True)])
    exporter.collect_all()
    carried = sim.world.add_runs(2, workflow=WORKFLOW, native_status="PROCESSED")
    looked_up = sim.world.add_runs(2, workflow=WORKFLOW, native_status="PROCESSED")
    failed = sim.world.add_runs(2, workflow=WORKFLOW, native_status="FAILED")
    with sim.world.lock:
        events = {r.id: sim.render(r, detailed=True) for r in [*carried, *failed]}
    sim.clear_requests()

    report = exporter.apply_hints("ext", [*events, *(r.id for r in looked_up)], events)
    assert report is not None
    assert report.counted == 6
    # The succeeded runs' events are whole without steps: only the hint without one looks up.
    assert report.lookups == len(looked_up)
    exporter.collect_all()
    truth_now = sim.world.truth()
    assert finished(exporter, "ext") == truth(sim)
    assert truth_now.failed_run_steps
    assert steps(exporter, "ext") == truth_now.failed_run_steps


def test_a_signed_event_of_a_left_out_workflow_costs_no_lookup(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    """docs/configuration.md: a left-out workflow costs no lookups. An Extend event carries the
    whole run, its workflow too: a run of a left-out workflow (here one waiting for review, which
    a finished run's event would not spare a lookup for) is not looked up."""
    sim = simulator("extend", seed=9, arrival_rate_per_min=0)
    assert isinstance(sim, ExtendSimulator)
    sim.world.add_workflow(WORKFLOW)
    sim.world.add_workflow("Sandbox")
    source = {**source_for(sim, "extend", name="ext"), "workflows": {"exclude": ["Sandbox"]}}
    exporter = exporter_factory([source])
    exporter.collect_all()
    left_out = sim.world.add_runs(2, workflow="Sandbox", native_status="NEEDS_REVIEW")
    kept = sim.world.add_runs(1, workflow=WORKFLOW, native_status="NEEDS_REVIEW")
    with sim.world.lock:
        events = {r.id: sim.render(r, detailed=True) for r in [*left_out, *kept]}
    sim.clear_requests()

    report = exporter.apply_hints("ext", list(events), events)
    assert report is not None
    assert [r.path for r in sim.requests] == [f"/workflow_runs/{kept[0].id}"]
    assert report.lookups == 1
    assert active(exporter, "ext") == Counter({(WORKFLOW, "needs_review"): 1})


def test_a_finished_run_an_event_carried_is_counted_when_the_lookup_budget_is_spent(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    """The lookup budget bounds requests; a run counted from its event costs none, so hints
    after the budget is spent are still counted from what their events carried."""
    sim = simulator("extend", seed=10, arrival_rate_per_min=0)
    assert isinstance(sim, ExtendSimulator)
    sim.world.add_workflow(WORKFLOW)
    exporter = exporter_factory([source_for(sim, "extend", name="ext", lookup_budget=1)])
    exporter.collect_all()
    waiting = sim.world.add_runs(2, workflow=WORKFLOW, native_status="NEEDS_REVIEW")
    failed = sim.world.add_runs(1, workflow=WORKFLOW, native_status="FAILED")
    with sim.world.lock:
        events = {r.id: sim.render(r, detailed=True) for r in [*waiting, *failed]}

    report = exporter.apply_hints("ext", list(events), events)
    assert report is not None
    assert report.lookups == 1
    assert report.counted == 1
    assert finished(exporter, "ext") == Counter({(WORKFLOW, "failed"): 1})
