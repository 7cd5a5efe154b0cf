"""Per-source static labels: on every series of their source (domain and self metrics, both
formats, `name[]` scrapes, exemplars kept) and nowhere else; on the source's alerts; changed by a
reload; names checked against the label names the exporter really uses."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from exporter.config.settings import config_from_data
from exporter.core.errors import ConfigError
from exporter.core.labelnames import RESERVED_LABEL_NAMES
from exporter.exposition.formats import generate_text
from tests.conftest import ExporterFactory, SimFactory, source_for
from tests.loopback import Processes, binary, free_port, start_exporter, until

PAYMENTS = {"team": "payments", "env": "prod"}


def _text_samples(text: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def _assert_labels_only_on_their_source(
    samples: list[Sample], source: str, labels: dict[str, str]
) -> None:
    """Every sample of `source` carries `labels`; no other sample carries any of their names."""
    for sample in samples:
        carried = {k: sample.labels[k] for k in labels if k in sample.labels}
        if sample.labels.get("source") == source:
            assert carried == labels, sample
        else:
            assert not carried, sample


def _scrape(port: int, path: str = "/metrics", **headers: str) -> str:
    response = httpx.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=5)
    response.raise_for_status()
    return response.text


@pytest.mark.timeout(120)
def test_a_running_exporter_labels_every_series_of_the_source_and_nothing_else(
    simulator: SimFactory, tmp_path: Path
) -> None:
    plextera = simulator("plextera", seed=181, workflows=3)
    plextera.world.add_runs(30)
    plextera.world.advance(3600)  # finished runs: duration buckets with exemplars
    noxus = simulator("noxus", seed=182, workflows=2)
    noxus.world.add_runs(10)
    port = free_port()
    state = tmp_path / "state.db"

    def config(labels: dict[str, str]) -> dict[str, Any]:
        return {
            "interval": "1s",
            "state_path": str(state),
            "new_series_hold": "0s",
            "sources": [
                source_for(plextera, "plextera", name="payments", labels=labels),
                source_for(noxus, "noxus", name="unlabelled"),
            ],
        }

    processes = Processes()
    try:
        proc = start_exporter(processes, tmp_path, port, config(PAYMENTS))

        def collected() -> bool:
            try:
                samples = _text_samples(_scrape(port))
            except httpx.HTTPError:
                return False
            succeeded = {
                s.labels["source"]
                for s in samples
                if s.name == "workflow_exporter_collections_total"
                and s.labels["result"] == "success"
                and s.value >= 1
            }
            return succeeded == {"payments", "unlabelled"}

        until("both sources collected", collected, 60)

        body = _scrape(port)
        text = _text_samples(body)
        _assert_labels_only_on_their_source(text, "payments", PAYMENTS)
        lint = subprocess.run(
            [binary("promtool"), "check", "metrics"],
            input=body,
            capture_output=True,
            text=True,
            check=False,
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr
        names = {s.name for s in text if s.labels.get("source") == "payments"}
        # Domain and self metrics alike.
        assert {"workflow_runs_finished_total", "workflow_exporter_source_up"} <= names
        assert "workflow_exporter_api_requests_total" in names
        assert any(s.labels.get("source") == "unlabelled" for s in text)
        assert any(s.name == "workflow_exporter_build_info" for s in text)  # no source: as is

        om = [
            sample
            for family in openmetrics_families(  # type: ignore[no-untyped-call]
                _scrape(port, Accept="application/openmetrics-text; version=1.0.0")
            )
            for sample in family.samples
        ]
        _assert_labels_only_on_their_source(om, "payments", PAYMENTS)
        exemplars = [
            s
            for s in om
            if s.name == "workflow_run_duration_seconds_bucket"
            and s.labels.get("source") == "payments"
            and s.exemplar is not None
        ]
        assert exemplars, "the exemplars survive the added labels"
        assert {e.exemplar.labels["run_id"] for e in exemplars if e.exemplar} <= set(
            plextera.world.runs
        )

        restricted = _text_samples(_scrape(port, "/metrics?name[]=workflow_runs_finished_total"))
        assert {s.name for s in restricted} == {"workflow_runs_finished_total"}
        _assert_labels_only_on_their_source(restricted, "payments", PAYMENTS)

        before = sum(
            s.value
            for s in text
            if s.name == "workflow_runs_finished_total" and s.labels["source"] == "payments"
        )
        # A reload changes the labels: a new value, one label gone, one added.
        (tmp_path / "exporter.yml").write_text(
            yaml.safe_dump(config({"team": "billing", "tier": "gold"})), encoding="utf-8"
        )
        proc.send_signal(signal.SIGHUP)
        until("the new labels served", lambda: 'team="billing"' in _scrape(port), 30)
        after = _text_samples(_scrape(port))
        _assert_labels_only_on_their_source(after, "payments", {"team": "billing", "tier": "gold"})
        assert not any("env" in s.labels for s in after)
        assert (
            sum(
                s.value
                for s in after
                if s.name == "workflow_runs_finished_total" and s.labels["source"] == "payments"
            )
            >= before
        ), "the counts go on under the new labels"
    finally:
        processes.stop_all()


def test_the_alerts_of_a_source_carry_its_static_labels(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("plextera", seed=183, workflows=2)
    sim.world.add_runs(40)
    sim.world.advance(3600)
    other = simulator("noxus", seed=184, workflows=2)
    other.world.add_runs(40)
    other.world.advance(3600)
    target = f"http://127.0.0.1:{free_port()}"  # never flushed to: the queue is read instead
    exporter = exporter_factory(
        [
            source_for(sim, "plextera", name="payments", labels=PAYMENTS),
            source_for(other, "noxus", name="unlabelled"),
        ],
        alerting={"alertmanagers": [{"url": target}], "failed": {"max_age": "24h"}},
    )
    assert all(report.ok for report in exporter.collect_all())
    agent = exporter.alerting
    assert agent is not None
    events = agent.outbox.pending(target, 10_000)
    by_source = {e.source for e in events}
    assert by_source == {"payments", "unlabelled"}, "failed runs on both sources alert"
    for event in events:
        labels = event.payload["labels"]
        carried = {k: labels[k] for k in PAYMENTS if k in labels}
        assert carried == (PAYMENTS if event.source == "payments" else {})


def test_the_reserved_names_cover_every_label_the_exporter_uses(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    """Read from a running exporter (domain, self, alerting metrics and alert labels), not from a
    list: a label added to the code without reserving it fails here."""
    sim = simulator("extend", seed=185, workflows=2)
    sim.world.add_runs(30)
    sim.world.advance(3600)
    target = f"http://127.0.0.1:{free_port()}"
    exporter = exporter_factory(
        [source_for(sim, "extend", name="x")],
        alerting={"alertmanagers": [{"url": target}], "failed": {"max_age": "24h"}},
    )
    assert exporter.collect_all()[0].ok
    used: set[str] = set()
    for family in exporter.registry.collect():
        for sample in family.samples:
            if "source" in sample.labels or family.name.startswith("workflow_"):
                used |= sample.labels.keys()
    agent = exporter.alerting
    assert agent is not None
    events = agent.outbox.pending(target, 10_000)
    assert events
    for event in events:
        used |= event.payload["labels"].keys()
    assert {"source", "workflow", "status", "code", "le", "run_id"} <= used
    assert used <= RESERVED_LABEL_NAMES, sorted(used - RESERVED_LABEL_NAMES)


def _problems(labels: Any) -> list[str]:
    source = {"name": "a", "provider": "noxus", "api_key": "k", "labels": labels}
    try:
        config_from_data({"sources": [{"name": "ok", "provider": "noxus", "api_key": "k"}, source]})
    except ConfigError as exc:
        return list(exc.problems)
    return []


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        ({"bad-name": "x"}, "sources[1].labels.bad-name: not a Prometheus label name"),
        ({"1team": "x"}, "sources[1].labels.1team: not a Prometheus label name"),
        ({"__team": "x"}, "sources[1].labels.__team: names starting with __ are reserved"),
        ({"workflow": "x"}, "sources[1].labels.workflow: the exporter uses this label name"),
        ({"job": "x"}, "sources[1].labels.job: the exporter uses this label name"),
        ({"team": ""}, "sources[1].labels.team: must not be empty"),
        ({"team": "x" * 129}, "sources[1].labels.team: at most 128 characters"),
        ({"team": "a\nb"}, "sources[1].labels.team: must not hold control characters"),
        ({f"l{i}": "x" for i in range(17)}, "sources[1].labels: dictionary should have at most 16"),
        ("team=payments", "sources[1].labels: input should be a valid dictionary"),
    ],
)
def test_a_bad_static_label_is_a_config_error_naming_its_path(labels: Any, problem: str) -> None:
    problems = _problems(labels)
    assert any(p.startswith(problem) for p in problems), problems


def test_good_static_labels_are_kept_as_given() -> None:
    config = config_from_data(
        {"sources": [{"name": "a", "provider": "noxus", "api_key": "k", "labels": PAYMENTS}]},
        environ={},
    )
    assert config.sources[0].labels == PAYMENTS


def test_pre_written_lines_get_the_same_labels_as_the_samples(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    """Both formats write the labels into the lines (no samples built); prometheus_client's
    writers and `get_sample_value` read the samples: both must say the same."""
    sim = simulator("noxus", seed=186, workflows=3)
    sim.world.add_runs(30)
    sim.world.advance(1800)
    other = simulator("plextera", seed=187, workflows=2)
    other.world.add_runs(10)
    exporter = exporter_factory(
        [
            source_for(sim, "noxus", name="payments", labels=PAYMENTS),
            source_for(other, "plextera", name="unlabelled"),
        ]
    )
    assert all(report.ok for report in exporter.collect_all())

    def keys(samples: Iterable[Sample]) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
        # The exporter's own series, but for the ages, which move between two renderings.
        return {
            (s.name, tuple(sorted(s.labels.items())), s.value)
            for s in samples
            if s.name.startswith("workflow_") and "_age_seconds" not in s.name
        }

    written = keys(_text_samples(generate_text(exporter.exposed).decode()))
    from_samples = keys(s for family in exporter.exposed.collect() for s in family.samples)
    assert written == from_samples
    labelled = [s for s in written if ("source", "payments") in s[1]]
    assert any(name == "workflow_runs_finished_total" for name, _, _ in labelled)
    assert all({("team", "payments"), ("env", "prod")} <= set(labels) for _, labels, _ in labelled)


def test_a_reload_of_labels_alone_keeps_the_source_running_and_relabels_it(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sim = simulator("noxus", seed=188, workflows=2)
    sim.world.add_runs(10)
    source = source_for(sim, "noxus", name="payments", labels=PAYMENTS)
    exporter = exporter_factory([source])
    assert exporter.collect_all()[0].ok
    collector = exporter.sources["payments"].collector

    changed = {**source, "labels": {"team": "billing"}}
    new = config_from_data(
        {"state_path": str(exporter.config.app.state_path), "sources": [changed]}, environ={}
    )
    assert exporter.reload(new) == ["relabelled payments"]

    assert exporter.sources["payments"].collector is collector, "not rebuilt"
    assert collector.settings.labels == {"team": "billing"}
    text = _text_samples(generate_text(exporter.exposed).decode())
    _assert_labels_only_on_their_source(text, "payments", {"team": "billing"})
    assert not any("env" in s.labels for s in text)


def test_webhook_self_metrics_carry_their_sources_static_labels_only(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    """The webhook families are rendered by their own collector at scrape time: they pass
    through the same labelling, in both formats, and only the labelled source's samples grow."""
    from exporter.webhooks.verify import Result
    from exporter.webhooks.wiring import webhook_service

    sim = simulator("extend", seed=189, arrival_rate_per_min=0)
    exporter = exporter_factory(
        [
            source_for(sim, "extend", name="payments", labels=PAYMENTS, webhook_secret="s" * 24),
            source_for(sim, "extend", name="unlabelled", webhook_secret="t" * 24),
        ]
    )
    service = webhook_service(exporter)
    try:
        service.metrics.received("payments", Result.ACCEPTED)
        service.metrics.observe_latency("payments", 0.2)
        service.metrics.observe_latency("unlabelled", 0.2)
        written = _text_samples(generate_text(exporter.exposed).decode())
        built = [s for family in exporter.exposed.collect() for s in family.samples]
        for samples in (written, built):
            webhook = [s for s in samples if "webhook" in s.name]
            names = {s.name for s in webhook if s.labels.get("source") == "payments"}
            assert {
                "workflow_exporter_webhooks_received_total",
                "workflow_exporter_webhook_queue_depth",
                "workflow_exporter_webhook_hint_latency_seconds_count",
            } <= names
            assert any(s.labels.get("source") == "unlabelled" for s in webhook)
            _assert_labels_only_on_their_source(webhook, "payments", PAYMENTS)
    finally:
        service.stop()
