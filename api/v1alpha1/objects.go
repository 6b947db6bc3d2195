package v1alpha1

import corev1 "k8s.io/api/core/v1"

// Labels the controller puts on every object it creates for a volume. The controller only ever
// wires a claim to objects whose LabelClaimUID it set itself.
const (
	// LabelVolume is the RWX claim's UID: it selects a volume's server pod for its Service.
	LabelVolume = GroupName + "/volume"
	// LabelClaimNamespace and LabelClaimName name the RWX claim an object serves.
	LabelClaimNamespace = GroupName + "/claim-namespace"
	LabelClaimName      = GroupName + "/claim-name"
	// LabelClaimUID is the RWX claim's UID.
	LabelClaimUID = GroupName + "/claim-uid"
	// LabelManagedBy is set to ManagedByController on everything the controller creates.
	LabelManagedBy      = "app.kubernetes.io/managed-by"
	ManagedByController = "sharewarden-controller"
)

// Provisioner is the provisioner name of a legacy managed StorageClass: ShareWarden binds its
// claims to in-tree NFS PVs itself. Volumes made so keep working as they are.
const Provisioner = GroupName + "/nfs"

// CSIDriverName is ShareWarden's CSI driver, the provisioner of the managed StorageClass:
// external-provisioner, external-resizer and csi-snapshotter call its controller service, and
// kubelet its node service, so that volumes get snapshots, clones, fsGroup and mount options.
const CSIDriverName = "nfs." + GroupName

// ParameterSnapshotClass, a parameter of the managed StorageClass or of a VolumeSnapshotClass of
// CSIDriverName, names the backing driver's VolumeSnapshotClass that snapshots the backing
// claims. Without it, the backing driver's default VolumeSnapshotClass is used.
const ParameterSnapshotClass = "snapshotClass"

// IsManagedProvisioner tells whether a StorageClass's provisioner is ShareWarden's (CSI or
// legacy).
func IsManagedProvisioner(p string) bool { return p == CSIDriverName || p == Provisioner }

// AnnotationStorageProvisioner and AnnotationBetaStorageProvisioner are Kubernetes' marks of
// the provisioner that is to provision a claim. kube-controller-manager's PV controller writes
// them on every claim of an external provisioner's class unless the claim already carries
// AnnotationStorageProvisioner with the class's provisioner; the webhook admits ShareWarden
// claims with both set, which spares that controller one claim update (and the sync and Event it
// triggers) per volume, through its client rate limiter.
const (
	AnnotationStorageProvisioner     = "volume.kubernetes.io/storage-provisioner"
	AnnotationBetaStorageProvisioner = "volume.beta.kubernetes.io/storage-provisioner"
)

// Finalizer keeps a SharedVolume until the controller has removed or retained its objects.
const Finalizer = GroupName + "/cleanup"

// FinalizerVolumeProtection keeps a volume's Service and backing claim while the volume lives,
// as kubernetes.io/pvc-protection keeps a claim in use: a mistaken `kubectl delete` leaves the
// object Terminating (and working) until the RWX claim itself is deleted, so the Service's
// ClusterIP, which every mount names, is never released under a live volume.
const FinalizerVolumeProtection = GroupName + "/volume-protection"

// AnnotationReclaimPolicy on a backing claim records the managed class's reclaim policy when
// the volume was made, for a claim deleted before its PV existed (afterwards the PV's own
// persistentVolumeReclaimPolicy rules). Without it, the data is retained.
const AnnotationReclaimPolicy = GroupName + "/reclaim-policy"

// ObjectName is the name of a volume's backing claim, server pod, Service and Lease, all in
// ShareWarden's namespace: derived from the RWX claim's UID, so stable across restarts and
// unique across namespaces.
func ObjectName(claimUID string) string { return "sw-" + claimUID }

// NFSPort is the only port a server exports (NFSv4 over TCP).
const NFSPort = 2049

// Fencing marks. A volume's fenced nodes are listed in its SharedVolume's status.fencedNodes;
// a node whose own heartbeat is stale as well is fenced for every volume with this label,
// which the scheduler extender reads (servers and consumers stay off it until unfenced).
const (
	LabelNodeFenced = GroupName + "/fenced"
	// FencedTrue is LabelNodeFenced's value on a fenced node.
	FencedTrue = "true"
)

// Annotations the Fencer writes on a server's Lease when it releases it from a stopped holder;
// the next holder clears them. The provisioner reads the node into status.fencedNodes.
const (
	// AnnotationFencedHolder is the holder identity fenced (podName_podUID).
	AnnotationFencedHolder = GroupName + "/fenced-holder"
	// AnnotationFencedNode is the node that holder ran on ("" when unknown).
	AnnotationFencedNode = GroupName + "/fenced-node"
	// AnnotationFencedAt is when the fencing began (RFC 3339).
	AnnotationFencedAt = GroupName + "/fenced-at"
)

// AnnotationAllowedClients, on a server pod started with the client allowlist on, lists
// comma-separated the addresses (its consumers' node InternalIPs) its export admits. The
// controller keeps it current; the agent watches it and reloads ganesha's exports when it
// changes. Empty admits nobody.
const AnnotationAllowedClients = GroupName + "/allowed-clients"

// PodClaimNames are the names of the claims a pod's volumes mount, all in the pod's namespace:
// each persistentVolumeClaim volume's claim, and each generic ephemeral volume's, which
// Kubernetes names <pod>-<volume>.
func PodClaimNames(pod *corev1.Pod) []string {
	var out []string
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil:
			out = append(out, v.PersistentVolumeClaim.ClaimName)
		case v.Ephemeral != nil:
			out = append(out, pod.Name+"-"+v.Name)
		}
	}
	return out
}
