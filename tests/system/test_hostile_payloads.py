"""A hostile or buggy API's payloads, served raw by a small real server speaking Plextera's list
format: one bad record, text or number never breaks `/metrics`, the state, the rest of the page,
or the truth of `up`, and no key it echoes reaches a label, a log or `check`."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.app import Exporter
from exporter.exposition.formats import generate_text
from exporter.state.store import Store
from tests.conftest import ExporterFactory
from tests.hostile import HostileServer, Reply, hostile
from tests.loopback import exporter_run, free_port, run_check
from tests.series import by_labels, errors, finished, samples, up

pytestmark = pytest.mark.system  # promtool checks every exposition

KEY = "k-hostile-0123456789abcdef"
NOW = datetime.now(tz=UTC).replace(microsecond=0)


def run_json(index: int, **fields: Any) -> dict[str, Any]:
    """A finished Plextera run; `fields` override (or, set to ..., remove) its fields."""
    created = NOW - timedelta(minutes=30, seconds=index)
    run: dict[str, Any] = {
        "id": f"run-{index}",
        "status": "FAILED" if index % 2 else "COMPLETED",
        "createdAt": created.isoformat(),
        "startedAt": created.isoformat(),
        "completedAt": (created + timedelta(seconds=90)).isoformat(),
        "error": {"code": "WORKFLOW_RUN_FAILED", "message": "boom"} if index % 2 else None,
        "workflow": {"id": "wf-1", "name": "Invoices"},
        "durationMs": 90_000,
    }
    for name, value in fields.items():
        if value is ...:
            run.pop(name, None)
        else:
            run[name] = value
    return run


def page(runs: list[dict[str, Any]]) -> bytes:
    body = {"data": runs, "pageInfo": {"page": 1, "size": 100, "totalItems": len(runs)}}
    return json.dumps(body).encode()


def source(base_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "hostile",
        "provider": "plextera",
        "base_url": base_url,
        "api_key": KEY,
        "backfill": "24h",
        "timeout": "2s",
        "request_deadline": "5s",
        "active_status_filter": "",
        **extra,
    }


def promtool_accepts(exposition: bytes) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by the test command"
    done = subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[:500]


def collect(exporter_factory: ExporterFactory, body: bytes, **extra: Any) -> tuple[Exporter, bytes]:
    with hostile(Reply(body=body)) as server:
        exporter = exporter_factory([source(server.base_url, **extra)])
        for _ in range(2):
            exporter.collect_all()
    exposition = generate_text(exporter.registry)
    promtool_accepts(exposition)
    return exporter, exposition


def invalid(exporter: Exporter) -> dict[str, float]:
    rows = by_labels(exporter, "workflow_exporter_invalid_records_total", "hostile", "reason")
    return {reason: n for (reason,), n in rows.items()}


@pytest.mark.parametrize(
    "field",
    [
        {"status": "x\ud800y"},
        {"workflow": {"id": "wf-1", "name": "Inv\ud800oices"}},
        {"error": {"code": "CODE_\udfff", "message": "bad \ud83d"}},
        {"workflow": {"id": "wf-1", "name": "tab\tnew\nline\x00"}},
    ],
    ids=["status", "workflow", "code", "controls"],
)
def test_a_lone_surrogate_or_control_character_never_breaks_metrics_or_state(
    field: dict[str, Any], exporter_factory: ExporterFactory
) -> None:
    runs = [run_json(i) for i in range(6)] + [run_json(7, **field)]
    exporter, exposition = collect(exporter_factory, page(runs))
    assert up(exporter, "hostile") == 1
    # Every run counted (one with an unmapped status has an end time: finished, `unknown`).
    assert sum(finished(exporter, "hostile").values()) == 7
    assert "\ufffd".encode() in exposition or b"tab new line" in exposition
    # The state holds it too: a restart renders the same.
    assert exporter.store.snapshot()


def test_label_values_are_bounded_and_long_ones_stay_apart(
    exporter_factory: ExporterFactory,
) -> None:
    long_a, long_b = "A" * 1_000_000, "A" * 999_999 + "B"
    runs = [
        run_json(0, workflow={"id": "wf-a", "name": long_a}),
        run_json(1, workflow={"id": "wf-b", "name": long_b}),
        run_json(3, error={"code": "C" * 1_000_000, "message": "m" * 1_000_000}),
    ]
    exporter, exposition = collect(exporter_factory, page(runs))
    workflows = {
        labels["workflow"]
        for labels, _ in samples(exporter.registry, "workflow_runs_finished_total")
    }
    assert len(workflows) == 3
    assert max(len(w) for w in workflows) <= 128
    assert len(exposition) < 200_000
    codes = {c for (_, c) in errors(exporter, "hostile")}
    assert all(len(code) <= 128 for code in codes)


def test_an_out_of_range_timestamp_loses_one_field_not_the_page(
    exporter_factory: ExporterFactory,
) -> None:
    runs = [run_json(i) for i in range(6)] + [run_json(7, completedAt="9999-12-31T23:59:59-01:00")]
    exporter, _ = collect(exporter_factory, page(runs))
    assert up(exporter, "hostile") == 1
    assert sum(finished(exporter, "hostile").values()) == 7
    assert invalid(exporter).get("field", 0) >= 1


def test_far_past_creation_gives_no_absurd_age(exporter_factory: ExporterFactory) -> None:
    runs = [run_json(0, status="PROCESSING", createdAt="1970-01-01T00:00:01Z", completedAt=...)]
    exporter, _ = collect(exporter_factory, page(runs))
    ages = [v for _, v in samples(exporter.registry, "workflow_runs_oldest_active_age_seconds")]
    assert ages
    assert max(ages) < 3600


def test_a_non_finite_duration_is_dropped_and_sums_stay_finite(
    exporter_factory: ExporterFactory,
) -> None:
    body = page([run_json(i) for i in range(3)]).replace(
        b'"durationMs": 90000', b'"durationMs": 1e400', 1
    )
    exporter, exposition = collect(exporter_factory, body)
    assert sum(finished(exporter, "hostile").values()) == 3
    sums = [v for _, v in samples(exporter.registry, "workflow_run_duration_seconds_sum")]
    assert sums
    assert all(abs(v) < 1e9 for v in sums)
    assert b"+Inf" not in exposition.split(b"_sum")[-1][:40]


def test_a_state_holding_an_infinite_sum_is_repaired_on_start(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    buckets = {"duration": (1.0, 10.0, 100.0), "queue_wait": (1.0, 10.0)}
    store = Store(path, buckets)
    store.close()
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO histograms VALUES ('duration', 's', 'w', 'failed', '1,10,100', '0,2,0,0', "
        "?, 2)",
        (float("inf"),),
    )
    conn.commit()
    conn.close()
    store = Store(path, buckets)
    sums = [h.sum for h in store.snapshot().histograms.values()]
    store.close()
    assert sums == [11.0]  # two observations in (1, 10], at the midpoint


def test_deep_nesting_is_a_clear_error_not_a_crash(
    exporter_factory: ExporterFactory, captured_logs: io.StringIO
) -> None:
    body = b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with hostile(Reply(body=body)) as server:
        exporter = exporter_factory([source(server.base_url)])
        report = exporter.collect_all()[0]
    assert not report.ok
    assert "nests deeper" in (report.error or "")
    assert up(exporter, "hostile") == 0
    assert "Traceback" not in captured_logs.getvalue()


def test_fold_values_from_the_api_stay_apart_from_the_exporters_own(
    exporter_factory: ExporterFactory,
) -> None:
    runs = [
        run_json(1, workflow={"id": "wf-o", "name": "other"}, error={"code": "other"}),
        run_json(3),
    ]
    exporter, _ = collect(exporter_factory, page(runs), max_workflows=1)
    workflows = {w for (w, _) in finished(exporter, "hostile")}
    assert "other_" in workflows
    assert ("other_", "other_") in errors(exporter, "hostile")


def test_a_key_echoed_by_the_api_reaches_no_label_log_or_check(
    exporter_factory: ExporterFactory, captured_logs: io.StringIO, tmp_path: Path
) -> None:
    runs = [
        run_json(1, error={"code": f"E_{KEY}", "message": f"request had api-key {KEY}"}),
        run_json(2, workflow={"id": "wf-k", "name": f"flow {KEY}"}),
        run_json(4, status=f"ODD_{KEY}"),
    ]
    _exporter, exposition = collect(exporter_factory, page(runs))
    assert KEY.encode() not in exposition
    assert KEY not in captured_logs.getvalue()
    with hostile(Reply(body=page(runs))) as server:
        done = run_check(tmp_path, [source(server.base_url)])
    assert KEY not in done.stdout + done.stderr
    assert "ODD_" in done.stdout  # the unknown status is named, the key in it is not


def test_a_run_reopened_after_it_was_counted_stays_counted_once_and_is_logged(
    exporter_factory: ExporterFactory, captured_logs: io.StringIO
) -> None:
    failed = [run_json(1)]
    with hostile(Reply(body=page(failed))) as server:
        exporter = exporter_factory([source(server.base_url)])
        assert exporter.collect_all()[0].ok
        server.reply = Reply(body=page([run_json(1, status="PROCESSING", completedAt=...)]))
        assert exporter.collect_all()[0].ok
        server.reply = Reply(body=page([run_json(1, status="COMPLETED")]))
        assert exporter.collect_all()[0].ok
    assert finished(exporter, "hostile") == {("Invoices", "failed"): 1}
    assert "run reopened after it was counted" in captured_logs.getvalue()


def test_a_process_fed_hostile_pages_keeps_metrics_valid_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    """The whole process: seven 1 MB names and broken texts, scraped over HTTP."""

    runs = [run_json(i, workflow={"id": f"wf-{i}", "name": str(i) * 1_000_000}) for i in range(7)]
    runs.append(run_json(9, status="x\ud800y", completedAt="9999-12-31T23:59:59-01:00"))
    port = free_port()
    with hostile(Reply(body=page(runs))) as server:
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "interval": "1s",
                    "state_path": str(tmp_path / "state.db"),
                    "sources": [source(server.base_url)],
                }
            )
        )
        proc = subprocess.Popen(
            exporter_run(config, port),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            import httpx

            deadline = time.monotonic() + 30
            body = b""
            while time.monotonic() < deadline:
                try:
                    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
                    body = response.content
                    if b"workflow_runs_finished_total{" in body:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.3)
            promtool_accepts(body)
            assert len(body) < 500_000
            assert b'workflow_exporter_source_up{provider="plextera",source="hostile"} 1.0' in body
            rss_kib = int(
                next(
                    line.split()[1]
                    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                    if line.startswith("VmRSS:")
                )
            )
            assert rss_kib < 400 * 1024
        finally:
            proc.terminate()
            assert proc.wait(timeout=15) is not None


# Random byte-level mutations of a valid page: (position, replacement bytes) pairs.
BYTE_MUTATIONS = st.lists(
    st.tuples(st.integers(min_value=0), st.binary(min_size=0, max_size=4)), min_size=1, max_size=6
)
BYTE_FUZZ = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def mutated(valid: bytes, mutations: list[tuple[int, bytes]]) -> bytes:
    body = bytearray(valid)
    for position, replacement in mutations:
        at = position % len(body)
        body[at : at + len(replacement) or at + 1] = replacement or b"\\"
    return bytes(body)


@BYTE_FUZZ
@given(mutations=BYTE_MUTATIONS)
def test_random_byte_mutations_of_a_page_never_break_the_exporter(
    mutations: list[tuple[int, bytes]], exporter_factory: ExporterFactory
) -> None:
    body = mutated(page([run_json(i) for i in range(6)]), mutations)
    with hostile(Reply(body=body)) as server:
        exporter = exporter_factory(
            [source(server.base_url, name=f"fuzz-{id(body)}", max_retries=0)]
        )
        report = exporter.collect_all()[0]
    name = f"fuzz-{id(body)}"
    assert up(exporter, name) == (1 if report.ok else 0)
    assert report.ok or report.error
    assert sum(finished(exporter, name).values()) <= 6
    promtool_accepts(generate_text(exporter.registry))
    exporter.shutdown()


@pytest.fixture(scope="module")
def exporter_process(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[HostileServer, int, subprocess.Popen[bytes]]]:
    """One exporter process polling a hostile server every half second."""

    tmp = tmp_path_factory.mktemp("fuzz-process")
    server = HostileServer(Reply(body=page([run_json(i) for i in range(6)]))).start()
    port = free_port()
    config = tmp / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "interval": "500ms",
                "state_path": str(tmp / "state.db"),
                "sources": [source(server.base_url, max_retries=0)],
            }
        )
    )
    proc = subprocess.Popen(
        exporter_run(config, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield server, port, proc
    proc.terminate()
    try:
        assert proc.wait(timeout=15) is not None, "the exporter stops on SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()


def _collections(port: int) -> float:
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("workflow_exporter_collections_total{")
    )


@BYTE_FUZZ
@given(mutations=BYTE_MUTATIONS)
def test_a_running_exporter_fed_mutated_pages_stays_up_valid_and_bounded(
    mutations: list[tuple[int, bytes]],
    exporter_process: tuple[HostileServer, int, subprocess.Popen[bytes]],
) -> None:
    import httpx

    server, port, proc = exporter_process
    body = mutated(page([run_json(i) for i in range(6)]), mutations)
    deadline = time.monotonic() + 20
    while True:  # the process may still be starting
        try:
            before = _collections(port)
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "the exporter never answered"
            time.sleep(0.2)
    server.reply = Reply(body=body)
    while _collections(port) < before + 2:  # a whole cycle on the mutated page
        assert proc.poll() is None, "the exporter died"
        assert time.monotonic() < deadline, "collection stopped"
        time.sleep(0.1)
    exposition = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).content
    promtool_accepts(exposition)
    assert len(exposition) < 200_000
    assert proc.poll() is None
