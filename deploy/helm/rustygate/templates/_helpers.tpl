{{/*
Names and labels.
*/}}
{{- define "rustygate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rustygate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "rustygate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rustygate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rustygate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rustygate.labels" -}}
helm.sh/chart: {{ include "rustygate.chart" . }}
{{ include "rustygate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "rustygate.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The Secret RUSTYGATE_ADMIN_TOKEN is read from: adminToken.existingSecret,
else the one the chart creates (secret.yaml), else none.
*/}}
{{- define "rustygate.adminSecretName" -}}
{{- if .Values.adminToken.existingSecret }}
{{- .Values.adminToken.existingSecret }}
{{- else if .Values.adminToken.value }}
{{- printf "%s-admin" (include "rustygate.fullname" .) }}
{{- end }}
{{- end }}

{{/*
"true" when the pods use the node's network: hostNetwork when it is a
boolean, else daemonset mode with the kernel datapath.
*/}}
{{- define "rustygate.hostNetwork" -}}
{{- if ne .Values.mode "daemonset" }}
{{- "false" }}
{{- else if kindIs "bool" .Values.hostNetwork }}
{{- ternary "true" "false" .Values.hostNetwork }}
{{- else }}
{{- ternary "true" "false" .Values.kernelDatapath.enabled }}
{{- end }}
{{- end }}

{{/*
The RustyGate configuration: .Values.config with the listeners, the admin
token and the datapath filled in from the chart's values where the
configuration leaves them unset.
*/}}
{{- define "rustygate.config" -}}
{{- if not (has .Values.mode (list "deployment" "daemonset")) }}
{{- fail (printf "mode must be deployment or daemonset (got %q)" .Values.mode) }}
{{- end }}
{{- $cfg := deepCopy (.Values.config | default dict) }}
{{- $server := get $cfg "server" | default dict }}
{{- if not (hasKey $server "listen") }}
{{- $_ := set $server "listen" (printf ":%d" (int .Values.ports.http)) }}
{{- end }}
{{- if or (hasKey $server "drain_delay") (hasKey $server "shutdown_timeout") }}
{{- fail "set drainDelaySeconds and shutdownTimeoutSeconds instead of config.server.drain_delay and config.server.shutdown_timeout: terminationGracePeriodSeconds is computed from them" }}
{{- end }}
{{- $_ := set $server "drain_delay" (printf "%ds" (int .Values.drainDelaySeconds)) }}
{{- $_ := set $server "shutdown_timeout" (printf "%ds" (int .Values.shutdownTimeoutSeconds)) }}
{{- $_ := set $cfg "server" $server }}
{{- $admin := get $cfg "admin" | default dict }}
{{- if not (hasKey $admin "listen") }}
{{- $_ := set $admin "listen" (printf "0.0.0.0:%d" (int .Values.ports.admin)) }}
{{- end }}
{{- if eq (toString (get $admin "listen")) "off" }}
{{- fail "config.admin.listen must not be off: the probes and the ServiceMonitor use the admin listener" }}
{{- end }}
{{- if not (or (hasKey $admin "token") (hasKey $admin "token_file")) }}
{{- $_ := set $admin "token" "${RUSTYGATE_ADMIN_TOKEN:-}" }}
{{- end }}
{{- $_ := set $cfg "admin" $admin }}
{{- $dp := get $cfg "datapath" | default dict }}
{{- if not (hasKey $dp "mode") }}
{{- $_ := set $dp "mode" (ternary "kernel" "userspace" .Values.kernelDatapath.enabled) }}
{{- end }}
{{- if and (eq (toString (get $dp "mode")) "kernel") (not .Values.kernelDatapath.enabled) }}
{{- fail "config.datapath.mode is kernel but kernelDatapath.enabled is false: the pod would have no capabilities and no bpffs to load the programs with" }}
{{- end }}
{{- if and .Values.kernelDatapath.enabled (eq .Values.mode "deployment") (not (hasKey $dp "bpffs")) }}
{{- $_ := set $dp "bpffs" "/sys/fs/bpf/rustygate-${POD_NAME}" }}
{{- end }}
{{- $_ := set $cfg "datapath" $dp }}
{{- if and .Values.cluster.enabled (not (hasKey $cfg "cluster")) }}
{{- $r := .Values.cluster.redis }}
{{- if not $r.addrs }}
{{- fail "cluster.enabled needs cluster.redis.addrs (host:port of Redis, of the sentinels or of Redis Cluster seed nodes)" }}
{{- end }}
{{- $redis := dict "mode" $r.mode "addrs" $r.addrs "timeout" $r.timeout }}
{{- with $r.masterName }}{{ $_ := set $redis "master_name" . }}{{ end }}
{{- with $r.username }}{{ $_ := set $redis "username" . }}{{ end }}
{{- if $r.existingSecret }}{{ $_ := set $redis "password" "${RUSTYGATE_REDIS_PASSWORD}" }}{{ end }}
{{- $_ := set $cfg "cluster" (dict "node_name" "${POD_NAME}" "key_prefix" .Values.cluster.keyPrefix "redis" $redis) }}
{{- end }}
{{- if .Values.kubernetes.enabled }}
{{- $providers := get $cfg "providers" | default dict }}
{{- $_ := set $providers "kubernetes" (dict "in_cluster" true "gateway_class" .Values.kubernetes.gatewayClass "ingress_class" .Values.kubernetes.ingressClass "namespaces" .Values.kubernetes.namespaces) }}
{{- $_ := set $cfg "providers" $providers }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
The pod's grace period: terminationGracePeriodSeconds, or the preStop
sleep, the drain delay and the shutdown timeout with 5 s to spare.
*/}}
{{- define "rustygate.gracePeriod" -}}
{{- $need := add (int .Values.preStopSleepSeconds) (int .Values.drainDelaySeconds) (int .Values.shutdownTimeoutSeconds) }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $need 5 }}
{{- else if lt (int .Values.terminationGracePeriodSeconds) $need }}
{{- fail (printf "terminationGracePeriodSeconds (%d) is shorter than preStopSleepSeconds + drainDelaySeconds + shutdownTimeoutSeconds (%d): requests in flight would be killed" (int .Values.terminationGracePeriodSeconds) $need) }}
{{- else }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/*
"true" when the chart creates a PodDisruptionBudget: podDisruptionBudget.enabled
when it is a boolean, else deployment mode with more than one replica.
*/}}
{{- define "rustygate.pdbEnabled" -}}
{{- $on := .Values.podDisruptionBudget.enabled }}
{{- if kindIs "bool" $on }}
{{- ternary "true" "false" $on }}
{{- else }}
{{- ternary "true" "false" (and (eq .Values.mode "deployment") (gt (int .Values.replicaCount) 1)) }}
{{- end }}
{{- end }}

{{/*
The pod template shared by the Deployment and the DaemonSet.
*/}}
{{- define "rustygate.podTemplate" -}}
{{- $kernel := .Values.kernelDatapath.enabled -}}
metadata:
  labels:
    {{- include "rustygate.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    kubectl.kubernetes.io/default-container: rustygate
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.kubernetes.enabled }}
  # The Kubernetes provider talks to the API server as this account.
  serviceAccountName: {{ include "rustygate.fullname" . }}
  automountServiceAccountToken: true
  {{- else }}
  automountServiceAccountToken: false
  {{- end }}
  {{- if eq (include "rustygate.hostNetwork" .) "true" }}
  hostNetwork: true
  dnsPolicy: ClusterFirstWithHostNet
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ include "rustygate.gracePeriod" . }}
  securityContext:
    {{- if $kernel }}
    # The kernel datapath: uid 0 with only the capabilities below (Kubernetes
    # gives a non-root user no ambient capabilities).
    runAsUser: 0
    runAsGroup: 0
    runAsNonRoot: false
    {{- else }}
    runAsUser: 65532
    runAsGroup: 65532
    runAsNonRoot: true
    {{- end }}
    seccompProfile:
      type: RuntimeDefault
  containers:
    - name: rustygate
      image: {{ include "rustygate.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: ["run", "-c", "/etc/rustygate/config.yaml"]
      env:
        - name: RUSTYGATE_CONFIG
          value: /etc/rustygate/config.yaml
        {{- with (include "rustygate.adminSecretName" .) }}
        - name: RUSTYGATE_ADMIN_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $.Values.adminToken.secretKey }}
        {{- end }}
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- if and .Values.cluster.enabled .Values.cluster.redis.existingSecret }}
        - name: RUSTYGATE_REDIS_PASSWORD
          valueFrom:
            secretKeyRef:
              name: {{ .Values.cluster.redis.existingSecret }}
              key: {{ .Values.cluster.redis.passwordKey }}
        {{- end }}
        - name: NODE_NAME
          valueFrom:
            fieldRef:
              fieldPath: spec.nodeName
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: http
          containerPort: {{ .Values.ports.http }}
          protocol: TCP
        - name: admin
          containerPort: {{ .Values.ports.admin }}
          protocol: TCP
        {{- with .Values.ports.extra }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      # /livez: the process runs. /readyz: it takes traffic; 503 while it
      # starts and from SIGTERM on, during the drain.
      livenessProbe:
        httpGet:
          path: /livez
          port: admin
        {{- toYaml .Values.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: admin
        {{- toYaml .Values.probes.readiness | nindent 8 }}
      {{- if .Values.preStopSleepSeconds }}
      lifecycle:
        preStop:
          sleep:
            seconds: {{ .Values.preStopSleepSeconds }}
      {{- end }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- if and $kernel (has "SYS_ADMIN" .Values.kernelDatapath.capabilities) }}
        # SYS_ADMIN (not in the default kernelDatapath.capabilities) cannot be
        # combined with allowPrivilegeEscalation: false.
        allowPrivilegeEscalation: true
        {{- else }}
        allowPrivilegeEscalation: false
        {{- end }}
        readOnlyRootFilesystem: true
        capabilities:
          drop:
            - ALL
          {{- if $kernel }}
          add:
            {{- toYaml .Values.kernelDatapath.capabilities | nindent 12 }}
          {{- end }}
      volumeMounts:
        # The whole directory, never a subPath: the kubelet updates a
        # ConfigMap volume by swapping a symlink, which the gateway's
        # directory watch turns into a reload (a subPath mount never changes).
        - name: config
          mountPath: /etc/rustygate
          readOnly: true
        {{- if $kernel }}
        # The node's bpffs, already mounted there: the gateway mounts
        # nothing, so it needs no SYS_ADMIN.
        - name: bpffs
          mountPath: /sys/fs/bpf
          mountPropagation: HostToContainer
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "rustygate.fullname" . }}
    {{- if $kernel }}
    - name: bpffs
      hostPath:
        path: {{ .Values.kernelDatapath.bpffsHostPath }}
        type: Directory
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
