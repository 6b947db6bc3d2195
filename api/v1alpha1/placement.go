package v1alpha1

// Placement hints the scheduler extender reads.
const (
	// AnnotationDataNodes on a backing volume's PV lists, comma-separated, the nodes that hold a
	// replica of its data (for storage that attaches anywhere but keeps replicas on a few nodes,
	// e.g. Longhorn or DRBD). The extender places the volume's NFS server on one of them when it
	// can. Set by the storage's operator or a storage-specific integration.
	AnnotationDataNodes = GroupName + "/data-nodes"
)
