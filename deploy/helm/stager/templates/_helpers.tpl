{{/* The stager's named ports; the download port disappears when config.downloadAddr is empty. */}}
{{- define "stager.ports" -}}
{{- toJson (list (list "download" "downloadAddr") (list "ops" "opsAddr")) -}}
{{- end -}}

{{- define "stager.ownershipOn" -}}
{{- if and .Values.config.ownership (ne .Values.config.ownership "none") }}true{{ end -}}
{{- end -}}

{{- define "stager.ownershipMapDir" -}}/etc/skao-staging/ownership{{- end -}}

{{- define "stager.ownershipConfigMap" -}}
{{- .Values.ownership.existingConfigMap | default (printf "%s-ownership" (include "skao-staging-lib.fullname" .)) -}}
{{- end -}}

{{/* Computed config keys: the ownership map file lies where the ConfigMap is mounted. */}}
{{- define "stager.overrides" -}}
{{- $o := dict -}}
{{- if and (eq .Values.config.ownership "map") (not .Values.config.ownershipMapFile) -}}
{{- $_ := set $o "ownershipMapFile" (printf "%s/%s" (include "stager.ownershipMapDir" .) .Values.ownership.configMapKey) -}}
{{- end -}}
{{- toJson $o -}}
{{- end -}}

{{/* The Rucio password only from a Secret. */}}
{{- define "stager.secretEnv" -}}
{{- if .Values.rucio.existingSecret }}
- name: STAGING_RUCIO_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.rucio.existingSecret }}
      key: {{ .Values.rucio.passwordKey }}
{{- end }}
{{- end -}}

{{- define "stager.volumes" -}}
{{ include "skao-staging-lib.volume" (dict "name" "source" "storage" .Values.storage.source "readOnly" true) }}
{{- with .Values.rucio.tokenSecret }}
- name: rucio-token
  secret:
    secretName: {{ . }}
{{- end }}
{{ include "skao-staging-lib.volume" (dict "name" "user-area" "storage" .Values.storage.userArea "readOnly" false) }}
{{- if eq .Values.config.ownership "map" }}
- name: ownership-map
  configMap:
    name: {{ include "stager.ownershipConfigMap" . }}
{{- end }}
{{- if and (eq .Values.config.ownership "passwd") .Values.ownership.passwdFromHost }}
- name: host-passwd
  hostPath:
    path: /etc/passwd
    type: File
- name: host-group
  hostPath:
    path: /etc/group
    type: File
{{- end }}
{{- end -}}

{{- define "stager.volumeMounts" -}}
{{ include "skao-staging-lib.volumeMount" (dict "name" "source" "storage" .Values.storage.source "readOnly" true "mountPath" .Values.config.sourceRoot) }}
{{ include "skao-staging-lib.volumeMount" (dict "name" "user-area" "storage" .Values.storage.userArea "readOnly" false "mountPath" .Values.config.userAreaRoot) }}
{{- if .Values.rucio.tokenSecret }}
- name: rucio-token
  mountPath: /var/run/secrets/rucio
  readOnly: true
{{- end }}
{{- if eq .Values.config.ownership "map" }}
- name: ownership-map
  mountPath: {{ include "stager.ownershipMapDir" . }}
  readOnly: true
{{- end }}
{{- if and (eq .Values.config.ownership "passwd") .Values.ownership.passwdFromHost }}
- name: host-passwd
  mountPath: /etc/passwd
  readOnly: true
- name: host-group
  mountPath: /etc/group
  readOnly: true
{{- end }}
{{- end -}}
