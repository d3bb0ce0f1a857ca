{{- define "jupyter-bridge.ports" -}}
{{- toJson (list (list "ops" "opsAddr")) -}}
{{- end -}}

{{/* JupyterHub's own variable names (JUPYTERHUB_URL, JUPYTERHUB_API_TOKEN); the token only from a Secret. */}}
{{- define "jupyter-bridge.secretEnv" -}}
{{- with .Values.jupyterhub.url }}
- name: JUPYTERHUB_URL
  value: {{ . | quote }}
{{- end }}
{{- if .Values.jupyterhub.existingSecret }}
- name: JUPYTERHUB_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.jupyterhub.existingSecret }}
      key: {{ .Values.jupyterhub.tokenKey }}
{{- else if .Values.jupyterhub.url }}
{{- fail "jupyterhub.url is set: jupyterhub.existingSecret must name the Secret holding the bridge's API token" }}
{{- end }}
{{- if .Values.rucio.existingSecret }}
- name: STAGING_RUCIO_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.rucio.existingSecret }}
      key: {{ .Values.rucio.passwordKey }}
{{- end }}
{{- end -}}

{{- define "jupyter-bridge.volumes" -}}
{{ include "skao-staging-lib.volume" (dict "name" "source" "storage" .Values.storage.source "readOnly" true) }}
{{- with .Values.rucio.tokenSecret }}
- name: rucio-token
  secret:
    secretName: {{ . }}
{{- end }}
{{- end -}}

{{- define "jupyter-bridge.volumeMounts" -}}
{{ include "skao-staging-lib.volumeMount" (dict "name" "source" "storage" .Values.storage.source "readOnly" true "mountPath" .Values.config.sourceRoot) }}
{{- if .Values.rucio.tokenSecret }}
- name: rucio-token
  mountPath: /var/run/secrets/rucio
  readOnly: true
{{- end }}
{{- end -}}
