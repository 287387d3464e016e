{{/*
Chart name, truncated to the 63 characters a label value allows.
*/}}
{{- define "papertrader.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name for the release's objects. If the release name already contains the chart
name it is used as is (so `helm install papertrader ./charts/papertrader` gives "papertrader").
*/}}
{{- define "papertrader.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of the operator's objects (Deployment, Service, ServiceMonitor). */}}
{{- define "papertrader.operatorName" -}}
{{- printf "%s-operator" (include "papertrader.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "papertrader.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of this release. */}}
{{- define "papertrader.labels" -}}
helm.sh/chart: {{ include "papertrader.chart" . }}
app.kubernetes.io/part-of: papertrader
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of the operator pod: stable across upgrades, never add version-dependent labels here. */}}
{{- define "papertrader.operatorSelectorLabels" -}}
app.kubernetes.io/name: papertrader-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "papertrader.operatorLabels" -}}
{{ include "papertrader.labels" . }}
{{ include "papertrader.operatorSelectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels for the monitoring objects: the chart labels plus the selector label of the Prometheus (e.g. release: kube-prometheus-stack). */}}
{{- define "papertrader.monitoringLabels" -}}
{{ include "papertrader.labels" . }}
app.kubernetes.io/component: monitoring
{{- with .Values.monitoring.selectorLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "papertrader.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "papertrader.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository, then @digest if set, else :tag (default: the chart's appVersion).
*/}}
{{- define "papertrader.imageRef" -}}
{{- $img := .image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .appVersion $img.tag) -}}
{{- end -}}
{{- end }}

{{- define "papertrader.operatorImage" -}}
{{- include "papertrader.imageRef" (dict "image" .Values.image "appVersion" .Chart.AppVersion) }}
{{- end }}

{{/* The image the operator gives to the worker StatefulSets: workerImage if its repository is set, else the operator's. */}}
{{- define "papertrader.workerImage" -}}
{{- if .Values.workerImage.repository }}
{{- include "papertrader.imageRef" (dict "image" .Values.workerImage "appVersion" .Chart.AppVersion) }}
{{- else }}
{{- include "papertrader.operatorImage" . }}
{{- end }}
{{- end }}

{{/* Whether the operator watches the whole cluster (no watchNamespaces given). */}}
{{- define "papertrader.clusterWide" -}}
{{- if not .Values.operator.watchNamespaces }}true{{- end }}
{{- end }}

{{/* Namespace for the dashboard ConfigMaps: the configured one, else the release namespace. */}}
{{- define "papertrader.dashboardNamespace" -}}
{{- default .Release.Namespace .Values.monitoring.grafanaDashboards.namespace }}
{{- end }}

{{/* Namespace for the PrometheusRule and monitors: the configured one, else the release namespace. */}}
{{- define "papertrader.monitoringNamespace" -}}
{{- default .Release.Namespace .Values.monitoring.namespace }}
{{- end }}

