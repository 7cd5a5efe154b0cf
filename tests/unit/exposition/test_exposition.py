"""The writer writes exactly what prometheus_client writes; /metrics negotiates its format and
coding, and honours `name[]`, as client_python's own handler does."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.samples import Sample

from exporter.exposition.formats import generate_openmetrics, generate_text
from exporter.exposition.lines import series_line
from exporter.exposition.written import WrittenFamily
from exporter.web.server import MetricsServer, ServerHooks, ServerLimits
from tests.conftest import PROVIDERS, ExporterFactory, SimFactory, source_for
from tests.loopback import free_port

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
CLASSIC = "text/plain; version=0.0.4; charset=utf-8"


def test_both_formats_are_byte_identical_to_prometheus_clients_writers(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    sources = []
    for seed, provider in enumerate(PROVIDERS):
        sim = simulator(provider, seed=120 + seed)
        sim.world.add_runs(40)
        sim.world.advance(3600)
        sim.unknown_status(2)
        sources.append(source_for(sim, provider))
    # Label values that need escaping must come out escaped the same way.
    sources[0]["name"] = "quote-and-slash"
    frozen = datetime.now(UTC) + timedelta(hours=2)  # ages must not move between two renders
    exporter = exporter_factory(sources, clock=lambda: frozen)
    assert all(report.ok for report in exporter.collect_all())

    written = generate_text(exporter.registry)
    reference = generate_latest(exporter.registry)
    openmetrics = generate_openmetrics(exporter.registry)
    openmetrics_reference = openmetrics_latest(exporter.registry)  # type: ignore[no-untyped-call]

    assert stable(written) == stable(reference)
    assert stable(openmetrics) == stable(openmetrics_reference)
    assert len(stable(written)) > 1000
    assert b"workflow_run_duration_seconds_bucket" in written
    assert b'# {run_id="' in openmetrics


def stable(text: bytes) -> list[bytes]:
    """Without the process's own figures (memory, CPU), which change from one call to the next."""
    return [
        line for line in text.splitlines() if b"process_" not in line and b"python_gc" not in line
    ]


def test_the_server_sends_the_classic_text_and_openmetrics_on_request(
    simulator: SimFactory, exporter_factory: ExporterFactory
) -> None:
    from exporter.commands.run import server_hooks

    sim = simulator("noxus", seed=130)
    sim.world.add_runs(10)
    exporter = exporter_factory([source_for(sim, "noxus")])
    exporter.collect_all()
    server = MetricsServer(f"127.0.0.1:{free_port()}", server_hooks(exporter))
    server.start()
    try:
        text = httpx.get(server.url("/metrics"))
        assert text.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert "workflow_runs_finished_total{" in text.text
        om = httpx.get(server.url("/metrics"), headers={"Accept": "application/openmetrics-text"})
        assert om.headers["Content-Type"].startswith("application/openmetrics-text")
        assert om.text.rstrip().endswith("# EOF")
    finally:
        server.stop()


class _Families:
    """Two classic families and one written ahead (`WrittenFamily`) whose samples count their
    reads."""

    def __init__(self) -> None:
        self.sample_reads = 0

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily("alpha", "Alpha.", value=1)
        yield GaugeMetricFamily("beta", "Beta.", value=2)

        def samples() -> list[Sample]:
            self.sample_reads += 1
            return [Sample("gamma", {"k": "v"}, 3.0)]

        yield WrittenFamily(
            "gamma",
            "Gamma.",
            "gauge",
            samples,
            classic_lines=series_line("gamma", (("k", "v"),), 3),
        )


@pytest.fixture
def families() -> _Families:
    return _Families()


@pytest.fixture
def served(families: _Families) -> Iterator[MetricsServer]:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(families)
    hooks = ServerHooks(registry=registry, ready=lambda: True, sources=list)
    server = MetricsServer(
        f"127.0.0.1:{free_port()}", hooks, limits=ServerLimits(metrics_max_age=60)
    )
    server.start()
    yield server
    server.stop()


def names_in(text: str) -> set[str]:
    return {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")
    }


@pytest.mark.parametrize("accept", ["", "application/openmetrics-text"])
def test_a_scrape_of_either_format_builds_no_samples_of_a_written_family(
    served: MetricsServer, families: _Families, accept: str
) -> None:
    response = httpx.get(served.url("/metrics"), headers={"Accept": accept})
    assert 'gamma{k="v"} 3.0\n' in response.text
    assert families.sample_reads == 0


def test_name_parameters_keep_only_those_series_in_either_format(served: MetricsServer) -> None:
    text = httpx.get(served.url("/metrics?name[]=alpha_total&name[]=gamma"))
    assert names_in(text.text) == {"alpha_total", "gamma"}
    om = httpx.get(
        served.url("/metrics"),
        params={"name[]": ["beta"]},
        headers={"Accept": "application/openmetrics-text"},
    )
    assert om.headers["Content-Type"].startswith("application/openmetrics-text")
    assert names_in(om.text) == {"beta"}
    assert om.text.rstrip().endswith("# EOF")
    # The restricted answers were rendered apart: the shared rendering holds every family.
    assert served.metrics.renders == 0
    assert names_in(httpx.get(served.url("/metrics")).text) == {"alpha_total", "beta", "gamma"}
    assert served.metrics.renders == 1


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        ("gzip", True),
        ("deflate, GZIP;q=0.5", True),
        ("gzip;q=0", False),
        ("gzip; q=0.0, identity", False),
        ("x-gzip", False),
        ("*", False),
        ("identity", False),
    ],
)
def test_gzip_is_sent_only_where_accepted(
    served: MetricsServer, accept_encoding: str, gzipped: bool
) -> None:
    for path in ("/metrics", "/metrics?name[]=beta"):
        response = httpx.get(served.url(path), headers={"Accept-Encoding": accept_encoding})
        assert response.headers.get("Content-Encoding") == ("gzip" if gzipped else None)
        assert "beta 2.0" in response.text  # httpx has undone the gzip


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("application/openmetrics-text; version=999", OPENMETRICS),
        ("application/openmetrics-text; version=2.0.0; escaping=allow-utf-8", OPENMETRICS),
        ("application/openmetrics-text; version=0.0.1", OPENMETRICS),
        # Prometheus 2's and 3's own Accept headers.
        (
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
            "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            OPENMETRICS,
        ),
        (
            "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
            "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,*/*;q=0.2",
            OPENMETRICS,
        ),
        ("text/plain; version=1.0.0; escaping=allow-utf-8", CLASSIC),
        ("text/plain, application/openmetrics-text; q=0.5", CLASSIC),
        ("application/openmetrics-text; q=0", CLASSIC),
        ("*/*", CLASSIC),
        ("", CLASSIC),
    ],
)
def test_the_content_type_names_the_format_and_version_written(
    served: MetricsServer, accept: str, content_type: str
) -> None:
    response = httpx.get(served.url("/metrics"), headers={"Accept": accept})
    assert response.headers["Content-Type"] == content_type
    if content_type == OPENMETRICS:
        assert response.text.endswith("# EOF\n")
    else:
        assert "# EOF" not in response.text


def test_made_up_format_versions_share_the_one_rendering(served: MetricsServer) -> None:
    for minor in range(20):
        accept = f"application/openmetrics-text; version=1.0.{minor}"
        response = httpx.get(served.url("/metrics"), headers={"Accept": accept})
        assert response.headers["Content-Type"] == OPENMETRICS
        assert "beta 2.0" in response.text
    assert served.metrics.renders == 1


def test_both_formats_and_name_filters_are_written_from_one_collection(
    served: MetricsServer,
) -> None:
    classic = httpx.get(served.url("/metrics"))
    openmetrics = httpx.get(
        served.url("/metrics"),
        headers={"Accept": "application/openmetrics-text", "Accept-Encoding": "gzip"},
    )
    restricted = httpx.get(served.url("/metrics?name[]=gamma"))

    assert served.metrics.collections == 1
    assert served.metrics.renders == 2  # one body per format; the restricted one apart
    assert openmetrics.headers["Content-Encoding"] == "gzip"
    assert names_in(classic.text) == names_in(openmetrics.text) == {"alpha_total", "beta", "gamma"}
    assert restricted.text == '# HELP gamma Gamma.\n# TYPE gamma gauge\ngamma{k="v"} 3.0\n'
