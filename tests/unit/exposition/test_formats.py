"""One state, two formats: the classic text and OpenMetrics written from the same families carry
the same samples (values, labels, static labels, exemplars, `name[]` restrictions), and each is
what prometheus_client's own writer makes of those families, byte for byte."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    StateSetMetricFamily,
    SummaryMetricFamily,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as classic_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar, Sample

from exporter.core.accounting import CycleChanges, Observation
from exporter.core.model import RunStatus
from exporter.core.tracking import ActiveRun, Cursor
from exporter.core.units import DEFAULT_BUCKETS, DURATION, QUEUE_WAIT, STEP_DURATION
from exporter.exposition.formats import (
    WrittenFamily,
    collected,
    write_classic,
    write_openmetrics,
)
from exporter.exposition.metrics import RunsCollector
from exporter.exposition.staticlabels import LabelledRegistry, StaticLabels
from exporter.state.store import Store

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LABELS = {"payments": {"team": "payments", "env": "prod"}}
# Workflow names that need escaping in a label value, or would split a line at more than `\n`.
WORKFLOWS = ['quote"d', "back\\slash", "new\nline", "carriage\rreturn", "line\u2028sep", "ünï"] + [
    f"workflow-{n}" for n in range(40)
]

# A sample as compared: name, sorted labels, value, timestamp in seconds.
Key = tuple[str, tuple[tuple[str, str], ...], float, float | None]


def _fill(store: Store, source: str, provider: str, workflows: list[str]) -> None:
    changes = CycleChanges()
    for index, workflow in enumerate(workflows):
        changes.new_workflows.append(workflow)
        for status in ("succeeded", "failed"):
            changes.finished[(workflow, status)] += index + 1
            changes.last_finished[(workflow, status)] = NOW - timedelta(minutes=index)
            changes.observations.append(
                Observation(DURATION, workflow, status, 3.0 * index + 0.5, f"run-{index}", 1e9)
            )
        changes.observations.append(Observation(QUEUE_WAIT, workflow, "", 0.25 * index))
        changes.errors[(workflow, "E_TIMEOUT")] += 1
        changes.new_steps.append((workflow, "ocr"))
        changes.steps[(workflow, "ocr", "succeeded")] += 2
        changes.observations.append(Observation(STEP_DURATION, workflow, "ocr", 1.5))
        changes.active_upserts[f"{source}-active-{index}"] = ActiveRun(
            id=f"{source}-active-{index}",
            workflow=workflow,
            status=RunStatus.RUNNING,
            created_at=NOW - timedelta(seconds=30 + index),
            cursor_time=NOW,
            progress=0.5,
        )
    store.apply(source, provider, changes, Cursor.first_start(NOW, timedelta(hours=1)))


class _Others(Collector):
    """Families of every kind a third-party collector may yield, with what each format writes
    differently: `_created`, units, info and stateset, timestamps, exemplars on a counter."""

    def collect(self) -> Iterator[Metric]:
        jobs = CounterMetricFamily(
            "jobs_seconds", 'Job "time"\nspent \\ here.', labels=["source"], unit="seconds"
        )
        jobs.add_metric(["payments"], 3.5, created=1_700_000_000.25)
        jobs.add_metric(["plain"], 1.0, created=1_700_000_001.0)
        jobs.samples[0] = jobs.samples[0]._replace(
            exemplar=Exemplar({"trace_id": "abc"}, 0.5, 1_700_000_002.5)
        )
        yield jobs
        info = InfoMetricFamily("platform", "Platform.", labels=["source"])
        info.add_metric(["payments"], {"region": "eu"})
        yield info
        state = StateSetMetricFamily("mode", "Mode.", labels=["source"])
        state.add_metric(["payments"], {"fast": True, "slow": False})
        yield state
        summary = SummaryMetricFamily("latency_seconds", "Latency.", labels=["source"])
        summary.add_metric(["plain"], count_value=4, sum_value=1.25)
        yield summary
        backlog = GaugeHistogramMetricFamily("backlog", "Backlog.", labels=["source"])
        backlog.add_metric(["payments"], [("1.0", 2.0), ("+Inf", 3.0)], gsum_value=4.0)
        yield backlog
        stamped = GaugeMetricFamily("stamped", "Stamped.", labels=["source"])
        stamped.add_metric(["payments"], 7.0, timestamp=1_700_000_003.5)
        yield stamped
        yield GaugeMetricFamily("empty", "A family with no series.", labels=["source"])


@pytest.fixture
def exposed(tmp_path: Path) -> Iterator[LabelledRegistry]:
    store = Store(tmp_path / "state.db", DEFAULT_BUCKETS)
    _fill(store, "payments", "plextera", WORKFLOWS)
    _fill(store, "plain", "noxus", WORKFLOWS[:10])
    static = StaticLabels(LABELS)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        RunsCollector(store.snapshot, clock=NOW.timestamp, static_labels=static.current)
    )
    registry.register(_Others())
    yield LabelledRegistry(registry, static)
    store.close()


class _Fixed(Collector):
    """The same families, for prometheus_client's own writers (they read `samples`)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def _keys(families: Iterable[Any]) -> set[Key]:
    return {
        (
            s.name,
            tuple(sorted(s.labels.items())),
            s.value,
            None if s.timestamp is None else float(s.timestamp),
        )
        for family in families
        for s in family.samples
    }


def _exemplars(families: Iterable[Any]) -> dict[tuple[str, tuple[tuple[str, str], ...]], Any]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): (
            s.exemplar.labels,
            s.exemplar.value,
            None if s.exemplar.timestamp is None else float(s.exemplar.timestamp),
        )
        for family in families
        for s in family.samples
        if s.exemplar is not None
    }


def _parsed(families: list[WrittenFamily]) -> tuple[list[Any], list[Any]]:
    classic = list(classic_families(write_classic(families).decode()))
    openmetrics = list(openmetrics_families(write_openmetrics(families).decode()))  # type: ignore[no-untyped-call]
    return classic, openmetrics


def test_both_formats_carry_the_same_samples(exposed: LabelledRegistry) -> None:
    families = collected(exposed)
    classic, openmetrics = _parsed(families)

    keys = _keys(classic)
    assert keys == _keys(openmetrics)
    assert keys == _keys(families), "the written lines say what the samples say"
    assert len(keys) > 4000
    names = {key[0] for key in keys}
    assert {
        "workflow_runs_finished_total",
        "workflow_run_duration_seconds_bucket",
        "workflow_run_step_duration_seconds_sum",
        "workflow_runs_active",
        "jobs_seconds_total",
        "jobs_seconds_created",
        "platform_info",
        "backlog_gsum",
    } <= names


def test_static_labels_are_on_every_series_of_their_source_in_both_formats(
    exposed: LabelledRegistry,
) -> None:
    for parsed in _parsed(collected(exposed)):
        sources = set()
        for family in parsed:
            for sample in family.samples:
                source = sample.labels.get("source")
                sources.add(source)
                carried = {k: sample.labels[k] for k in ("team", "env") if k in sample.labels}
                assert carried == LABELS.get(source or "", {}), sample
        assert {"payments", "plain"} <= sources


def test_openmetrics_carries_the_exemplars_and_the_classic_text_none(
    exposed: LabelledRegistry,
) -> None:
    families = collected(exposed)
    classic, openmetrics = _parsed(families)

    written = _exemplars(openmetrics)
    assert written == _exemplars(families)
    assert not _exemplars(classic)
    duration = [name for name, _ in written if name == "workflow_run_duration_seconds_bucket"]
    assert len(duration) == 2 * (len(WORKFLOWS) + 10)  # one bucket of each series
    assert written[
        ("jobs_seconds_total", (("env", "prod"), ("source", "payments"), ("team", "payments")))
    ] == (
        {"trace_id": "abc"},
        0.5,
        1_700_000_002.5,
    )


def test_each_format_is_what_prometheus_client_writes_of_the_same_families(
    exposed: LabelledRegistry,
) -> None:
    families = collected(exposed)
    same = _Fixed(families)

    assert write_classic(families) == generate_latest(same)
    assert write_openmetrics(families) == openmetrics_latest(same)  # type: ignore[no-untyped-call]


def test_the_counter_is_named_by_format_with_its_unit_and_eof() -> None:
    registry = CollectorRegistry()
    registry.register(_Others())
    families = collected(registry)
    classic = write_classic(families).decode()
    openmetrics = write_openmetrics(families).decode()

    assert "# TYPE jobs_seconds_total counter\n" in classic
    assert "# TYPE jobs_seconds_created gauge\n" in classic
    assert "# UNIT" not in classic
    assert "# EOF" not in classic
    assert "# TYPE jobs_seconds counter\n# UNIT jobs_seconds seconds\n" in openmetrics
    assert "# TYPE platform info\n" in openmetrics
    assert "# TYPE platform_info gauge\n" in classic
    assert '# HELP jobs_seconds Job \\"time\\"\\nspent \\\\ here.\n' in openmetrics
    assert '# HELP jobs_seconds_total Job "time"\\nspent \\\\ here.\n' in classic
    assert 'stamped{source="plain"}' not in classic
    assert 'stamped{source="payments"} 7.0 1700000003500\n' in classic
    assert 'stamped{source="payments"} 7.0 1700000003.5\n' in openmetrics
    assert openmetrics.endswith("# EOF\n")


@pytest.mark.parametrize(
    "names",
    [
        {"workflow_runs_finished_total"},
        {
            "workflow_run_duration_seconds_bucket",
            "workflow_run_duration_seconds_count",
            "workflow_run_duration_seconds_sum",
        },
        {
            "jobs_seconds_created",
            "platform_info",
            "backlog_bucket",
            "backlog_gsum",
            "backlog_gcount",
        },
        {"workflow_runs_active", "no_such_series"},
        {"no_such_series"},
    ],
)
def test_name_filters_keep_the_same_samples_in_both_formats(
    exposed: LabelledRegistry, names: set[str]
) -> None:
    families = collected(exposed)
    whole_classic, whole_openmetrics = _parsed(families)
    kept = [part for family in families if (part := family.restricted(names)) is not None]
    classic, openmetrics = _parsed(kept)

    expected = {key for key in _keys(whole_classic) if key[0] in names}
    assert _keys(classic) == expected
    assert _keys(openmetrics) == expected
    assert _keys(kept) == expected
    assert _exemplars(openmetrics) == {
        key: value for key, value in _exemplars(whole_openmetrics).items() if key[0] in names
    }
    if names == {"no_such_series"}:
        assert not kept


def test_a_name_filter_may_keep_part_of_a_histogram_as_client_python_does(
    exposed: LabelledRegistry,
) -> None:
    """Buckets without their `_sum`: the OpenMetrics parser of prometheus_client refuses such a
    family (Prometheus's does not), so its lines are compared with the classic text's."""
    names = {"workflow_run_queue_wait_seconds_bucket"}
    kept = [part for family in collected(exposed) if (part := family.restricted(names)) is not None]

    classic = write_classic(kept).decode()
    openmetrics = write_openmetrics(kept).decode()

    def lines(text: str) -> list[str]:
        return [line for line in text.split("\n") if line and not line.startswith("#")]

    assert lines(classic) == lines(openmetrics)
    assert {key[0] for key in _keys(classic_families(classic))} == names
    assert len(lines(classic)) == (len(WORKFLOWS) + 10) * (len(DEFAULT_BUCKETS[QUEUE_WAIT]) + 1)


def test_a_changed_bucket_or_exemplar_is_written_again(tmp_path: Path) -> None:
    """Histogram lines are kept between renderings: a change must still reach both formats."""
    store = Store(tmp_path / "state.db", DEFAULT_BUCKETS)
    _fill(store, "payments", "plextera", ["Invoices"])
    static = StaticLabels(LABELS)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        RunsCollector(store.snapshot, clock=NOW.timestamp, static_labels=static.current)
    )
    collected(registry)  # the first rendering, kept
    changes = CycleChanges()
    changes.finished[("Invoices", "succeeded")] += 1
    changes.observations.append(
        Observation(DURATION, "Invoices", "succeeded", 1000.0, "run-late", 2e9)
    )
    store.apply("payments", "plextera", changes, Cursor.first_start(NOW, timedelta(hours=1)))
    static.set({"payments": {"team": "billing"}})

    families = collected(registry)
    classic, openmetrics = _parsed(families)
    store.close()

    for parsed in (classic, openmetrics):
        counts = {
            s.labels["status"]: s.value
            for family in parsed
            for s in family.samples
            if s.name == "workflow_run_duration_seconds_count"
        }
        assert counts["succeeded"] == 2
        assert all(
            s.labels.get("team") == "billing" and "env" not in s.labels
            for family in parsed
            for s in family.samples
        )
    run_ids = {
        s.exemplar.labels["run_id"]
        for family in openmetrics
        for s in family.samples
        if s.exemplar is not None and s.labels["status"] == "succeeded"
    }
    assert "run-late" in run_ids


def test_a_family_with_exemplars_where_openmetrics_allows_none_fails_loudly() -> None:
    gauge = GaugeMetricFamily("odd", "Odd.", labels=["k"])
    gauge.samples.append(Sample("odd", {"k": "v"}, 1.0, None, Exemplar({"a": "b"}, 1.0)))
    registry = CollectorRegistry()
    registry.register(_Fixed([gauge]))

    with pytest.raises(ValueError, match="odd has exemplars"):
        collected(registry)


def test_histograms_in_the_same_family_are_as_prometheus_client_writes_them() -> None:
    histogram = HistogramMetricFamily("plain_seconds", "Plain.", labels=["k"])
    histogram.add_metric(["a"], [("0.5", 1.0), ("+Inf", 2.0)], sum_value=0.75)
    registry = CollectorRegistry()
    registry.register(_Fixed([histogram]))

    assert write_classic(collected(registry)) == generate_latest(registry)
    assert write_openmetrics(collected(registry)) == openmetrics_latest(registry)  # type: ignore[no-untyped-call]


def test_a_name_with_a_colon_keeps_its_samples_in_its_family_in_openmetrics() -> None:
    """client_python's OpenMetrics writer writes the samples of `a:b` as `a_b_total`, which its
    parser reads as a family apart from the `a:b` it declared."""
    registry = CollectorRegistry()
    registry.register(_Fixed([CounterMetricFamily("job:runs", "Runs.", value=2)]))

    (family,) = openmetrics_families(write_openmetrics(collected(registry)).decode())  # type: ignore[no-untyped-call]

    assert (family.name, family.type) == ("job:runs", "counter")
    assert [(s.name, s.value) for s in family.samples] == [("job:runs_total", 2.0)]
    assert write_classic(collected(registry)) == generate_latest(registry)


def test_histogram_lines_kept_across_a_reload_carry_the_labels_of_the_rendering(
    tmp_path: Path,
) -> None:
    """Two renderings at once across a reload: the older one finishing last must not leave its
    lines to be taken for the newer labels'."""
    store = Store(tmp_path / "state.db", DEFAULT_BUCKETS)
    _fill(store, "payments", "plextera", ["Invoices"])
    static = StaticLabels(LABELS)
    collector = RunsCollector(store.snapshot, clock=NOW.timestamp, static_labels=static.current)
    older = collector.collect()
    next(older)  # the older rendering has read the labels it writes with
    static.set({"payments": {"team": "billing"}})
    list(collector.collect())  # a newer one, done first
    list(older)  # the older one ends last

    families = [family for family in collector.collect() if isinstance(family, WrittenFamily)]
    store.close()

    for parsed in _parsed(families):
        teams = {s.labels.get("team") for family in parsed for s in family.samples}
        assert teams == {"billing"}
