{{/*
Names and labels. Every template takes the service chart's root context.
*/}}
{{- define "skao-staging-lib.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "skao-staging-lib.fullname" -}}
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

{{- define "skao-staging-lib.selectorLabels" -}}
app.kubernetes.io/name: {{ include "skao-staging-lib.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "skao-staging-lib.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "skao-staging-lib.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .Chart.Name }}
app.kubernetes.io/part-of: skao-staging
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "skao-staging-lib.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "skao-staging-lib.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "skao-staging-lib.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
skao-staging-lib.port: the port number of a listen address such as ":9090"
or "0.0.0.0:8081"; empty when the address is empty (listener off).
*/}}
{{- define "skao-staging-lib.port" -}}
{{- if . -}}
{{- $parts := splitList ":" (toString .) -}}
{{- last $parts -}}
{{- end -}}
{{- end -}}

{{/*
skao-staging-lib.ports: the named ports of the service, as a list of
{name, port} dicts in JSON, from .ports (a list of [name, configKey] pairs
given by the service chart): each port comes from the listen address in
.Values.config, so the Kubernetes ports can never disagree with
STAGING_*_ADDR. A pair whose address is empty (listener off) is skipped.
*/}}
{{- define "skao-staging-lib.portList" -}}
{{- $root := .ctx -}}
{{- $out := list -}}
{{- range .ports -}}
{{- $name := index . 0 -}}
{{- $addr := index $root.Values.config (index . 1) | default "" -}}
{{- $port := include "skao-staging-lib.port" $addr -}}
{{- if $port -}}
{{- $out = append $out (dict "name" $name "port" (atoi $port)) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}
