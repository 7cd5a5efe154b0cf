"""Scale-out: shards split the sources (and Cortex's workflows) so that every domain series comes
from exactly one replica, and the sum across replicas is the ground truth."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.config.settings import config_from_data
from exporter.core.errors import ConfigError
from exporter.core.sharding import Shard, bucket, jump_hash, ordinal_from_hostname
from exporter.simulator import SimulatorServer
from tests.conftest import ExporterFactory, SimFactory, source_for
from tests.loopback import EXPORTER, free_port, stop, wait_for
from tests.series import finished

DOMAIN_PREFIXES = ("workflow_runs_", "workflow_run_")
SHARDS = 2


def test_the_hash_is_stable_and_spreads() -> None:
    # Fixed values: a change here would move every source of every deployment.
    assert bucket("plextera-prod", 1) == 0
    assert bucket("plextera-prod", 7) == 5
    assert [bucket(f"source-{i}", 4) for i in range(8)] == [2, 2, 3, 2, 3, 2, 2, 1]
    spread = Counter(bucket(f"workflow-{i}", 4) for i in range(400))
    assert set(spread) == {0, 1, 2, 3}
    assert min(spread.values()) > 60


def test_jump_hash_matches_the_published_algorithm() -> None:
    assert [jump_hash(0xDEADBEEF, n) for n in (8, 16, 32, 64, 128, 256)] == [5, 5, 16, 16, 87, 87]
    assert [jump_hash(1, 10), jump_hash(256, 1024), jump_hash(2**63 - 1, 10)] == [6, 520, 8]
    assert jump_hash(0, 100) == 0


@pytest.mark.parametrize(("old", "new"), [(1, 2), (2, 3), (3, 4), (4, 8)])
def test_growing_moves_keys_only_to_the_new_shards(old: int, new: int) -> None:
    keys = [f"source-{i}" for i in range(4000)]
    moved = [k for k in keys if bucket(k, old) != bucket(k, new)]
    assert all(bucket(k, new) >= old for k in moved), "a key moved between old shards"
    expected = (new - old) / new
    assert abs(len(moved) / len(keys) - expected) < 0.03


def test_every_key_belongs_to_exactly_one_shard() -> None:
    for count in (1, 2, 3, 5):
        shards = [Shard(i, count) for i in range(count)]
        for i in range(50):
            assert sum(s.owns_source(f"src-{i}") for s in shards) == 1
            assert sum(s.owns_workflow("cortex", f"wf-{i}") for s in shards) == 1


@pytest.mark.parametrize(("index", "count"), [(-1, 2), (2, 2), (0, 0)])
def test_a_shard_outside_its_count_is_refused(index: int, count: int) -> None:
    with pytest.raises(ValueError, match="shard"):
        Shard(index, count)


def test_shard_settings_are_validated_with_their_path() -> None:
    source = {"name": "a", "provider": "noxus", "api_key": "k-123456"}
    with pytest.raises(ConfigError) as caught:
        config_from_data({"shard": {"index": 2, "count": 2}, "sources": [source]}, environ={})
    assert caught.value.problems == ["shard.index: must be below shard.count (2)"]
    config = config_from_data(
        {"sources": [source]},
        environ={"WORKFLOW_EXPORTER_SHARD__COUNT": "3", "WORKFLOW_EXPORTER_SHARD__INDEX": "1"},
    )
    assert config.shard == Shard(1, 3)


def test_ordinal_from_hostname() -> None:
    assert ordinal_from_hostname("workflow-runs-exporter-0") == 0
    assert ordinal_from_hostname("release-workflow-runs-exporter-12") == 12
    with pytest.raises(ValueError, match="ordinal"):
        ordinal_from_hostname("workflow-runs-exporter-7f9c8")


def test_whole_sources_go_to_one_shard_and_cortex_sources_to_every_shard() -> None:
    sources = [
        {"name": f"nox-{i}", "provider": "noxus", "api_key": "k-123456"} for i in range(10)
    ] + [{"name": "ctx", "provider": "cortex", "api_key": "k-123456", "app_id": "app"}]
    owned: list[set[str]] = []
    for index in range(3):
        config = config_from_data(
            {"shard": {"index": index, "count": 3}, "sources": sources}, environ={}
        )
        owned.append({s.name for s in config.own_sources()})
    assert all("ctx" in names for names in owned)
    whole = [names - {"ctx"} for names in owned]
    assert set().union(*whole) == {f"nox-{i}" for i in range(10)}
    assert sum(len(names) for names in whole) == 10


def test_cortex_workflows_are_split_between_shards(
    simulator: SimFactory, exporter_factory: ExporterFactory, tmp_path: Path
) -> None:
    sim = simulator("cortex", seed=5, workflows=10)
    sim.world.add_runs(80)
    sim.world.advance(900)
    source = source_for(sim, "cortex")
    seen: list[Counter[tuple[str, ...]]] = []
    for index in range(SHARDS):
        exporter = exporter_factory(
            [source],
            state=tmp_path / f"shard-{index}.db",
            shard={"index": index, "count": SHARDS},
        )
        assert exporter.collect_all()[0].ok
        seen.append(finished(exporter, "cortex-test"))
    workflows = [{w for w, _ in counts} for counts in seen]
    assert all(workflows), "each shard reads some workflows"
    assert not workflows[0] & workflows[1]
    assert seen[0] + seen[1] == sim.world.truth().finished


def _domain_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(DOMAIN_PREFIXES):
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _totals(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, *keys: str
) -> Counter[tuple[str, ...]]:
    totals: Counter[tuple[str, ...]] = Counter()
    for (sample_name, labels), value in samples.items():
        if sample_name == name and value:
            label_map = dict(labels)
            totals[tuple(label_map[k] for k in keys)] += int(value)
    return totals


def _truth(
    sims: dict[str, SimulatorServer], names: dict[str, str], kind: str
) -> Counter[tuple[str, ...]]:
    expected: Counter[tuple[str, ...]] = Counter()
    for source, provider in names.items():
        truth = getattr(sims[provider].world.truth(), kind)
        for key, value in truth.items():
            expected[(source, *key)] += value
    return expected


def test_two_shard_processes_export_disjoint_series_that_sum_to_ground_truth(
    simulator: SimFactory, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    sims = {
        provider: simulator(provider, seed=seed, workflows=8 if provider == "cortex" else 4)
        for seed, provider in enumerate(("plextera", "noxus", "extend", "cortex"), start=11)
    }
    for sim in sims.values():
        sim.world.add_runs(40)
        sim.world.advance(600)
    # Two sources per simulator for the providers that go whole to a shard, so both shards hold
    # some (checked below: the hash decides, the names are fixed).
    names = {f"{p}-{s}": p for p in ("plextera", "noxus", "extend") for s in ("a", "b")}
    names["cortex-app"] = "cortex"
    sources = [
        {**source_for(sims[provider], provider, name), "interval": "1s"}
        for name, provider in names.items()
    ]
    whole = [
        {n for n, p in names.items() if p != "cortex" and Shard(i, SHARDS).owns_source(n)}
        for i in range(SHARDS)
    ]
    assert all(whole), f"the fixed names must give every shard a whole source: {whole}"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"interval": "1s", "sources": sources}))

    ports = [free_port() for _ in range(SHARDS)]
    for index, port in enumerate(ports):
        proc = subprocess.Popen(
            [
                *EXPORTER,
                "--config.file",
                str(config),
                "--web.listen-address",
                f"127.0.0.1:{port}",
                "--shard.index",
                str(index),
                "--shard.count",
                str(SHARDS),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # Each shard has its own state file.
            env={
                "PATH": "/usr/bin:/bin",
                "WORKFLOW_EXPORTER_STATE_PATH": str(tmp_path / f"shard-{index}.db"),
            },
        )
        processes.append(proc)
    for port in ports:
        wait_for(f"http://127.0.0.1:{port}/readyz", lambda r: r.status_code == 200, timeout=30)

    expected = {
        "workflow_runs_finished_total": _truth(sims, names, "finished"),
        "workflow_runs_active": _truth(sims, names, "active"),
        "workflow_run_errors_total": _truth(sims, names, "errors"),
    }
    keys = {
        "workflow_runs_finished_total": ("source", "workflow", "status"),
        "workflow_runs_active": ("source", "workflow", "status"),
        "workflow_run_errors_total": ("source", "workflow", "code"),
    }

    def union_matches(_response: httpx.Response) -> bool:
        merged: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for port in ports:
            merged.update(_domain_samples(httpx.get(f"http://127.0.0.1:{port}/metrics").text))
        return all(_totals(merged, name, *keys[name]) == expected[name] for name in expected)

    wait_for(f"http://127.0.0.1:{ports[0]}/metrics", union_matches, timeout=30)

    texts = [httpx.get(f"http://127.0.0.1:{port}/metrics").text for port in ports]
    shard_samples = [_domain_samples(text) for text in texts]
    assert all(shard_samples), "every shard exports some series"
    assert not set(shard_samples[0]) & set(shard_samples[1]), "a series on two replicas"
    for index, text in enumerate(texts):
        assert f'workflow_exporter_shard_info{{count="2",index="{index}"}} 1.0' in text
        exported = {dict(labels)["source"] for _, labels in shard_samples[index]}
        assert exported == whole[index] | {"cortex-app"}
    cortex_workflows = [
        {dict(labels)["workflow"] for _, labels in samples if ("source", "cortex-app") in labels}
        for samples in shard_samples
    ]
    assert all(cortex_workflows), "the Cortex app's workflows are spread over both shards"
    assert not cortex_workflows[0] & cortex_workflows[1]

    for proc in processes:
        code, err = stop(proc)
        assert code == 0, err
        assert "Traceback" not in err


def test_a_reload_keeps_the_shard_the_process_started_with(
    exporter_factory: ExporterFactory, tmp_path: Path
) -> None:
    sources = [
        {
            "name": f"nox-{i}",
            "provider": "noxus",
            "api_key": "k-123456",
            "base_url": "http://127.0.0.1:9",
        }
        for i in range(8)
    ]
    exporter = exporter_factory(sources, shard={"index": 0, "count": 2})
    before = set(exporter.sources)
    assert before == {s["name"] for s in sources if Shard(0, 2).owns_source(str(s["name"]))}
    changed = config_from_data(
        {
            "state_path": str(tmp_path / "state.db"),
            "new_series_hold": "0s",
            "sources": sources,
            "shard": {"index": 1, "count": 2},
        },
        environ={},
    )
    assert exporter.reload(changed) == []
    assert exporter.shard == Shard(0, 2)
    assert set(exporter.sources) == before
