{{- define "shmwatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "shmwatch.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "shmwatch.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "shmwatch.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "shmwatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shmwatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "shmwatch.labels" -}}
{{ include "shmwatch.selectorLabels" . }}
app.kubernetes.io/part-of: shmwatch
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "shmwatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "shmwatch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "shmwatch.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- $repo := .Values.image.repository -}}
{{- if .Values.image.registry }}{{ $repo = printf "%s/%s" .Values.image.registry $repo }}{{ end -}}
{{- if .Values.image.digest }}{{ printf "%s@%s" $repo .Values.image.digest }}{{ else }}{{ printf "%s:%s" $repo $tag }}{{ end -}}
{{- end }}

{{/* "true" when /metrics is guarded by Kubernetes RBAC, as the agent decides it. */}}
{{- define "shmwatch.authOn" -}}
{{- if not (has .Values.auth.mode (list "auto" "kubernetes" "none")) }}
{{- fail (printf "auth.mode must be auto, kubernetes or none, got %q" .Values.auth.mode) }}
{{- end }}
{{- or (eq .Values.auth.mode "kubernetes") (and (eq .Values.auth.mode "auto") .Values.hostNetwork) }}
{{- end }}

{{/* https when the agent serves TLS: the guard's self-signed certificate or a web config. */}}
{{- define "shmwatch.scheme" -}}
{{- if or (eq (include "shmwatch.authOn" .) "true") .Values.auth.webConfigFile }}https{{ else }}http{{ end }}
{{- end }}
