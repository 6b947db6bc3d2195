{{/*
Names, labels and the pieces every component shares. Components pass (dict "ctx" $ "component" "<name>").
*/}}

{{/* Prefix of every object's name: "sharewarden" unless overridden. */}}
{{- define "sharewarden.fullname" -}}
{{- default "sharewarden" .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Name of a component's objects (Deployment, Service, ServiceAccount...): <fullname>-<component>. */}}
{{- define "sharewarden.componentName" -}}
{{- printf "%s-%s" (include "sharewarden.fullname" .ctx) .component -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "sharewarden.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: sharewarden
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sharewarden
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels on a component's objects. */}}
{{- define "sharewarden.componentLabels" -}}
{{ include "sharewarden.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Selector of a component's pods: stable across upgrades (no version). */}}
{{- define "sharewarden.selectorLabels" -}}
app.kubernetes.io/name: sharewarden
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The sharewarden image. */}}
{{- define "sharewarden.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The NFS server image. */}}
{{- define "sharewarden.nfsServerImage" -}}
{{- printf "%s:%s" .Values.nfsServer.image.repository (default .Chart.AppVersion .Values.nfsServer.image.tag) -}}
{{- end -}}

{{/* ServiceAccount usernames, as the apiserver reports them to the webhook. */}}
{{- define "sharewarden.serviceAccountUser" -}}
{{- printf "system:serviceaccount:%s:%s" .ctx.Release.Namespace (include "sharewarden.componentName" .) -}}
{{- end -}}

{{/* The webhook's serving certificate Secret and its DNS name. */}}
{{- define "sharewarden.webhookSecret" -}}
{{- printf "%s-tls" (include "sharewarden.componentName" (dict "ctx" . "component" "webhook")) -}}
{{- end -}}
{{- define "sharewarden.webhookDNS" -}}
{{- printf "%s.%s.svc" (include "sharewarden.componentName" (dict "ctx" . "component" "webhook")) .Release.Namespace -}}
{{- end -}}

{{/* The extender's serving certificate Secret, DNS name, and URL as the scheduler calls it. */}}
{{- define "sharewarden.extenderSecret" -}}
{{- printf "%s-tls" (include "sharewarden.componentName" (dict "ctx" . "component" "extender")) -}}
{{- end -}}
{{- define "sharewarden.extenderDNS" -}}
{{- printf "%s.%s.svc" (include "sharewarden.componentName" (dict "ctx" . "component" "extender")) .Release.Namespace -}}
{{- end -}}
{{- define "sharewarden.extenderURL" -}}
{{- printf "https://%s:%d%s" (include "sharewarden.extenderDNS" .) (int .Values.extender.port) .Values.extender.urlPrefix -}}
{{- end -}}

{{/*
Pod-level security context of ShareWarden's own pods: non-root (distroless nonroot, uid 65532),
RuntimeDefault seccomp.
*/}}
{{- define "sharewarden.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security context: nothing to escalate, nothing to write, no capabilities. */}}
{{- define "sharewarden.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Scheduling of a component's pods: (dict "ctx" $ "component" "controller" "values" .Values.controller). */}}
{{- define "sharewarden.podScheduling" -}}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
affinity:
{{- if .values.affinity }}
  {{- toYaml .values.affinity | nindent 2 }}
{{- else }}
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "sharewarden.selectorLabels" . | nindent 14 }}
{{- end }}
{{- end -}}

{{/* A component's PodDisruptionBudget: (dict "ctx" $ "component" "controller" "values" .Values.controller). */}}
{{- define "sharewarden.pdb" -}}
{{- if .values.podDisruptionBudget.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "sharewarden.componentName" . }}
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "sharewarden.componentLabels" . | nindent 4 }}
spec:
  minAvailable: {{ .values.podDisruptionBudget.minAvailable }}
  selector:
    matchLabels:
      {{- include "sharewarden.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}

{{/* A component's ServiceAccount. */}}
{{- define "sharewarden.serviceAccount" -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "sharewarden.componentName" . }}
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "sharewarden.componentLabels" . | nindent 4 }}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* An image from a values block {repository, tag, pullPolicy}; an empty tag is the chart's appVersion. */}}
{{- define "sharewarden.imageOf" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/*
The CSI driver's name (csidriver.DriverName), the unix socket its services listen on inside a
pod, and the node plugin's socket directory on the host (kubelet finds the driver there).
*/}}
{{- define "sharewarden.csiDriverName" -}}nfs.sharewarden.io{{- end -}}
{{- define "sharewarden.csiSocketDir" -}}/csi{{- end -}}
{{- define "sharewarden.csiEndpoint" -}}unix:///csi/csi.sock{{- end -}}
{{- define "sharewarden.csiPluginDir" -}}
{{- printf "%s/plugins/%s" (trimSuffix "/" .Values.csi.kubeletDir) (include "sharewarden.csiDriverName" .) -}}
{{- end -}}

{{/* Whether the CSI snapshot parts (sidecar, RBAC, VolumeSnapshotClass) are on. */}}
{{- define "sharewarden.csiSnapshots" -}}
{{- if and .Values.csi.enabled .Values.csi.snapshots.enabled }}true{{ end -}}
{{- end -}}

{{/*
The managed class's provisioner: nfs.sharewarden.io (storageClass.provisioner=csi) or the
legacy sharewarden.io/nfs. A StorageClass's provisioner is immutable, so a class that already
exists keeps the provisioner it was made with (an upgrade from a chart that made the legacy
class would otherwise fail); NOTES.txt says so and how to move.
*/}}
{{- define "sharewarden.classProvisioner" -}}
{{- $want := ternary (include "sharewarden.csiDriverName" .) "sharewarden.io/nfs" (eq .Values.storageClass.provisioner "csi") -}}
{{- $live := lookup "storage.k8s.io/v1" "StorageClass" "" .Values.storageClass.name -}}
{{- if and $live $live.provisioner (has $live.provisioner (list "sharewarden.io/nfs" (include "sharewarden.csiDriverName" .))) -}}
{{- $live.provisioner -}}
{{- else -}}
{{- $want -}}
{{- end -}}
{{- end -}}

{{/*
A CSI sidecar container in the controller pods: (dict "ctx" $ "name" "csi-provisioner" "values"
.Values.csi.controller.provisioner "args" (list ...)). It reaches the controller on the shared
socket, elects a leader as the controller does (one Lease per sidecar: each elects its own, so
the controller must serve CSI on every replica), and serves /metrics and, when electing,
/healthz/leader-election on its httpPort.
*/}}
{{- define "sharewarden.csiSidecar" -}}
{{- $v := .values -}}
{{- $elect := .ctx.Values.controller.leaderElect -}}
- name: {{ .name }}
  image: {{ printf "%s:%s" $v.image.repository $v.image.tag }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  args:
    - --csi-address={{ include "sharewarden.csiSocketDir" .ctx }}/csi.sock
    - --v={{ .ctx.Values.csi.sidecarVerbosity }}
    - --leader-election={{ $elect }}
    {{- if $elect }}
    - --leader-election-namespace={{ .ctx.Release.Namespace }}
    {{- end }}
    - --http-endpoint=:{{ $v.httpPort }}
    {{- range .args }}
    - {{ . }}
    {{- end }}
    {{- with $v.featureGates }}
    - --feature-gates={{ . }}
    {{- end }}
    {{- range $v.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  ports:
    - name: {{ .port }}
      containerPort: {{ $v.httpPort }}
      protocol: TCP
  livenessProbe:
    httpGet:
      path: {{ ternary "/healthz/leader-election" "/metrics" $elect }}
      port: {{ .port }}
    initialDelaySeconds: 10
    periodSeconds: 20
    timeoutSeconds: 10
    failureThreshold: 3
  readinessProbe:
    # The HTTP server starts once the sidecar has connected to the controller's CSI socket
    # and read its capabilities.
    httpGet:
      path: /metrics
      port: {{ .port }}
    periodSeconds: 10
  resources:
    {{- toYaml $v.resources | nindent 4 }}
  securityContext:
    {{- include "sharewarden.containerSecurityContext" .ctx | nindent 4 }}
  volumeMounts:
    - name: csi-socket
      mountPath: {{ include "sharewarden.csiSocketDir" .ctx }}
{{- end -}}
