{{/*
The service's NATS credentials file, from .Values.nats.credentialsSecret:
mounted read-only in skao-staging-lib.natsCredentialsDir, its path set as
STAGING_NATS_CREDS_FILE (key credsKey, a .creds file) or
STAGING_NATS_NKEY_FILE (key nkeyKey, a user nkey seed). The binary reads
the file at start and refuses both variables at once, so the chart does too.
*/}}
{{- define "skao-staging-lib.natsCredentialsDir" -}}/etc/skao-staging/nats{{- end -}}

{{/* skao-staging-lib.natsCredentials: the config key the Secret sets and the Secret's key, as JSON ({} without a Secret); fails on values the binary would refuse. */}}
{{- define "skao-staging-lib.natsCredentials" -}}
{{- $n := .Values.nats -}}
{{- $c := .Values.config | default dict -}}
{{- if and $c.natsNkeyFile $c.natsCredsFile -}}
{{- fail "config.natsNkeyFile and config.natsCredsFile are both set: set one (STAGING_NATS_NKEY_FILE or STAGING_NATS_CREDS_FILE)" -}}
{{- end -}}
{{- if $n.credentialsSecret -}}
{{- if and $n.credsKey $n.nkeyKey -}}
{{- fail "nats.credentialsSecret: set nats.credsKey or nats.nkeyKey, not both" -}}
{{- end -}}
{{- if not (or $n.credsKey $n.nkeyKey) -}}
{{- fail "nats.credentialsSecret needs nats.credsKey (a .creds file) or nats.nkeyKey (a user nkey seed)" -}}
{{- end -}}
{{- if or $c.natsNkeyFile $c.natsCredsFile -}}
{{- fail "nats.credentialsSecret sets the NATS credentials file: leave config.natsNkeyFile and config.natsCredsFile empty" -}}
{{- end -}}
{{- if $n.credsKey -}}
{{- toJson (dict "config" "natsCredsFile" "key" $n.credsKey) -}}
{{- else -}}
{{- toJson (dict "config" "natsNkeyFile" "key" $n.nkeyKey) -}}
{{- end -}}
{{- else -}}
{{- if or $n.credsKey $n.nkeyKey -}}
{{- fail "nats.credsKey and nats.nkeyKey are keys of nats.credentialsSecret, which is not set" -}}
{{- end -}}
{{- toJson dict -}}
{{- end -}}
{{- end -}}
