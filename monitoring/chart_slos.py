"""The chart's PrometheusRule of the SLOs in `.Values.slos`: the rules `slo-rules` writes, as a
Helm template.

The template is not written by hand: the generator's own indicator (`exporter.slo.sli.Sli`) is
asked for its rules with every value replaced by a placeholder, and each placeholder becomes the
Helm expression that computes that value from the SLO's entry in the values. The tests render the
chart and compare its groups with `build_groups` for the same SLOs.
"""

from __future__ import annotations

import re
from typing import Any

from exporter.config.slos import (
    TERMINAL_STATUSES,
    LatencyObjective,
    SloSettings,
    SuccessObjective,
)
from exporter.slo.render import dump_rules
from exporter.slo.rules import indicator_rules
from exporter.slo.sli import LATENCY, SUCCESS, Sli

# A placeholder holds no character YAML would quote.
_TOKEN = "TQQ{}QQT"  # noqa: S105 (a placeholder, not a secret)
_TOKEN_RE = re.compile(r"TQQ([a-z_0-9]+)QQT")
_PROMETHEUS_TEMPLATE = re.compile(r"\{\{.*?\}\}")
# Factors appear as placeholders `threshold_<factor with p for the point>`.
_FACTOR = re.compile(r"^threshold_(\d+)p(\d+)$")


class _TemplateSli(Sli):
    def name_text(self) -> str:
        return _TOKEN.format("name")

    def budget_text(self) -> str:
        return _TOKEN.format("budget")

    def threshold_text(self, factor: float) -> str:
        whole, _, fraction = f"{factor:.1f}".partition(".")
        return _TOKEN.format(f"threshold_{whole}p{fraction}")

    def objective_ratio_text(self) -> str:
        return _TOKEN.format("objective_ratio")

    def objective_text(self) -> str:
        return _TOKEN.format("objective")

    def period_text(self) -> str:
        return _TOKEN.format("period")

    def matchers(self) -> list[str]:
        return [_TOKEN.format("selection")]

    def counted_text(self) -> str:
        return _TOKEN.format("counted")

    def bad_text(self) -> str:
        return _TOKEN.format("bad")

    def bound_text(self) -> str:
        return _TOKEN.format("bound")


_STAND_IN = SloSettings.model_validate({"name": "x", "success": {}, "latency": {"threshold": 1}})

# What each placeholder is in the template (the variables are set by _PRELUDE).
_HELM = {
    "name": "{{ $slo.name }}",
    "budget": '{{ printf "%.12g" $budget }}',
    "objective_ratio": '{{ printf "%.12g" (divf $objective 100) }}',
    "objective": '{{ printf "%.12g" $objective }}',
    "period": "{{ $period }}",
    "counted": "{{ $counted }}",
    "bad": "{{ $bad }}",
    "bound": "{{ $bound }}",
    "min_runs": "{{ $minRuns }}",
    "runbook": "{{ $runbook }}",
}

# Helpers for the values of one SLO; `wre.slo.quote` is PromQL's string literal.
DEFINES = r"""{{- define "wre.slo.quote" -}}
"{{ . | replace "\\" "\\\\" | replace "\"" "\\\"" }}"
{{- end -}}
{{- define "wre.slo.list" -}}
{{- if not . }}[]
{{- else if kindIs "string" . }}{{ list . | toJson }}
{{- else }}{{ toJson . }}{{ end -}}
{{- end -}}
{{- define "wre.slo.selection" -}}
{{- $sources := include "wre.slo.list" .sources | fromJsonArray }}
{{- if eq (len $sources) 1 }}source={{ include "wre.slo.quote" (first $sources) }},{{ end }}
{{- if gt (len $sources) 1 }}
{{- $names := list }}{{ range $sources }}{{ $names = append $names (regexQuoteMeta .) }}{{ end }}
{{- printf "source=~%s," (include "wre.slo.quote" (join "|" $names)) }}
{{- end }}
{{- $workflows := .workflows | default dict }}
{{- range list (list "=~" "include") (list "!~" "exclude") }}
{{- $patterns := include "wre.slo.list" (get $workflows (last .)) | fromJsonArray }}
{{- if $patterns }}
{{- $alts := list }}{{ range $patterns }}{{ $alts = append $alts (printf "(?:%s)" .) }}{{ end }}
{{- printf "workflow%s%s," (first .) (include "wre.slo.quote" (join "|" $alts)) }}
{{- end }}
{{- end }}
{{- end -}}
"""

# Sets the variables the placeholders read, for `$slo` and its indicator `$spec`.
_PRELUDE = r"""{{- $objective := float64 (default DEFAULT_OBJECTIVE $spec.objective) }}
{{- $budget := divf (subf 100 $objective) 100 }}
{{- $days := regexFind "^[0-9]+d$" ($slo.window | default "30d") }}
{{- $hours := trimSuffix "h" ($slo.window | default "30d") | int }}
{{- $inDays := printf "%dd" (div $hours 24) }}
{{- $inHours := printf "%dh" $hours }}
{{- $period := $days | default (ternary $inDays $inHours (eq (mod $hours 24) 0)) }}
{{- $minRuns := $slo.min_runs | default $.Values.slo_defaults.min_runs }}
{{- $runbook := $.Values.prometheusRule.thresholds.runbook_base_url }}
{{- $selection := include "wre.slo.selection" $slo }}
"""

_SUCCESS = r"""{{- $good := $spec.good | default (list "succeeded") }}
{{- $good = include "wre.slo.list" $good | fromJsonArray }}
{{- $badList := $spec.bad | default (list "failed" "rejected") }}
{{- $badList = include "wre.slo.list" $badList | fromJsonArray }}
{{- $bad := join "|" $badList }}
{{- $counted := join "|" (concat $good $badList) }}
{{- $bound := "" }}
"""

_LATENCY = r"""{{- $statuses := $spec.statuses | default (list "succeeded") }}
{{- $counted := join "|" (include "wre.slo.list" $statuses | fromJsonArray) }}
{{- $bad := "" }}
{{- $threshold := float64 $spec.threshold }}
{{- $bounds := dig "buckets" "duration" (list DEFAULT_BOUNDS) ($.Values.config | default dict) }}
{{- $known := false }}
{{- range $bounds }}{{ if eq (float64 .) $threshold }}{{ $known = true }}{{ end }}{{ end }}
{{- if not $known }}
{{- $problem := "%v s is not a bucket bound of workflow_run_duration_seconds" }}
{{- $where := printf "slos[%s].latency.threshold" $slo.name }}
{{- $said := printf $problem $threshold }}
{{- fail (printf "%s: %s (config.buckets.duration: %v)" $where $said $bounds) }}
{{- end }}
{{- $whole := eq (floor $threshold) $threshold }}
{{- $bound := ternary (printf "%.1f" $threshold) (printf "%v" $threshold) $whole }}
"""


def _helm(match: re.Match[str]) -> str:
    key = match.group(1)
    factor = _FACTOR.match(key)
    if factor:
        value = f"{factor.group(1)}.{factor.group(2)}"
        return f'{{{{ printf "%.12g" (mulf {value} $budget) }}}}'
    if key == "selection":
        return "{{ $selection }}"
    return _HELM[key]


def _group(kind: str) -> str:
    """One indicator's group, a YAML list item at the `groups:` level."""
    sli = _TemplateSli(_STAND_IN, kind, 99.0)
    rules = indicator_rules(sli, _TOKEN.format("min_runs"), _TOKEN.format("runbook"))
    body = dump_rules(
        [{"name": f"workflow-runs-slo.{_TOKEN.format('name')}.{kind}", "rules": rules}],
        width=100_000,
    )
    body = body.removeprefix("groups:\n")
    body = _PROMETHEUS_TEMPLATE.sub(lambda m: "{{`" + m.group(0) + "`}}", body)
    # The selection's matchers end in a comma of their own (none when it selects everything).
    body = body.replace(_TOKEN.format("selection") + ",", _TOKEN.format("selection"))
    body = _TOKEN_RE.sub(_helm, body)
    body = body.replace("{{{ ", '{{ "{" }}{{ ')
    # A label value that reads as a number (`slo: 99`) must stay a string.
    body = body.replace("slo: {{ $slo.name }}", "slo: {{ $slo.name | quote }}")
    return "".join(f"  {line}" if line.strip() else line for line in body.splitlines(True))


def template(default_bounds: tuple[float, ...]) -> str:
    """The whole template file: the helpers, then a group per indicator of each SLO."""
    bounds = " ".join(f"{b:g}" for b in default_bounds)
    parts = [
        "{{- /* Generated by `make chart` from monitoring/chart_slos.py: edit that. */ -}}\n",
        DEFINES,
        "{{- if and .Values.prometheusRule.enabled .Values.slos }}\n",
        HEADER,
        "{{- range $slo := .Values.slos }}\n",
        '{{- if hasKey $slo "success" }}\n{{- $spec := $slo.success | default dict }}\n',
        _PRELUDE.replace("DEFAULT_OBJECTIVE", f"{SuccessObjective().objective:g}.0"),
        _SUCCESS,
        _group(SUCCESS),
        "{{- end }}\n",
        '{{- if hasKey $slo "latency" }}\n{{- $spec := $slo.latency | default dict }}\n',
        _PRELUDE.replace("DEFAULT_OBJECTIVE", f"{LatencyObjective(threshold=1).objective:g}.0"),
        _LATENCY.replace("DEFAULT_BOUNDS", bounds),
        _group(LATENCY),
        "{{- end }}\n",
        "{{- end }}\n",
        "{{- end }}\n",
    ]
    return "".join(parts)


HEADER = """apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: {{ include "wre.fullname" . }}-slos
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "wre.labels" . | nindent 4 }}
    {{- with .Values.prometheusRule.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  groups:
"""


def values_schema(workflows: dict[str, Any]) -> dict[str, Any]:
    """`slos` and `slo_defaults` in the values schema, as `exporter.config.slos` checks them
    (`workflows`: the sources' filter schema)."""
    statuses = {"type": "string", "enum": list(TERMINAL_STATUSES)}
    listed = {"oneOf": [statuses, {"type": "array", "minItems": 1, "items": statuses}]}
    objective = {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 100}
    name = SloSettings.model_json_schema()["properties"]["name"]["pattern"]
    slo = {
        "type": "object",
        "required": ["name"],
        "anyOf": [{"required": ["success"]}, {"required": ["latency"]}],
        "properties": {
            "name": {"type": "string", "pattern": name},
            "sources": {
                "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
            },
            "workflows": workflows,
            "window": {"type": "string", "pattern": "^[0-9]+[hd]$"},
            "min_runs": {"type": "integer", "minimum": 1},
            "success": {
                "type": ["object", "null"],
                "properties": {"objective": objective, "good": listed, "bad": listed},
                "additionalProperties": False,
            },
            "latency": {
                "type": "object",
                "required": ["threshold"],
                "properties": {
                    "threshold": {"type": "number", "exclusiveMinimum": 0},
                    "objective": objective,
                    "statuses": listed,
                },
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    }
    return {
        "slos": {
            "type": "array",
            "description": "service-level objectives, rendered as a PrometheusRule (docs/slos.md)",
            "items": slo,
        },
        "slo_defaults": {
            "type": "object",
            "properties": {"min_runs": {"type": "integer", "minimum": 1}},
            "additionalProperties": False,
        },
    }
