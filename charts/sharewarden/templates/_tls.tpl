{{/*
The chart-generated TLS material (certManager.enabled=false): one CA, and serving certificates
for the webhook (called by the apiserver) and the extender (called by kube-scheduler). Generated
once per render and memoised, so that every template (Secrets, the webhook's CA bundle, the
scheduler's CA file) sees the same CA; kept across upgrades by reading the Secrets back.
Use: {{ $tls := include "sharewarden.tls" . | fromYaml }} -> ca, webhookCrt, webhookKey,
extenderCrt, extenderKey (base64).
*/}}
{{- define "sharewarden.tls" -}}
{{- if not (hasKey .Release "sharewardenTLS") -}}
{{- $tls := dict -}}
{{- $webhookSecret := include "sharewarden.webhookSecret" . -}}
{{- $extenderSecret := include "sharewarden.extenderSecret" . -}}
{{- $wh := lookup "v1" "Secret" .Release.Namespace $webhookSecret -}}
{{- $ex := lookup "v1" "Secret" .Release.Namespace $extenderSecret -}}
{{- if and $wh $wh.data $ex $ex.data (index $wh.data "ca.crt") (eq (index $wh.data "ca.crt") (index $ex.data "ca.crt")) -}}
{{- /* Keep what is installed: the running servers and the CA bundles stay in step. */ -}}
{{- $_ := set $tls "ca" (index $wh.data "ca.crt") -}}
{{- $_ := set $tls "webhookCrt" (index $wh.data "tls.crt") -}}
{{- $_ := set $tls "webhookKey" (index $wh.data "tls.key") -}}
{{- $_ := set $tls "extenderCrt" (index $ex.data "tls.crt") -}}
{{- $_ := set $tls "extenderKey" (index $ex.data "tls.key") -}}
{{- else -}}
{{- $days := int .Values.tls.validityDays -}}
{{- $ca := genCA (printf "%s-ca" (include "sharewarden.fullname" .)) $days -}}
{{- $whName := include "sharewarden.componentName" (dict "ctx" . "component" "webhook") -}}
{{- $whDNS := include "sharewarden.webhookDNS" . -}}
{{- $whCert := genSignedCert $whDNS nil (list $whDNS (printf "%s.cluster.local" $whDNS) (printf "%s.%s" $whName .Release.Namespace)) $days $ca -}}
{{- $exName := include "sharewarden.componentName" (dict "ctx" . "component" "extender") -}}
{{- $exDNS := include "sharewarden.extenderDNS" . -}}
{{- $exCert := genSignedCert $exDNS nil (list $exDNS (printf "%s.cluster.local" $exDNS) (printf "%s.%s" $exName .Release.Namespace)) $days $ca -}}
{{- $_ := set $tls "ca" ($ca.Cert | b64enc) -}}
{{- $_ := set $tls "webhookCrt" ($whCert.Cert | b64enc) -}}
{{- $_ := set $tls "webhookKey" ($whCert.Key | b64enc) -}}
{{- $_ := set $tls "extenderCrt" ($exCert.Cert | b64enc) -}}
{{- $_ := set $tls "extenderKey" ($exCert.Key | b64enc) -}}
{{- end -}}
{{- $_ := set .Release "sharewardenTLS" $tls -}}
{{- end -}}
{{- toYaml (get .Release "sharewardenTLS") -}}
{{- end -}}

{{/* A serving certificate Secret: (dict "ctx" $ "component" "webhook"). */}}
{{- define "sharewarden.tlsSecret" -}}
{{- $tls := include "sharewarden.tls" .ctx | fromYaml -}}
apiVersion: v1
kind: Secret
metadata:
  name: {{ include "sharewarden.componentName" . }}-tls
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "sharewarden.componentLabels" . | nindent 4 }}
type: kubernetes.io/tls
data:
  ca.crt: {{ $tls.ca }}
  tls.crt: {{ index $tls (printf "%sCrt" .component) }}
  tls.key: {{ index $tls (printf "%sKey" .component) }}
{{- end -}}

{{/* cert-manager Certificate for a component's Service: (dict "ctx" $ "component" "webhook" "dns" "<svc>.<ns>.svc"). */}}
{{- define "sharewarden.certificate" -}}
{{- $name := include "sharewarden.componentName" . -}}
{{- $issuer := .ctx.Values.certManager.issuerRef -}}
{{- if not $issuer.name -}}
{{- $issuer = dict "name" (printf "%s-ca" (include "sharewarden.fullname" .ctx)) "kind" "Issuer" "group" "cert-manager.io" -}}
{{- end -}}
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: {{ $name }}
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "sharewarden.componentLabels" . | nindent 4 }}
spec:
  secretName: {{ $name }}-tls
  duration: {{ .ctx.Values.certManager.duration }}
  renewBefore: {{ .ctx.Values.certManager.renewBefore }}
  dnsNames:
    - {{ .dns }}
    - {{ .dns }}.cluster.local
  privateKey:
    algorithm: ECDSA
    size: 256
    rotationPolicy: Always
  issuerRef:
    name: {{ $issuer.name }}
    kind: {{ $issuer.kind }}
    group: {{ $issuer.group }}
{{- end -}}
