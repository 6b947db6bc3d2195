{{/*
ShareWarden's extender entry of a KubeSchedulerConfiguration, as deploy/scheduler/ ships it:
called only for pods carrying the webhook's markers (extended resources the scheduler itself
ignores), over HTTPS with the chart's CA, and ignorable, so an extender outage never blocks
scheduling. (dict "url" <urlPrefix> "caFile" <path>); test/e2e/chart checks the rendered second
scheduler's configuration against deploy/scheduler/second-scheduler-config.yaml.
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
    enableHTTPS: true
    tlsConfig:
      caFile: {{ .caFile }}
    managedResources:
      - name: sharewarden.io/rwx-consumer
        ignoredByScheduler: true
      - name: sharewarden.io/rwx-server
        ignoredByScheduler: true
{{- end -}}


{{/*
What a profile of the plugin build (scheduler.mode plugin) adds, as
deploy/scheduler/plugin-scheduler-config.yaml ships it: the ShareWarden plugin at the
extender's weight, and the webhook's markers ignored by NodeResourcesFit (what the extender's
managedResources do). (dict "zoneLabel" <label>)
*/}}
{{- define "sharewarden.schedulerPlugin" -}}
plugins:
  multiPoint:
    enabled:
      - name: ShareWarden
        weight: 5
pluginConfig:
  - name: NodeResourcesFit
    args:
      ignoredResources: [sharewarden.io/rwx-consumer, sharewarden.io/rwx-server]
  - name: ShareWarden
    args:
      zoneLabel: {{ .zoneLabel }}
{{- end -}}
