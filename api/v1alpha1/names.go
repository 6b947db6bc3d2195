package v1alpha1

import corev1 "k8s.io/api/core/v1"

// GroupName is the API group and the prefix of every ShareWarden annotation, label and
// extended resource.
const GroupName = "sharewarden.io"

// Set by the operator on a StorageClass.
const (
	// AnnotationRWX on a StorageClass opts it in: ReadWriteMany and ReadOnlyMany claims on the
	// class are rewritten to the managed class. The only value understood is RWXModeNFS.
	AnnotationRWX = GroupName + "/rwx"
	// RWXModeNFS serves the claim's volume over NFS from a per-volume server.
	RWXModeNFS = "nfs"

	// DefaultManagedStorageClass is the storage class ShareWarden provisions (the webhook's
	// --managed-storage-class default).
	DefaultManagedStorageClass = "sharewarden-nfs"
	// ParameterBackingStorageClass, a parameter of the managed class, names the ReadWriteOnce
	// class that backs claims written directly against the managed class.
	ParameterBackingStorageClass = "backingStorageClass"
)

// AnnotationBackingStorageClass, on a claim, records the class a rewritten claim originally
// asked for: the backing ReadWriteOnce volume is provisioned from it. The webhook sets it.
const AnnotationBackingStorageClass = GroupName + "/backing-storage-class"

// Annotations on the NFS PV the controller binds to an RWX claim, naming what serves it. Nothing
// reads them back: they tell an operator looking at the PV where its data and server are.
const (
	// AnnotationBackingClaim names the volume's backing ReadWriteOnce claim (namespace/name).
	AnnotationBackingClaim = GroupName + "/backing-claim"
	// AnnotationServer names the volume's NFS server (namespace/name of its Service).
	AnnotationServer = GroupName + "/server"
)

// SystemAnnotations returns the annotations only ShareWarden's own components write. The
// webhook refuses them on claims from anyone else, so that no claim carries a name of another
// volume's backing claim or server that ShareWarden did not give it.
func SystemAnnotations() []string {
	return []string{AnnotationBackingClaim, AnnotationServer}
}

// Labels.
const (
	// LabelComponent names the ShareWarden component a pod belongs to.
	LabelComponent = GroupName + "/component"
	// ComponentNFSServer is LabelComponent's value on the per-volume NFS server pods the
	// provisioner creates (in ShareWarden's own namespace).
	ComponentNFSServer = "nfs-server"
	// LabelIgnore, set to "true" on a namespace or an object, keeps the webhook away from it.
	LabelIgnore = GroupName + "/ignore"
)

// Extended resources the webhook puts on pods, declared in the scheduler configuration as
// managedResources with ignoredByScheduler: true, so that only these pods reach the extender.
const (
	// ResourceConsumer marks a pod that mounts a ShareWarden volume.
	ResourceConsumer corev1.ResourceName = GroupName + "/rwx-consumer"
	// ResourceServer marks a per-volume NFS server pod.
	ResourceServer corev1.ResourceName = GroupName + "/rwx-server"
)

// DefaultSystemNamespace is where ShareWarden's components and NFS servers run.
const DefaultSystemNamespace = "sharewarden-system"

// Labels of the per-volume Prometheus series, the same on the NFS server agent's and the
// controller's, so that a volume's server, I/O and fullness join with its sharewarden_volume_*
// series on them.
const (
	MetricLabelVolume         = "volume"
	MetricLabelClaimNamespace = "claim_namespace"
	MetricLabelClaimName      = "claim_name"
)
