{{/*
skao-staging-lib.networkpolicy: dict ctx, ports (as for the deployment).

Ingress: one rule per named port. .Values.networkPolicy.ingressFrom.<port>
is a list of NetworkPolicy peers allowed to reach that port; a port with no
entry (or null) is open to every peer, an empty list closes it.
Egress (optional): when .Values.networkPolicy.egress is a non-empty list of
rules, egress is restricted to them plus DNS.
*/}}
{{- define "skao-staging-lib.networkpolicy" -}}
{{- $root := .ctx -}}
{{- $np := $root.Values.networkPolicy -}}
{{- if $np.enabled -}}
{{- $ports := include "skao-staging-lib.portList" . | fromJsonArray -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "skao-staging-lib.fullname" $root }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "skao-staging-lib.labels" $root | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "skao-staging-lib.selectorLabels" $root | nindent 6 }}
  policyTypes:
    - Ingress
    {{- if $np.egress }}
    - Egress
    {{- end }}
  ingress:
    {{- range $ports }}
    {{- $from := get ($np.ingressFrom | default dict) .name }}
    {{- if or (kindIs "invalid" $from) (gt (len $from) 0) }}
    - ports:
        - port: {{ .name }}
          protocol: TCP
      {{- if not (kindIs "invalid" $from) }}
      from:
        {{- toYaml $from | nindent 8 }}
      {{- end }}
    {{- end }}
    {{- end }}
  {{- if $np.egress }}
  egress:
    - ports:
        - port: 53
          protocol: UDP
        - port: 53
          protocol: TCP
    {{- toYaml $np.egress | nindent 4 }}
  {{- end }}
{{- end -}}
{{- end -}}
