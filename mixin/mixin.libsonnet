// The workflow-runs-exporter monitoring mixin: the alert rules, recording rules (none yet) and
// Grafana dashboards the project ships, with what a deployment changes in `_config`:
//
//   local wre = (import 'workflow-runs-exporter-mixin/mixin.libsonnet') + {
//     _config+:: {
//       exporterSelector: 'job="wre", namespace="docs-ai"',
//       runbookURLBase: 'https://wiki.example.com/runbooks/workflow-runs-exporter',
//       thresholds+: { failure_ratio+: { ratio: 0.1 } },
//     },
//   };
//   { 'alerts.yaml': std.manifestYamlDoc(wre.prometheusAlerts) }
//
// Every part but this file is generated from the sources of the shipped files
// (monitoring/thresholds.yaml, monitoring/rules.py, the dashboard modules); with `_config` as it
// is, the mixin renders those files exactly.
(import 'config.libsonnet')
+ (import 'alerts.libsonnet')
+ (import 'dashboards.libsonnet')
