{{/* Names and labels shared by every manifest. */}}

{{- define "wre.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "wre.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "wre.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "wre.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wre.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "wre.labels" -}}
helm.sh/chart: {{ include "wre.chart" . }}
{{ include "wre.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: workflow-runs-exporter
{{- end -}}

{{- define "wre.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "wre.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "wre.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "wre.statePath" -}}/var/lib/workflow-runs-exporter{{- end -}}

{{/*
The exporter's config file: `config` from values, the state on the state volume, each
source with its key as a file from the mounted Secret (never the key itself), and, with webhooks
on several shards, the address of each shard's webhook listener.
*/}}
{{- define "wre.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $_ := set $config "state_path" (printf "%s/state.db" (include "wre.statePath" .)) -}}
{{- $sources := list -}}
{{- range .Values.sources -}}
{{- $source := omit . "apiKeySecretKey" "webhookSecretKey" -}}
{{- if not (hasKey $source "api_key_file") -}}
{{- $_ := set $source "api_key_file" (printf "%s/%s" $.Values.apiKeys.mountPath (default .name .apiKeySecretKey)) -}}
{{- end -}}
{{- if and $.Values.webhooks.enabled .webhookSecretKey -}}
{{- $_ := set $source "webhook_secret_file" (printf "%s/%s" $.Values.webhooks.mountPath .webhookSecretKey) -}}
{{- end -}}
{{- $sources = append $sources $source -}}
{{- end -}}
{{- $_ := set $config "sources" $sources -}}
{{- if and .Values.webhooks.enabled (gt (int .Values.shards) 1) -}}
{{- /* The webhook Service reaches any replica: each forwards an event to the owner of its
source, by that pod's stable name behind the headless Service. */ -}}
{{- $hooks := deepCopy (default (dict) $config.webhooks) -}}
{{- if not (hasKey $hooks "peer_url_template") -}}
{{- $fullname := include "wre.fullname" . -}}
{{- $_ := set $hooks "peer_url_template" (printf "http://%s-{shard}.%s.%s.svc:%d" $fullname $fullname .Release.Namespace (int .Values.webhooks.port)) -}}
{{- end -}}
{{- $_ := set $config "webhooks" $hooks -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}
