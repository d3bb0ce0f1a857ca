{{/*
skao-staging-lib.env: the container's environment.

  .Values.config       one key per STAGING_* variable of the binary, in
                       camelCase: natsUrl -> STAGING_NATS_URL,
                       eventsMaxAge -> STAGING_EVENTS_MAX_AGE. Lists are
                       joined with commas. Empty (null or "") keys are not
                       set, so the binary's default applies.
  .overrides           (dict) keys the service chart computes (e.g. the
                       ownership map path); they win over .Values.config.
  .Values.nats         existingSecret/urlKey: STAGING_NATS_URL from a Secret
                       (a URL with per-service credentials); wins over
                       config.natsUrl. credentialsSecret with credsKey or
                       nkeyKey: STAGING_NATS_CREDS_FILE or
                       STAGING_NATS_NKEY_FILE, the mounted file (_nats.tpl).
  .Values.otel         endpoint -> OTEL_EXPORTER_OTLP_ENDPOINT.
  .secretEnv           (YAML list) env entries from Secrets, from the chart.
  .Values.extraEnv     further entries, verbatim.
*/}}
{{- define "skao-staging-lib.env" -}}
{{- $root := .ctx -}}
{{- $config := merge (dict) (.overrides | default dict) ($root.Values.config | default dict) -}}
{{- $natsCreds := include "skao-staging-lib.natsCredentials" $root | fromJson -}}
{{- with $natsCreds.config }}{{ $_ := set $config . (printf "%s/%s" (include "skao-staging-lib.natsCredentialsDir" $root) $natsCreds.key) }}{{ end -}}
{{- $natsSecret := $root.Values.nats.existingSecret | default "" -}}
{{- range $key := keys $config | sortAlpha }}
{{- $value := get $config $key }}
{{- if and $natsSecret (eq $key "natsUrl") }}{{ continue }}{{ end }}
{{- if or (kindIs "invalid" $value) (and (kindIs "string" $value) (eq $value "")) }}{{ continue }}{{ end }}
{{- if kindIs "slice" $value }}{{ $value = join "," $value }}{{ if eq $value "" }}{{ continue }}{{ end }}{{ end }}
{{- /* YAML numbers arrive as float64: print whole numbers without an exponent */}}
{{- if and (kindIs "float64" $value) (eq (floor $value) $value) }}{{ $value = int64 $value }}{{ end }}
- name: {{ printf "STAGING_%s" ($key | snakecase | upper) }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- if $natsSecret }}
- name: STAGING_NATS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $natsSecret }}
      key: {{ $root.Values.nats.urlKey | default "url" }}
{{- end }}
{{- with $root.Values.otel }}
{{- if .endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .endpoint | quote }}
{{- end }}
{{- end }}
{{- with .secretEnv }}
{{ . }}
{{- end }}
{{- with $root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
