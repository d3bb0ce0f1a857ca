{{/*
skao-staging-lib.deployment renders the service's Deployment. Called as

  include "skao-staging-lib.deployment" (dict
      "ctx" .                                    # the service chart's root context
      "ports" (list (list "http" "httpAddr") (list "ops" "opsAddr"))
      "secretEnv" (include "gateway.secretEnv" .) # optional YAML env entries
      "overrides" (dict ...)                     # optional computed config keys
      "volumes" "..." "volumeMounts" "..."       # optional extra YAML list items
      "addCapabilities" (list "CHOWN" "FOWNER")  # optional
      "allowPrivilegeEscalation" false           # optional (file capabilities need true)
      "runAsRoot" false                          # optional
      "podAnnotations" (dict ...))               # optional
*/}}
{{- define "skao-staging-lib.deployment" -}}
{{- $root := .ctx -}}
{{- $v := $root.Values -}}
{{- $ports := include "skao-staging-lib.portList" . | fromJsonArray -}}
{{- $opsPort := "ops" -}}
{{- $caps := .addCapabilities | default list -}}
{{- $runAsRoot := .runAsRoot | default false -}}
{{- $natsCreds := include "skao-staging-lib.natsCredentials" $root | fromJson -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "skao-staging-lib.fullname" $root }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "skao-staging-lib.labels" $root | nindent 4 }}
spec:
  {{- if not $v.autoscaling.enabled }}
  replicas: {{ $v.replicaCount }}
  {{- end }}
  revisionHistoryLimit: {{ $v.revisionHistoryLimit | default 5 }}
  {{- with $v.strategy }}
  strategy:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "skao-staging-lib.selectorLabels" $root | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "skao-staging-lib.labels" $root | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- $annotations := merge (dict) (.podAnnotations | default dict) ($v.podAnnotations | default dict) }}
      {{- with $annotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "skao-staging-lib.serviceAccountName" $root }}
      automountServiceAccountToken: {{ $v.serviceAccount.automountToken | default false }}
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      securityContext:
        {{- if $runAsRoot }}
        runAsNonRoot: false
        runAsUser: 0
        runAsGroup: 0
        {{- else }}
        runAsNonRoot: true
        runAsUser: {{ $v.podSecurityContext.runAsUser }}
        runAsGroup: {{ $v.podSecurityContext.runAsGroup }}
        {{- end }}
        {{- with $v.podSecurityContext.fsGroup }}
        fsGroup: {{ . }}
        fsGroupChangePolicy: OnRootMismatch
        {{- end }}
        {{- with $v.podSecurityContext.supplementalGroups }}
        supplementalGroups:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: {{ $root.Chart.Name }}
          image: {{ include "skao-staging-lib.image" $root | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          {{- with $v.args }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          env:
            {{- include "skao-staging-lib.env" . | trim | nindent 12 }}
          {{- with $ports }}
          ports:
            {{- range . }}
            - name: {{ .name }}
              containerPort: {{ .port }}
              protocol: TCP
            {{- end }}
          {{- end }}
          {{- with $v.probes.startup }}
          startupProbe:
            httpGet:
              path: /healthz
              port: {{ $opsPort }}
            {{- toYaml . | nindent 12 }}
          {{- end }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: {{ $opsPort }}
            {{- toYaml $v.probes.liveness | nindent 12 }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: {{ $opsPort }}
            {{- toYaml $v.probes.readiness | nindent 12 }}
          {{- with $v.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          securityContext:
            {{- if $runAsRoot }}
            runAsNonRoot: false
            runAsUser: 0
            {{- else }}
            runAsNonRoot: true
            {{- end }}
            allowPrivilegeEscalation: {{ .allowPrivilegeEscalation | default false }}
            readOnlyRootFilesystem: true
            privileged: false
            capabilities:
              drop: ["ALL"]
              {{- with $caps }}
              add: {{ toJson . }}
              {{- end }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if $natsCreds.key }}
            - name: nats-credentials
              mountPath: {{ include "skao-staging-lib.natsCredentialsDir" $root }}
              readOnly: true
            {{- end }}
            {{- with (.volumeMounts | default "" | trim) }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- with $v.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: {{ $v.tmpSizeLimit | default "64Mi" }}
        {{- if $natsCreds.key }}
        - name: nats-credentials
          secret:
            secretName: {{ $v.nats.credentialsSecret }}
            items:
              - key: {{ $natsCreds.key }}
                path: {{ $natsCreds.key }}
            defaultMode: 0444
        {{- end }}
        {{- with (.volumes | default "" | trim) }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- with $v.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}
