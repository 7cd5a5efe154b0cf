"""The Helm chart, with the real Helm engine (helm-python-sdk) and offline Kubernetes schemas
(kubernetes-validate): lint, render with default values and with every option on, validate."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from exporter import __version__
from exporter.config.settings import config_from_data
from exporter.config.slos import SloDefaults, SloSettings
from exporter.config.webhooks import WebhookSettings
from exporter.core.sharding import ordinal_from_hostname
from exporter.slo.rules import build_groups
from monitoring import chart as chart_files
from monitoring import rules

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "workflow-runs-exporter"
RELEASE = "wre"
NAMESPACE = "monitoring"
# Oldest supported (Chart.yaml kubeVersion) and the newest the validator knows.
KUBE_VERSIONS = ("1.25.0", None)
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}

EVERY_OPTION: dict[str, Any] = {
    "shards": 3,
    "config": {
        "interval": "1m",
        "max_series": 50_000,
        "jitter_ratio": 0.2,
        "alerting": {
            "alertmanagers": [
                {
                    "url": "http://alertmanager-operated.monitoring:9093",
                    # An item of the keys Secret, mounted beside the API keys.
                    "bearer_token_file": "/etc/workflow-runs-exporter/keys/alertmanager-token",
                }
            ],
            "failed": {"severity": "critical"},
        },
    },
    "sources": [
        {"name": "plextera-prod", "provider": "plextera"},
        {"name": "extend-main", "provider": "extend", "api_version": "2026-02-09"},
        {"name": "cortex", "provider": "cortex", "app_id": "app-1", "apiKeySecretKey": "ctx"},
    ],
    "apiKeys": {"existingSecret": "workflow-runs-exporter-keys"},
    "image": {"digest": "sha256:" + "a" * 64},
    "imagePullSecrets": [{"name": "registry"}],
    "extraArgs": ["--web.enable-lifecycle"],
    "extraEnv": [{"name": "TZ", "value": "UTC"}],
    "persistence": {"enabled": True, "storageClassName": "fast", "size": "2Gi"},
    "service": {"annotations": {"a": "b"}, "labels": {"c": "d"}},
    "serviceMonitor": {
        "enabled": True,
        "labels": {"release": "kube-prometheus-stack"},
        "interval": "1m",
        "scrapeTimeout": "20s",
        "relabelings": [
            {
                "action": "replace",
                "sourceLabels": ["__meta_kubernetes_pod_node_name"],
                "targetLabel": "node",
            }
        ],
        "metricRelabelings": [
            {"action": "drop", "sourceLabels": ["__name__"], "regex": "python_gc_.*"}
        ],
    },
    "serviceAccount": {"annotations": {"x": "y"}},
    "podAnnotations": {"p": "q"},
    "podLabels": {"team": "docs"},
    "podDisruptionBudget": {"enabled": True},
    "networkPolicy": {"enabled": True},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {
                            "matchLabels": {"app.kubernetes.io/name": "workflow-runs-exporter"}
                        },
                    },
                }
            ]
        }
    },
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "workflow-runs-exporter"}},
        }
    ],
    "priorityClassName": "monitoring",
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "slos": [
        {
            "name": "invoices",
            "sources": ["plextera-prod"],
            "success": {"objective": 99.5},
            "latency": {"threshold": 300},
        }
    ],
    "dashboards": {"enabled": True, "folder": "Workflows", "annotations": {"k": "v"}},
}

WEBHOOKS: dict[str, Any] = {
    "sources": [
        {"name": "extend-main", "provider": "extend", "webhookSecretKey": "extend-main"},
        {"name": "noxus", "provider": "noxus"},
    ],
    "apiKeys": {"existingSecret": "workflow-runs-exporter-keys"},
    "networkPolicy": {"enabled": True},
    "webhooks": {
        "enabled": True,
        "existingSecret": "workflow-runs-exporter-webhooks",
        "service": {"type": "LoadBalancer", "annotations": {"a": "b"}},
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "host": "hooks.example.com",
            "tls": [{"hosts": ["hooks.example.com"], "secretName": "hooks-tls"}],
        },
    },
}

# Any replica takes a source's event and forwards it to the shard that owns the source.
SHARDED_WEBHOOKS: dict[str, Any] = {**WEBHOOKS, "shards": 3}

SCENARIOS = {
    "defaults": {},
    "every-option": EVERY_OPTION,
    "webhooks": WEBHOOKS,
    "sharded-webhooks": SHARDED_WEBHOOKS,
}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    chart = helm.Chart.load(CHART)
    try:
        chart.validate_schema(values)
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    finally:
        chart.close()
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".yaml"):
            docs += [doc for doc in yaml.safe_load_all(text) if doc]
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    """The one manifest of a kind (whose name ends in `suffix`, when several are)."""
    found = [
        doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"].endswith(suffix)
    ]
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(SCENARIOS[request.param])


def test_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == __version__ == project["version"]


@pytest.mark.parametrize("values", sorted(SCENARIOS))
def test_lints_clean_in_strict_mode(values: str) -> None:
    for kube_version in KUBE_VERSIONS:
        report = helm.lint(
            CHART,
            SCENARIOS[values],
            strict=True,
            namespace=NAMESPACE,
            kube_version=f"v{kube_version}" if kube_version else None,
        )
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not report["errors"], report
        assert not problems, problems


def test_manifests_pass_kubernetes_validate_strict(
    scenario: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    name, docs = scenario
    core = [doc for doc in docs if doc["kind"] not in CRD_KINDS]
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(yaml.safe_dump_all(core))
    validator = shutil.which("kubernetes-validate") or str(
        Path(sys.executable).parent / "kubernetes-validate"
    )
    for kube_version in KUBE_VERSIONS:
        version = ["-k", kube_version] if kube_version else []
        result = subprocess.run(
            [validator, "--strict", "--quiet", *version, str(manifest)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "ERROR" not in result.stdout + result.stderr


def test_every_option_renders_every_manifest() -> None:
    kinds = sorted(doc["kind"] for doc in render(EVERY_OPTION))
    for kind in (
        "ConfigMap",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
        "StatefulSet",
    ):
        assert kind in kinds


def test_hardened_by_default() -> None:
    docs = render({})
    pod = by_kind(docs, "StatefulSet")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert by_kind(docs, "ServiceAccount")["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    assert container["image"].endswith(f":{__version__}")
    kinds = {doc["kind"] for doc in docs}
    assert not kinds & {"ServiceMonitor", "PodDisruptionBudget", "NetworkPolicy", "Secret"}


def test_state_on_a_claim_or_an_empty_dir() -> None:
    with_claim = by_kind(render({}), "StatefulSet")["spec"]
    (claim,) = with_claim["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "state"
    assert "state" not in {v["name"] for v in with_claim["template"]["spec"]["volumes"]}
    without = by_kind(render({"persistence": {"enabled": False}}), "StatefulSet")["spec"]
    assert "volumeClaimTemplates" not in without
    volumes = {v["name"]: v for v in without["template"]["spec"]["volumes"]}
    assert volumes["state"] == {"name": "state", "emptyDir": {}}


def test_the_config_is_a_valid_exporter_config_with_keys_from_the_secret(tmp_path: Path) -> None:
    docs = render(EVERY_OPTION)
    text = by_kind(docs, "ConfigMap", "-exporter")["data"]["config.yaml"]
    assert "api_key:" not in text
    data = yaml.safe_load(text)
    mount = "/etc/workflow-runs-exporter/keys"
    assert [s["api_key_file"] for s in data["sources"]] == [
        f"{mount}/plextera-prod",
        f"{mount}/extend-main",
        f"{mount}/ctx",
    ]
    assert data["state_path"] == "/var/lib/workflow-runs-exporter/state.db"
    # The exporter itself accepts it (key files moved to where this test can write them).
    for source in data["sources"]:
        key = tmp_path / Path(source["api_key_file"]).name
        key.write_text("k-1234567890")
        source["api_key_file"] = str(key)
    token = tmp_path / "alertmanager-token"
    token.write_text("t-1234567890")
    data["alerting"]["alertmanagers"][0]["bearer_token_file"] = str(token)
    config = config_from_data(data, environ={})
    assert [s.name for s in config.sources] == ["plextera-prod", "extend-main", "cortex"]
    assert config.app.alerting is not None
    assert config.app.alerting.alertmanagers[0].url.startswith("http://alertmanager-operated")

    pod = by_kind(docs, "StatefulSet")["spec"]["template"]["spec"]
    secret = next(v for v in pod["volumes"] if v["name"] == "api-keys")
    assert secret["secret"]["secretName"] == "workflow-runs-exporter-keys"
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["api-keys"] == {"name": "api-keys", "mountPath": mount, "readOnly": True}


def test_keys_in_values_are_refused() -> None:
    chart = helm.Chart.load(CHART)
    try:
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema(
                {"sources": [{"name": "a", "provider": "noxus", "api_key": "k-123"}]}
            )
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema({"config": {"state_path": "/elsewhere"}})
        for secret in ("password", "bearer_token"):
            with pytest.raises(helm.HelmValuesError):
                chart.validate_schema(
                    {"config": {"alerting": {"alertmanagers": [{"url": "http://am", secret: "s"}]}}}
                )
        with pytest.raises(helm.HelmRenderError, match="existingSecret"):
            chart.render({"sources": [{"name": "a", "provider": "noxus"}]}, name=RELEASE)
    finally:
        chart.close()


def test_shards_are_statefulset_replicas_indexed_by_their_ordinal() -> None:
    docs = render(EVERY_OPTION)
    statefulset = by_kind(docs, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 3
    args = statefulset["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--shard.count=3" in args
    assert "--shard.index-from-hostname" in args
    # The pods' host names are `<statefulset>-<ordinal>`.
    name = statefulset["metadata"]["name"]
    assert [ordinal_from_hostname(f"{name}-{i}") for i in range(3)] == [0, 1, 2]
    single = by_kind(render({}), "StatefulSet")
    assert single["spec"]["replicas"] == 1
    assert not any(
        "shard" in a for a in single["spec"]["template"]["spec"]["containers"][0]["args"]
    )


def test_service_monitor_scrapes_every_pod_of_the_release() -> None:
    docs = render(EVERY_OPTION)
    monitor = by_kind(docs, "ServiceMonitor")
    service = by_kind(docs, "Service")
    statefulset = by_kind(docs, "StatefulSet")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == NAMESPACE
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= (
        statefulset["spec"]["template"]["metadata"]["labels"].items()
    )
    # Each shard is its own target: a headless Service, no load balancing between shards.
    assert service["spec"]["clusterIP"] == "None"
    port_names = {p["name"] for p in service["spec"]["ports"]}
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] in port_names
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "1m"
    assert endpoint["scrapeTimeout"] == "20s"
    assert endpoint["relabelings"] == EVERY_OPTION["serviceMonitor"]["relabelings"]
    assert endpoint["metricRelabelings"] == EVERY_OPTION["serviceMonitor"]["metricRelabelings"]
    for relabeling in endpoint["relabelings"] + endpoint["metricRelabelings"]:
        assert relabeling["action"] in {"replace", "keep", "drop", "labeldrop", "labelkeep"}
    # The job label the canonical rules select on.
    label = spec["jobLabel"]
    assert service["metadata"]["labels"][label] == "workflow-runs-exporter"


def canonical_groups() -> list[dict[str, Any]]:
    groups = yaml.safe_load(rules.RULES_FILE.read_text())["groups"]
    assert isinstance(groups, list)
    return groups


def test_chart_copies_of_rules_and_dashboards_are_current() -> None:
    assert chart_files.main(["--check"]) == 0, "run `make chart`"


def test_threshold_defaults_are_the_canonical_ones() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["prometheusRule"]["thresholds"] == chart_files.default_thresholds()


def test_prometheus_rule_with_default_values_is_the_canonical_rules_file() -> None:
    docs = render({"prometheusRule": {"enabled": True}})
    rule = by_kind(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["spec"]["groups"] == canonical_groups()


def test_prometheus_rule_thresholds_come_from_values() -> None:
    thresholds = chart_files.default_thresholds()
    thresholds["failed_spike"].update({"min_failures": 9, "window": "15m", "severity": "page"})
    thresholds["stuck"]["age_seconds"] = 7200
    thresholds["selector"] = 'job="wre",namespace="monitoring"'
    docs = render(
        {
            "prometheusRule": {
                "enabled": True,
                "thresholds": thresholds,
                "labels": {"release": "kube-prometheus-stack"},
            }
        }
    )
    rule = by_kind(docs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"]["groups"] == rules.build_groups(rules.Thresholds(thresholds))
    spike = rule["spec"]["groups"][0]["rules"][0]
    assert spike["alert"] == "WorkflowRunsFailedSpike"
    assert ">= 9" in spike["expr"]
    assert "[15m]" in spike["expr"]
    assert spike["labels"]["severity"] == "page"


def test_prometheus_rule_structure() -> None:
    rule = by_kind(render({"prometheusRule": {"enabled": True}}), "PrometheusRule")
    assert set(rule["spec"]) == {"groups"}
    names = set()
    for group in rule["spec"]["groups"]:
        assert set(group) == {"name", "rules"}
        for alert in group["rules"]:
            assert set(alert) == {"alert", "expr", "for", "labels", "annotations"}
            assert alert["labels"]["severity"]
            assert set(alert["annotations"]) == {"summary", "description", "runbook_url"}
            assert "{{" not in alert["expr"]
            names.add(alert["alert"])
    assert "WorkflowExporterSourceDown" in names


def test_dashboards_config_map_holds_the_canonical_dashboards_for_the_sidecar() -> None:
    docs = render({"dashboards": {"enabled": True}})
    config_map = by_kind(docs, "ConfigMap", "-dashboards")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    canonical = {p.name: p.read_text() for p in sorted(chart_files.DASHBOARDS.glob("*.json"))}
    assert canonical, "no canonical dashboards found"
    assert config_map["data"] == canonical


def test_the_schema_takes_static_labels_filters_and_origins_and_refuses_bad_ones() -> None:
    good = {
        "name": "cx",
        "provider": "cortex",
        "labels": {"team": "payments", "env": "prod"},
        "workflows": {"include": ["Invoices.*"], "exclude": "Sandbox.*"},
        "origin": ["WORKFLOW", "RECORD"],
    }
    chart = helm.Chart.load(CHART)
    try:
        chart.validate_schema({"sources": [good]})
        chart.validate_schema({"sources": [{**good, "origin": "ALL"}]})
        for bad in (
            {"labels": {"bad-name": "x"}},
            {"labels": {"workflow": "x"}},
            {"labels": {"__x": "x"}},
            {"labels": {"team": ""}},
            {"workflows": {"inclde": ["x"]}},
            {"origin": ["BOGUS"]},
        ):
            with pytest.raises(helm.HelmValuesError):
                chart.validate_schema({"sources": [{**good, **bad}]})
    finally:
        chart.close()


def test_webhooks_get_their_own_listener_service_ingress_and_policy_rule() -> None:
    docs = render(WEBHOOKS)
    config = yaml.safe_load(by_kind(docs, "ConfigMap", "-exporter")["data"]["config.yaml"])
    mount = "/etc/workflow-runs-exporter/webhook-secrets"
    assert config["sources"][0]["webhook_secret_file"] == f"{mount}/extend-main"
    assert "webhook_secret_file" not in config["sources"][1]
    assert "webhookSecretKey" not in config["sources"][0]
    pod = by_kind(docs, "StatefulSet")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert "--webhook.listen-address=:9856" in container["args"]
    assert {"name": "webhooks", "containerPort": 9856, "protocol": "TCP"} in container["ports"]
    assert {"name": "webhook-secrets", "mountPath": mount, "readOnly": True} in container[
        "volumeMounts"
    ]
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    hooks = services[f"{RELEASE}-workflow-runs-exporter-webhooks"]
    assert hooks["spec"]["type"] == "LoadBalancer"
    assert [p["targetPort"] for p in hooks["spec"]["ports"]] == ["webhooks"]
    ingress = by_kind(docs, "Ingress")
    (path,) = ingress["spec"]["rules"][0]["http"]["paths"]
    assert path["path"] == "/webhooks/"
    assert path["backend"]["service"]["name"] == hooks["metadata"]["name"]
    policy = by_kind(docs, "NetworkPolicy")
    assert [r["ports"][0]["port"] for r in policy["spec"]["ingress"]] == ["http", "webhooks"]
    # Off by default: none of it.
    plain = render({})
    assert "Ingress" not in {d["kind"] for d in plain}
    assert not any(
        "webhook" in a
        for a in by_kind(plain, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["args"]
    )


def test_webhooks_refuse_secrets_in_values() -> None:
    chart = helm.Chart.load(CHART)
    try:
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema(
                {"sources": [{"name": "a", "provider": "extend", "webhook_secret": "s-123"}]}
            )
        no_secret = {**WEBHOOKS, "webhooks": {"enabled": True}}
        with pytest.raises(helm.HelmRenderError, match="webhookSecretKey"):
            chart.render(no_secret, name=RELEASE)
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema({"config": {"webhooks": {"peer_url_template": "http://x:1"}}})
    finally:
        chart.close()


# Every kind of selection and setting an SLO takes, for the chart's rules and the generator's.
SLOS: list[dict[str, Any]] = [
    {
        "name": "invoices-success",
        "sources": ["a.prod", "b"],
        "workflows": {"include": ["Inv.*", 'say "hi"'], "exclude": "test"},
        "success": {"objective": 99.9, "bad": "failed"},
    },
    {
        "name": "99",
        "sources": "only",
        "success": {"good": ["succeeded", "skipped"]},
        "latency": {"threshold": 0.5, "statuses": ["succeeded", "failed"], "objective": 97.3},
        "window": "168h",
        "min_runs": 3,
    },
    {"name": "slow", "latency": {"threshold": 3600}, "window": "28d"},
]


def test_slo_prometheus_rule_is_what_slo_rules_writes() -> None:
    values = {
        "prometheusRule": {"enabled": True},
        "slos": SLOS,
        "slo_defaults": {"min_runs": 7},
        "config": {"buckets": {"duration": [0.5, 60, 300, 3600]}},
    }
    rule = by_kind(render(values), "PrometheusRule", "-slos")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NAMESPACE
    thresholds = chart_files.default_thresholds()
    expected = build_groups(
        [SloSettings.model_validate(slo) for slo in SLOS],
        SloDefaults(min_runs=7),
        thresholds["runbook_base_url"],
    )
    assert rule["spec"]["groups"] == expected
    for group in rule["spec"]["groups"]:
        assert set(group) == {"name", "rules"}
        for item in group["rules"]:
            assert set(item) in (
                {"record", "expr", "labels"},
                {"alert", "expr", "labels", "annotations"},
            )
            assert "{{" not in item["expr"]
            assert isinstance(item["labels"]["slo"], str)
    # Without SLOs, no second PrometheusRule.
    docs = render({"prometheusRule": {"enabled": True}})
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "PrometheusRule"] == [
        "wre-workflow-runs-exporter"
    ]


def test_slo_mistakes_are_refused_naming_the_field() -> None:
    chart = helm.Chart.load(CHART)
    try:
        with pytest.raises(
            Exception, match=r"slos\[fast\]\.latency\.threshold: 45 s is not a bucket"
        ):
            chart.render(
                {
                    "prometheusRule": {"enabled": True},
                    "slos": [{"name": "fast", "latency": {"threshold": 45}}],
                },
                name=RELEASE,
                namespace=NAMESPACE,
            )
        for bad in (
            {"name": "Bad Name", "success": {}},
            {"name": "a"},
            {"name": "a", "success": {"bad": ["exploded"]}},
            {"name": "a", "success": {}, "objective": 99},
        ):
            with pytest.raises(Exception):  # noqa: B017, PT011 (the SDK's schema error type)
                chart.validate_schema({"slos": [bad]})
    finally:
        chart.close()


def test_sharded_webhooks_reach_any_replica_which_forwards_to_the_owner_by_its_pod_name() -> None:
    docs = render(SHARDED_WEBHOOKS)
    statefulset = by_kind(docs, "StatefulSet")
    headless = by_kind(docs, "Service", "-exporter")
    # Pod names resolve through the StatefulSet's headless Service, ready or not.
    assert statefulset["spec"]["serviceName"] == headless["metadata"]["name"]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    text = by_kind(docs, "ConfigMap", "-exporter")["data"]["config.yaml"]
    template = yaml.safe_load(text)["webhooks"]["peer_url_template"]
    pod = statefulset["metadata"]["name"]
    assert template == (
        f"http://{pod}-{{shard}}.{headless['metadata']['name']}.{NAMESPACE}.svc:9856"
    )
    # The exporter takes it, and shard 2's address is pod 2's.
    peer = WebhookSettings(peer_url_template=template).peer_url(2, "extend-main")
    assert peer == f"http://{pod}-2.{pod}.{NAMESPACE}.svc:9856/webhooks/extend-main"
    assert ordinal_from_hostname(f"{pod}-2") == 2
    # One Service and one Ingress for every shard.
    assert (
        by_kind(docs, "Ingress")["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"][
            "name"
        ]
        == by_kind(docs, "Service", "-webhooks")["metadata"]["name"]
    )
    # The replicas may reach one another's webhook port, and nothing else of one another.
    policy = by_kind(docs, "NetworkPolicy")["spec"]
    selector = {"podSelector": {"matchLabels": statefulset["spec"]["selector"]["matchLabels"]}}
    assert {"ports": [{"port": "webhooks", "protocol": "TCP"}], "from": [selector]} in policy[
        "ingress"
    ]
    assert {"to": [selector], "ports": [{"port": 9856, "protocol": "TCP"}]} in policy["egress"]
    # A template given in values is kept; one replica needs none.
    given = {
        **SHARDED_WEBHOOKS,
        "config": {"webhooks": {"peer_url_template": "http://x-{shard}:1"}},
    }
    text = by_kind(render(given), "ConfigMap", "-exporter")["data"]["config.yaml"]
    assert yaml.safe_load(text)["webhooks"]["peer_url_template"] == "http://x-{shard}:1"
    text = by_kind(render(WEBHOOKS), "ConfigMap", "-exporter")["data"]["config.yaml"]
    assert "webhooks" not in yaml.safe_load(text)
    policy = by_kind(render(WEBHOOKS), "NetworkPolicy")["spec"]
    assert len(policy["egress"]) == 2
