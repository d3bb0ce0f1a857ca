{{- define "audit.ports" -}}
{{- toJson (list (list "ops" "opsAddr")) -}}
{{- end -}}

{{/* STAGING_MYSQL_DSN only from a Secret. */}}
{{- define "audit.secretEnv" -}}
{{- if .Values.mysql.existingSecret }}
- name: STAGING_MYSQL_DSN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.mysql.existingSecret }}
      key: {{ .Values.mysql.dsnKey }}
{{- end }}
{{- end -}}

{{/* Without MySQL the audit writes SQLite: one writer only, on a volume. */}}
{{- define "audit.validate" -}}
{{- if not .Values.mysql.existingSecret -}}
{{- if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) -}}
{{- fail "without mysql.existingSecret the audit uses SQLite: run one replica (replicaCount: 1, autoscaling off)" -}}
{{- end -}}
{{- if not .Values.sqlite.enabled -}}
{{- fail "set mysql.existingSecret (STAGING_MYSQL_DSN), or sqlite.enabled for a test installation" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "audit.overrides" -}}
{{- $o := dict -}}
{{- if and (not .Values.mysql.existingSecret) .Values.sqlite.enabled (not .Values.config.sqlitePath) -}}
{{- $_ := set $o "sqlitePath" "/var/lib/skao-staging/audit.db" -}}
{{- end -}}
{{- toJson $o -}}
{{- end -}}

{{- define "audit.volumes" -}}
{{- if and (not .Values.mysql.existingSecret) .Values.sqlite.enabled }}
- name: sqlite
{{- if .Values.sqlite.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.sqlite.existingClaim }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end }}
{{- end -}}

{{- define "audit.volumeMounts" -}}
{{- if and (not .Values.mysql.existingSecret) .Values.sqlite.enabled }}
- name: sqlite
  mountPath: /var/lib/skao-staging
{{- end }}
{{- end -}}
