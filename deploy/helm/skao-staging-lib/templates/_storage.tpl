{{/*
Storage volumes of the stager and the jupyter-bridge.

A storage entry (.Values.storage.source, .Values.storage.userArea) is:

  type: hostPath | nfs | pvc
  hostPath: {path: /mnt/storage_a, type: Directory}
  nfs:      {server: nfs.example.org, path: /export/storage_a}
  pvc:      {claimName: storage-a}       # e.g. a CephFS PVC (ReadOnlyMany / ReadWriteMany)
  subPath:  ""                           # optional sub-directory of the volume

It is mounted at the path its STAGING_* variable names (config.sourceRoot,
config.userAreaRoot), so the mount and the variable cannot disagree.
*/}}

{{/* skao-staging-lib.volume: one pod volume. dict: name, storage, readOnly */}}
{{- define "skao-staging-lib.volume" -}}
{{- $s := .storage -}}
- name: {{ .name }}
{{- if eq $s.type "hostPath" }}
  hostPath:
    path: {{ required (printf "storage %s: hostPath.path is required" .name) $s.hostPath.path }}
    type: {{ $s.hostPath.type | default "Directory" }}
{{- else if eq $s.type "nfs" }}
  nfs:
    server: {{ required (printf "storage %s: nfs.server is required" .name) $s.nfs.server }}
    path: {{ required (printf "storage %s: nfs.path is required" .name) $s.nfs.path }}
    readOnly: {{ .readOnly }}
{{- else if eq $s.type "pvc" }}
  persistentVolumeClaim:
    claimName: {{ required (printf "storage %s: pvc.claimName is required" .name) $s.pvc.claimName }}
    readOnly: {{ .readOnly }}
{{- else }}
{{- fail (printf "storage %s: type must be hostPath, nfs or pvc, not %q" .name (toString $s.type)) }}
{{- end }}
{{- end -}}

{{/* skao-staging-lib.volumeMount: dict: name, storage, readOnly, mountPath */}}
{{- define "skao-staging-lib.volumeMount" -}}
- name: {{ .name }}
  mountPath: {{ required (printf "storage %s: its root variable (config.sourceRoot / config.userAreaRoot) must be set" .name) .mountPath }}
  readOnly: {{ .readOnly }}
{{- with .storage.subPath }}
  subPath: {{ . }}
{{- end }}
{{- end -}}
