"""`docker-compose.yml`, checked without a Docker engine: valid against the Compose
specification's JSON schema, every file it mounts present, and wired the way the shipped rules
and dashboards expect."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = Path(__file__).resolve().parents[1] / "data" / "compose-spec.json"


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft201909Validator(schema).validate(_compose())


def test_a_broken_compose_file_is_refused_by_the_schema() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    broken = _compose()
    broken["services"]["exporter"]["ports"] = {"not": "a list"}
    errors = list(jsonschema.Draft201909Validator(schema).iter_errors(broken))
    assert errors


def test_every_mounted_file_exists_and_is_read_only() -> None:
    mounted = []
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            source, _, rest = volume.partition(":")
            if not source.startswith("./"):
                continue  # a named volume
            assert rest.endswith(":ro"), f"{name}: {volume} should be mounted read-only"
            assert (ROOT / source).is_file(), f"{name}: {source} does not exist"
            mounted.append(source)
    assert "./monitoring/prometheus/workflow-runs-exporter.rules.yml" in mounted
    assert "./grafana/workflow-runs.json" in mounted
    assert "./grafana/exporter-health.json" in mounted


def test_prometheus_scrapes_the_exporter_under_the_rules_job_and_alerts_alertmanager() -> None:
    services = _compose()["services"]
    assert services["exporter"]["build"]["context"] == "."
    assert (ROOT / "Dockerfile").is_file()
    prometheus = yaml.safe_load((ROOT / "deploy/compose/prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    assert job["job_name"] == "workflow-runs-exporter"
    assert job["static_configs"][0]["targets"] == ["exporter:9855"]
    targets = prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]
    command = services["exporter"]["command"]
    assert "--alertmanager.url=http://alertmanager:9093" in command
    assert "--web.listen-address=0.0.0.0:9855" in command


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path to the repository file mounted there."""
    out = {}
    for volume in service.get("volumes", []):
        source, _, rest = volume.partition(":")
        if source.startswith("./"):
            out[rest.removesuffix(":ro")] = source
    return out


def test_each_mounted_file_is_where_its_service_looks_for_it() -> None:
    services = _compose()["services"]
    for name in ("prometheus", "alertmanager"):
        (flag,) = [a for a in services[name]["command"] if a.startswith("--config.file=")]
        assert flag.removeprefix("--config.file=") in _mounts(services[name]), name

    prometheus = _mounts(services["prometheus"])
    config = yaml.safe_load((ROOT / prometheus["/etc/prometheus/prometheus.yml"]).read_text())
    rules = [
        target
        for target in prometheus
        if any(PurePosixPath(target).match(g) for g in config["rule_files"])
    ]
    assert rules, f"no mounted file matches rule_files {config['rule_files']}"

    grafana = _mounts(services["grafana"])
    provisioning = "/etc/grafana/provisioning"
    datasources = [t for t in grafana if t.startswith(f"{provisioning}/datasources/")]
    providers = [t for t in grafana if t.startswith(f"{provisioning}/dashboards/")]
    assert datasources
    assert providers
    (source,) = yaml.safe_load((ROOT / grafana[datasources[0]]).read_text())["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((ROOT / grafana[providers[0]]).read_text())["providers"]
    folder = provider["options"]["path"]
    dashboards = sorted(grafana[t] for t in grafana if t.startswith(f"{folder}/"))
    assert dashboards == ["./grafana/exporter-health.json", "./grafana/workflow-runs.json"]
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home in grafana
