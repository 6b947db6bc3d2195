{{/*
Conflicting options the schema cannot see. Each fails the install with what is wrong and the fix.
*/}}
{{- define "sharewarden.checks" -}}
{{- $v := .Values -}}
{{- if and (gt (int $v.controller.replicas) 1) (not $v.controller.leaderElect) -}}
{{- fail (printf "controller.replicas is %d but controller.leaderElect is false: the replicas would provision the same volumes at once; set controller.leaderElect=true or controller.replicas=1" (int $v.controller.replicas)) -}}
{{- end -}}
{{- if and $v.scheduler.enabled (not $v.extender.enabled) -}}
{{- fail "scheduler.enabled is true but extender.enabled is false: the second scheduler exists to call the extender; enable the extender or turn the second scheduler off" -}}
{{- end -}}
{{- if eq $v.scheduler.name "default-scheduler" -}}
{{- fail "scheduler.name is \"default-scheduler\": the second scheduler must not take the default scheduler's name; pick another (e.g. sharewarden-scheduler)" -}}
{{- end -}}
{{- if and $v.certManager.issuerRef.name (not $v.certManager.enabled) -}}
{{- fail (printf "certManager.issuerRef.name is %q but certManager.enabled is false: the chart would generate its own certificate and ignore the issuer; set certManager.enabled=true or clear the issuer" $v.certManager.issuerRef.name) -}}
{{- end -}}
{{- if and $v.storageClass.backingStorageClass (eq $v.storageClass.backingStorageClass $v.storageClass.name) -}}
{{- fail (printf "storageClass.backingStorageClass is %q, the managed class itself: name a ReadWriteOnce class to back the volumes" $v.storageClass.name) -}}
{{- end -}}
{{- range $c := list "controller" "webhook" "extender" "scheduler" -}}
{{- $cv := index $v $c -}}
{{- $on := or (eq $c "controller") (eq $c "webhook") (and (eq $c "extender") $v.extender.enabled) (and (eq $c "scheduler") $v.scheduler.enabled) -}}
{{- if and $on $cv.podDisruptionBudget.enabled (ge (int $cv.podDisruptionBudget.minAvailable) (int $cv.replicas)) -}}
{{- fail (printf "%s.podDisruptionBudget.minAvailable (%d) must be below %s.replicas (%d), or no node holding a %s pod could ever be drained; lower minAvailable, raise replicas or disable the budget" $c (int $cv.podDisruptionBudget.minAvailable) $c (int $cv.replicas) $c) -}}
{{- end -}}
{{- end -}}
{{- end -}}
