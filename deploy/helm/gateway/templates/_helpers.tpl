{{/* The gateway's named ports and the config keys of their listen addresses. */}}
{{- define "gateway.ports" -}}
{{- toJson (list (list "http" "httpAddr") (list "ops" "opsAddr")) -}}
{{- end -}}

{{- define "gateway.validate" -}}
{{- if .Values.config.demo -}}
{{- fail "config.demo (STAGING_DEMO) enables POST /create-file/ and must stay false in a deployment" -}}
{{- end -}}
{{- if and (eq .Values.config.authMode "tokens") (not .Values.config.authTokensFile) (not .Values.auth.tokensSecret) -}}
{{- fail "config.authMode=tokens needs auth.tokensSecret (or config.authTokensFile on a volume of your own)" -}}
{{- end -}}
{{- if and (eq .Values.config.authMode "oidc") (not .Values.config.oidcIssuer) -}}
{{- fail "config.authMode=oidc needs config.oidcIssuer" -}}
{{- end -}}
{{- end -}}

{{- define "gateway.tokensMounted" -}}
{{- if and (eq .Values.config.authMode "tokens") (not .Values.config.authTokensFile) .Values.auth.tokensSecret }}true{{ end -}}
{{- end -}}

{{- define "gateway.overrides" -}}
{{- $o := dict -}}
{{- if include "gateway.tokensMounted" . -}}
{{- $_ := set $o "authTokensFile" (printf "/etc/skao-staging/auth/%s" .Values.auth.tokensKey) -}}
{{- end -}}
{{- toJson $o -}}
{{- end -}}

{{- define "gateway.volumes" -}}
{{- if ne .Values.storage.source.type "none" }}
{{ include "skao-staging-lib.volume" (dict "name" "source" "storage" .Values.storage.source "readOnly" true) }}
{{- end }}
{{- if include "gateway.tokensMounted" . }}
- name: auth-tokens
  secret:
    secretName: {{ .Values.auth.tokensSecret }}
    defaultMode: 0444
{{- end }}
{{- end -}}

{{- define "gateway.volumeMounts" -}}
{{- if ne .Values.storage.source.type "none" }}
{{ include "skao-staging-lib.volumeMount" (dict "name" "source" "storage" .Values.storage.source "readOnly" true "mountPath" .Values.config.sourceRoot) }}
{{- end }}
{{- if include "gateway.tokensMounted" . }}
- name: auth-tokens
  mountPath: /etc/skao-staging/auth
  readOnly: true
{{- end }}
{{- end -}}
