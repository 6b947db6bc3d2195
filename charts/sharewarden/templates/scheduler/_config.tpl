{{/*
ShareWarden's part of a KubeSchedulerConfiguration: the extender, called only for pods carrying
the webhook's markers (extended resources the scheduler itself ignores), and ignorable, so an
extender outage never blocks scheduling. Shared by the second scheduler's ConfigMap and the
snippet in docs/chart.md (keep them in step). The URL is a parameter so tests can point it at a
local extender.
*/}}
{{- define "sharewarden.schedulerExtenders" -}}
extenders:
  - urlPrefix: {{ .url }}
    filterVerb: filter
    prioritizeVerb: prioritize
    weight: 5
    nodeCacheCapable: true
    httpTimeout: 2s
    ignorable: true
    managedResources:
      - name: sharewarden.io/rwx-consumer
        ignoredByScheduler: true
      - name: sharewarden.io/rwx-server
        ignoredByScheduler: true
{{- end -}}
