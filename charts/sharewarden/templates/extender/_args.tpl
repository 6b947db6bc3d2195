{{/*
The extender's listening flags. PROVISIONAL until extender/ lands: its Options decide the names.
*/}}
{{- define "sharewarden.extenderArgs" -}}
- --listen-address=:{{ .Values.extender.port }}
- --health-probe-bind-address=:{{ .Values.extender.healthPort }}
{{- end -}}
