"""`check` tells, per source, how the API answered and what to try when it did not."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ExporterFactory, SimFactory, source_for
from tests.loopback import free_port, run_check


def section(output: str, source: str) -> str:
    blocks = output.split("\n")
    start = next(i for i, line in enumerate(blocks) if line.startswith(f"{source} ("))
    end = next(
        (i for i in range(start + 1, len(blocks)) if blocks[i] and not blocks[i].startswith(" ")),
        len(blocks),
    )
    return "\n".join(blocks[start:end])


def test_check_reports_auth_version_latency_unknown_statuses_and_advice(
    simulator: SimFactory, tmp_path: Path
) -> None:
    extend = simulator("extend", seed=111)
    noxus = simulator("noxus", seed=112)
    cortex = simulator("cortex", seed=113)
    for sim in (extend, noxus, cortex):
        sim.world.add_runs(8)
    noxus.unknown_status(2)
    failed = extend.world.add_runs(3)
    for run in failed:
        extend.world.finish(run.id, "FAILED", "OCR_TIMEOUT")
    closed_port = free_port()
    sources = [
        source_for(extend, "extend", name="ext-ok"),
        {**source_for(extend, "extend", name="ext-wrong-key"), "api_key": "wrong-key-31337"},
        {**source_for(extend, "extend", name="ext-old-version"), "api_version": "2019-01-01"},
        source_for(noxus, "noxus", name="nox-ok"),
        {**source_for(cortex, "cortex", name="ctx-wrong-app"), "app_id": "no-such-app"},
        {
            **source_for(noxus, "noxus", name="nox-unreachable"),
            "base_url": f"http://127.0.0.1:{closed_port}",
            "max_retries": 0,
        },
    ]

    result = run_check(tmp_path, sources)

    out = result.stdout
    assert result.returncode == 1, result.stderr
    ok = section(out, "ext-ok")
    assert "ext-ok (extend): ok" in ok
    assert "auth: ok (first list_runs answered HTTP 200 in" in ok
    assert "api version: 2026-02-09 accepted" in ok
    assert "rate-limit headers:" in ok

    wrong_key = section(out, "ext-wrong-key")
    assert "auth: refused" in wrong_key
    assert "advice: the API key was refused" in wrong_key
    assert "workspace_id" in wrong_key

    old = section(out, "ext-old-version")
    assert "api version: 2019-01-01 not confirmed" in old
    assert "advice: the API version was refused" in old

    assert "unknown statuses: MYSTERY_STATE (map them with status_map)" in section(out, "nox-ok")
    # Noxus refuses the probe of page 0 (422): the key's verdict comes from the next answer.
    assert "auth: ok (list_runs answered HTTP 200 in" in section(out, "nox-ok")
    assert "the first request, HTTP 422, was not about the key" in section(out, "nox-ok")
    assert "advice: the endpoint does not exist: check base_url; check app_id too" in section(
        out, "ctx-wrong-app"
    )
    assert "advice: cannot reach the API" in section(out, "nox-unreachable")
    # The report is what a person reads: no line per failed run buries it.
    assert "run failed" not in result.stderr
    for key in ("wrong-key-31337", extend.api_key, noxus.api_key, cortex.api_key):
        assert key not in out + result.stderr


def test_check_says_per_source_whether_webhooks_are_on_and_never_the_secret(
    simulator: SimFactory, exporter_factory: ExporterFactory, tmp_path: Path
) -> None:
    from exporter.commands.check import diagnose

    plx = simulator("plextera", seed=4, arrival_rate_per_min=0)
    noxus = simulator("noxus", seed=4)
    secret_file = tmp_path / "whsec"
    secret_file.write_text("whsec-check-file-0123456789\n", encoding="utf-8")
    exporter = exporter_factory(
        [
            source_for(plx, "plextera", name="inline", webhook_secret="whsec-check-inline-0123"),
            source_for(plx, "plextera", name="filed", webhook_secret_file=str(secret_file)),
            source_for(plx, "plextera", name="polled"),
            source_for(noxus, "noxus", name="nohooks"),
        ]
    )
    lines = {r.source: diagnose(exporter, r) for r in exporter.collect_all()}
    assert "  webhooks: secret set (inline)" in lines["inline"]
    assert f"  webhooks: secret set (file {secret_file})" in lines["filed"]
    assert "  webhooks: off (no webhook_secret)" in lines["polled"]
    assert not any("webhooks" in line for line in lines["nohooks"])
    secret_file.unlink()
    (report,) = [r for r in exporter.collect_all() if r.source == "filed"]
    said = [line for line in diagnose(exporter, report) if "webhooks" in line]
    assert said
    assert said[0].startswith(f"  webhooks: webhook_secret_file {str(secret_file)!r}: cannot read")
    text = "\n".join(line for found in lines.values() for line in found)
    assert "whsec-check" not in text


def test_check_says_with_shards_how_the_other_replicas_reach_a_source_s_webhooks(
    simulator: SimFactory, exporter_factory: ExporterFactory, tmp_path: Path
) -> None:
    from exporter.commands.check import diagnose
    from exporter.core.sharding import bucket

    plx = simulator("plextera", seed=4, arrival_rate_per_min=0)
    name = next(f"plx-{i}" for i in range(50) if bucket(f"plx-{i}", 2) == 1)
    sources = [source_for(plx, "plextera", name=name, webhook_secret="whsec-check-shard-0123")]
    template = "http://wre-{shard}.wre.monitoring.svc:9856"
    forwarding = exporter_factory(
        sources,
        state=tmp_path / "a.db",
        shard={"index": 1, "count": 2},
        webhooks={"peer_url_template": template},
    )
    (report,) = forwarding.collect_all()
    assert (
        "  webhooks: secret set (inline); the other replicas forward its events to "
        f"http://wre-1.wre.monitoring.svc:9856/webhooks/{name}"
    ) in diagnose(forwarding, report)
    alone = exporter_factory(sources, state=tmp_path / "b.db", shard={"index": 1, "count": 2})
    (report,) = alone.collect_all()
    (said,) = [line for line in diagnose(alone, report) if "webhooks" in line]
    assert "answer its events 404" in said
    assert "webhooks.peer_url_template" in said
