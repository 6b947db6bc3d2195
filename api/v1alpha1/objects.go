package v1alpha1

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

// Provisioner is the provisioner name of the managed StorageClass.
const Provisioner = GroupName + "/nfs"

// Finalizer keeps a SharedVolume until the controller has removed or retained its objects.
const Finalizer = GroupName + "/cleanup"

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
