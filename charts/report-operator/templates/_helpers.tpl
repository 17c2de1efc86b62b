{{/* The chart's name. */}}
{{- define "report-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: names every object the chart makes. */}}
{{- define "report-operator.fullname" -}}
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

{{- define "report-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "report-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "report-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "report-operator.labels" -}}
helm.sh/chart: {{ include "report-operator.chart" . }}
{{ include "report-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: report-operator
{{- end }}

{{- define "report-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "report-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Whether the operator runs with --sharding: several replicas, all namespaces. */}}
{{- define "report-operator.sharding" -}}
{{- if and (gt (int .Values.replicaCount) 1) (empty .Values.watchNamespace) }}true{{ end }}
{{- end }}

{{/* Whether the operator runs with --leader-elect: one Lease, when not sharding. */}}
{{- define "report-operator.leaderElect" -}}
{{- if and (not (include "report-operator.sharding" .)) (or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1)) }}true{{ end }}
{{- end }}

{{- define "report-operator.leaseName" -}}
{{- default (include "report-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "report-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Where the chart's pods run: pull secrets, priority, node selection. The operator's
Deployment and the uninstall hook's Job share it. */}}
{{- define "report-operator.podPlacement" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
