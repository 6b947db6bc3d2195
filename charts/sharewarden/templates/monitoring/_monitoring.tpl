{{/*
Monitoring: the alert rules and the dashboard are files of the chart (files/), so that tests read
them as they are; the rules' thresholds are __PLACEHOLDERS__ replaced from monitoring.rules.
*/}}

{{/* Labels of the monitoring objects: the chart's, plus monitoring.labels (what an operator selects by). */}}
{{- define "sharewarden.monitoringLabels" -}}
{{ include "sharewarden.labels" . }}
{{- with .Values.monitoring.labels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The alert rule groups, thresholds filled in. */}}
{{- define "sharewarden.alertRules" -}}
{{- $r := .Values.monitoring.rules -}}
{{- .Files.Get "files/prometheus-rules.yaml"
  | replace "__VOLUME_NOT_READY_FOR__" $r.volumeNotReadyFor
  | replace "__NODE_FENCED_FOR__" $r.nodeFencedFor
  | replace "__EXPORT_FULL_PERCENT__" (toString $r.exportFullPercent)
  | replace "__INODES_FULL_PERCENT__" (toString $r.inodesFullPercent)
  | replace "__LEASE_RENEW_FAILURES__" (toString $r.leaseRenewFailures) -}}
{{- end -}}

{{/* One PodMonitor endpoint: port, path /metrics, the chart's interval, and the pod's node as label "node". */}}
{{- define "sharewarden.podMetricsEndpoint" -}}
- port: {{ .port }}
  path: /metrics
  {{- with .ctx.Values.monitoring.podMonitors.interval }}
  interval: {{ . }}
  {{- end }}
  relabelings:
    - sourceLabels: [__meta_kubernetes_pod_node_name]
      targetLabel: node
  {{- with .extra }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}
