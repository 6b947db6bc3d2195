package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// SharedVolume is ShareWarden's record of one RWX volume: which claim it serves, where its
// backing volume and NFS server are, and how its failovers went. The controller creates one per
// managed claim, in the claim's namespace and with the claim's name, so that a tenant sees its
// volumes next to its claims and an operator sees them all with `kubectl get sharedvolumes -A`.
// Only the controller writes it.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sv;svol,categories=sharewarden
// +kubebuilder:printcolumn:name="Claim",type=string,JSONPath=`.spec.claimName`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Server Node",type=string,JSONPath=`.status.server.nodeName`
// +kubebuilder:printcolumn:name="Service IP",type=string,JSONPath=`.status.serviceIP`,priority=1
// +kubebuilder:printcolumn:name="Consumers",type=integer,JSONPath=`.status.consumerCount`,priority=1
// +kubebuilder:printcolumn:name="Failovers",type=integer,JSONPath=`.status.failoverCount`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type SharedVolume struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   SharedVolumeSpec   `json:"spec,omitempty"`
	Status SharedVolumeStatus `json:"status,omitempty"`
}

// SharedVolumeSpec identifies the claim a SharedVolume serves. It is set once, at creation.
type SharedVolumeSpec struct {
	// ClaimName is the RWX claim's name (in the SharedVolume's namespace).
	ClaimName string `json:"claimName"`
	// ClaimUID is the RWX claim's UID; a new claim with the same name is another volume.
	ClaimUID string `json:"claimUID"`
	// BackingStorageClass is the ReadWriteOnce class the backing volume comes from.
	// +optional
	BackingStorageClass string `json:"backingStorageClass,omitempty"`
}

// Phase is a SharedVolume's place in its life.
// +kubebuilder:validation:Enum=Pending;Provisioning;Ready;FailingOver;Fenced;Deleting;Failed
type Phase string

// Phases of a SharedVolume.
const (
	// PhasePending: the claim was seen; nothing is created yet, or something it needs is missing.
	PhasePending Phase = "Pending"
	// PhaseProvisioning: the backing claim, server, Service or PV are being created or started.
	PhaseProvisioning Phase = "Provisioning"
	// PhaseReady: the server is Ready and the claim is Bound to the NFS PV.
	PhaseReady Phase = "Ready"
	// PhaseFailingOver: the server's lease expired; the old server is being fenced and replaced.
	PhaseFailingOver Phase = "FailingOver"
	// PhaseFenced: the old server is known stopped and its node fenced; the replacement is starting.
	PhaseFenced Phase = "Fenced"
	// PhaseDeleting: the claim is gone and the volume's objects are being removed or retained.
	PhaseDeleting Phase = "Deleting"
	// PhaseFailed: the volume cannot be provisioned as asked; a condition says why.
	PhaseFailed Phase = "Failed"
)

// Condition types.
const (
	// ConditionBackingBound is True once the backing RWO claim is Bound.
	ConditionBackingBound = "BackingClaimBound"
	// ConditionServerReady is True while the NFS server pod is Ready.
	ConditionServerReady = "ServerReady"
	// ConditionBound is True once the RWX claim is Bound to its NFS PV.
	ConditionBound = "ClaimBound"
	// ConditionReady sums them up: True when the volume serves.
	ConditionReady = "Ready"
	// ConditionDegraded is True while something the volume depends on is missing or being
	// deleted (its managed or backing class, its Service), though it may still serve: the
	// reason says what, the message what to do.
	ConditionDegraded = "Degraded"
)

// ClassSnapshot is the managed storage class as the controller last saw it. A volume keeps
// these settings (for a replacement server, say) while its class is missing.
type ClassSnapshot struct {
	// Name of the class.
	Name string `json:"name"`
	// Provisioner is the class's provisioner: CSIDriverName, or the legacy in-tree Provisioner.
	// +optional
	Provisioner string `json:"provisioner,omitempty"`
	// Parameters of the class.
	// +optional
	Parameters map[string]string `json:"parameters,omitempty"`
	// MountOptions of the class.
	// +optional
	MountOptions []string `json:"mountOptions,omitempty"`
	// ReclaimPolicy of the class.
	// +optional
	ReclaimPolicy string `json:"reclaimPolicy,omitempty"`
}

// ObjectRef names an object in a given namespace.
type ObjectRef struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// ServerStatus says where the volume's NFS server runs.
type ServerStatus struct {
	// Pod is the server pod.
	// +optional
	Pod *ObjectRef `json:"pod,omitempty"`
	// NodeName is the node the server pod is bound to.
	// +optional
	NodeName string `json:"nodeName,omitempty"`
	// Ready tells whether the server pod is Ready.
	Ready bool `json:"ready"`
}

// LeaseStatus is what the fencer last saw of the server's lease.
type LeaseStatus struct {
	// Holder is the identity (server pod) holding the lease.
	// +optional
	Holder string `json:"holder,omitempty"`
	// RenewTime is the holder's last renewal.
	// +optional
	RenewTime *metav1.MicroTime `json:"renewTime,omitempty"`
}

// FailoverStatus tells the story of one failover.
type FailoverStatus struct {
	// StartTime: when the server's lease was seen expired.
	StartTime metav1.Time `json:"startTime"`
	// FencedTime: when the old server was declared stopped and its node fenced.
	// +optional
	FencedTime *metav1.Time `json:"fencedTime,omitempty"`
	// EndTime: when the replacement server became Ready.
	// +optional
	EndTime *metav1.Time `json:"endTime,omitempty"`
	// Duration from StartTime to EndTime.
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`
	// FromNode is the node the failed server ran on; ToNode the replacement's.
	// +optional
	FromNode string `json:"fromNode,omitempty"`
	// +optional
	ToNode string `json:"toNode,omitempty"`
	// Reason in one CamelCase word (e.g. LeaseExpired, NodeUnreachable).
	// +optional
	Reason string `json:"reason,omitempty"`
}

// ClientAccess says which NFS clients a volume's server admits (docs/security.md).
type ClientAccess struct {
	// Allowlist is true when the server admits only Clients (the class's default); false when
	// it admits every client that reaches it (server.clientAllowlist: off).
	Allowlist bool `json:"allowlist"`
	// Clients are the addresses admitted: the InternalIPs of the nodes the volume's consumers are
	// scheduled on, fenced nodes left out. Empty while no consumer is scheduled.
	// +optional
	// +listType=atomic
	Clients []string `json:"clients,omitempty"`
}

// SharedVolumeStatus is the controller's view of the volume.
type SharedVolumeStatus struct {
	// ObservedGeneration is the generation this status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Phase summarises the volume's state.
	// +optional
	Phase Phase `json:"phase,omitempty"`
	// BackingClaim is the ReadWriteOnce claim holding the data.
	// +optional
	BackingClaim *ObjectRef `json:"backingClaim,omitempty"`
	// VolumeName is the NFS PV bound to the claim.
	// +optional
	VolumeName string `json:"volumeName,omitempty"`
	// Service is the stable Service clients mount; ServiceIP its ClusterIP.
	// +optional
	Service *ObjectRef `json:"service,omitempty"`
	// +optional
	ServiceIP string `json:"serviceIP,omitempty"`
	// Server says where the NFS server runs.
	// +optional
	Server ServerStatus `json:"server,omitempty"`
	// Lease is the server's lease as last seen: its holder at once, its renewal time refreshed
	// at most once a minute while the holder stays (the Lease object itself is exact).
	// +optional
	Lease *LeaseStatus `json:"lease,omitempty"`
	// ConsumerCount is the number of running pods that mount the claim.
	// +optional
	ConsumerCount int32 `json:"consumerCount"`
	// Access says which NFS clients the volume's server admits.
	// +optional
	Access *ClientAccess `json:"access,omitempty"`
	// FailoverCount counts completed and running failovers.
	// +optional
	FailoverCount int32 `json:"failoverCount"`
	// LastFailover tells the story of the latest failover.
	// +optional
	LastFailover *FailoverStatus `json:"lastFailover,omitempty"`
	// FencedNodes are nodes this volume's servers were fenced off and that are not unfenced yet.
	// +optional
	// +listType=set
	FencedNodes []string `json:"fencedNodes,omitempty"`
	// StorageClass is the managed class as last seen.
	// +optional
	StorageClass *ClassSnapshot `json:"storageClass,omitempty"`
	// Conditions: BackingClaimBound, ServerReady, ClaimBound, Ready, Degraded.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// SharedVolumeList is a list of SharedVolumes.
//
// +kubebuilder:object:root=true
type SharedVolumeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SharedVolume `json:"items"`
}
