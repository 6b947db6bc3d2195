{{/*
Conflicting options the schema cannot see. Each fails the install with what is wrong and the fix.
*/}}
{{- define "sharewarden.checks" -}}
{{- $v := .Values -}}
{{- if and (gt (int $v.controller.replicas) 1) (not $v.controller.leaderElect) -}}
{{- fail (printf "controller.replicas is %d but controller.leaderElect is false: the replicas would provision the same volumes at once; set controller.leaderElect=true or controller.replicas=1" (int $v.controller.replicas)) -}}
{{- end -}}
{{- if and $v.scheduler.enabled (eq $v.scheduler.mode "extender") (not $v.extender.enabled) -}}
{{- fail "scheduler.enabled is true with scheduler.mode extender but extender.enabled is false: that second scheduler exists to call the extender; enable the extender, set scheduler.mode=plugin, or turn the second scheduler off" -}}
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
{{- $provisioner := include "sharewarden.classProvisioner" . -}}
{{- if and $v.storageClass.create (eq $provisioner (include "sharewarden.csiDriverName" .)) (not $v.csi.enabled) -}}
{{- if eq $v.storageClass.provisioner "csi" -}}
{{- fail "storageClass.provisioner is csi but csi.enabled is false: nothing would provision the managed class's claims; set storageClass.provisioner=legacy or csi.enabled=true" -}}
{{- else -}}
{{- fail (printf "csi.enabled is false but StorageClass %s exists with the CSI provisioner %s (a class's provisioner cannot change): its volumes need the CSI driver; keep csi.enabled=true" $v.storageClass.name $provisioner) -}}
{{- end -}}
{{- end -}}
{{- if and $v.storageClass.create $v.storageClass.snapshotClass (ne $provisioner (include "sharewarden.csiDriverName" .)) -}}
{{- fail (printf "storageClass.snapshotClass is %q but the managed class's provisioner is the legacy %s, which takes no snapshots: clear storageClass.snapshotClass, or use the CSI class (docs/chart.md, Upgrading from the legacy provisioner)" $v.storageClass.snapshotClass $provisioner) -}}
{{- end -}}
{{- if $v.csi.enabled -}}
{{- $ports := dict (toString $v.controller.metricsPort) "controller.metricsPort" -}}
{{- $_ := set $ports (toString $v.controller.healthPort) "controller.healthPort" -}}
{{- $sidecars := list "provisioner" "resizer" -}}
{{- if $v.csi.snapshots.enabled }}{{ $sidecars = append $sidecars "snapshotter" }}{{ end -}}
{{- range $s := $sidecars -}}
{{- $port := toString (index $v.csi.controller $s).httpPort -}}
{{- if hasKey $ports $port -}}
{{- fail (printf "csi.controller.%s.httpPort is %s, as %s: the controller's containers share one network namespace; pick another port" $s $port (get $ports $port)) -}}
{{- end -}}
{{- $_ := set $ports $port (printf "csi.controller.%s.httpPort" $s) -}}
{{- end -}}
{{- if and $v.csi.node.livenessProbe.enabled (eq (int $v.csi.node.livenessProbe.port) (int $v.csi.node.registrar.healthPort)) -}}
{{- fail (printf "csi.node.livenessProbe.port and csi.node.registrar.healthPort are both %d: the node plugin pods use the host's network; pick two ports" (int $v.csi.node.registrar.healthPort)) -}}
{{- end -}}
{{- end -}}
{{- range $c := list "controller" "webhook" "extender" "scheduler" "snapshotController" -}}
{{- $cv := index $v $c -}}
{{- $on := or (eq $c "controller") (eq $c "webhook") (and (eq $c "extender") $v.extender.enabled) (and (eq $c "scheduler") $v.scheduler.enabled) (and (eq $c "snapshotController") $v.snapshotController.enabled) -}}
{{- if and $on $cv.podDisruptionBudget.enabled (ge (int $cv.podDisruptionBudget.minAvailable) (int $cv.replicas)) -}}
{{- fail (printf "%s.podDisruptionBudget.minAvailable (%d) must be below %s.replicas (%d), or no node holding a %s pod could ever be drained; lower minAvailable, raise replicas or disable the budget" $c (int $cv.podDisruptionBudget.minAvailable) $c (int $cv.replicas) $c) -}}
{{- end -}}
{{- end -}}
{{- end -}}
