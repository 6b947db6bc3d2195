package extender

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

// Role is what a pod is to ShareWarden, read from the webhook's markers.
type Role uint8

// Roles.
const (
	// RoleOther: no marker; the extender answers with every node unchanged.
	RoleOther Role = iota
	// RoleServer: a volume's NFS server pod (ResourceServer).
	RoleServer
	// RoleConsumer: a pod mounting a ShareWarden volume (ResourceConsumer).
	RoleConsumer
)

// String is the role as metrics label it.
func (r Role) String() string {
	switch r {
	case RoleServer:
		return "server"
	case RoleConsumer:
		return "consumer"
	}
	return "other"
}

// RoleOf reads the marker the webhook put on pod. A marker in any container's requests or
// limits counts: kube-scheduler decides by the pod's total request whether the extender is
// interested, and so does this.
func RoleOf(pod *corev1.Pod) Role {
	if pod == nil {
		return RoleOther
	}
	role := RoleOther
	check := func(c *corev1.Container) {
		for _, l := range []corev1.ResourceList{c.Resources.Requests, c.Resources.Limits} {
			if _, ok := l[swv1.ResourceServer]; ok {
				role = RoleServer
				return
			}
			if _, ok := l[swv1.ResourceConsumer]; ok && role == RoleOther {
				role = RoleConsumer
			}
		}
	}
	for i := range pod.Spec.Containers {
		check(&pod.Spec.Containers[i])
	}
	for i := range pod.Spec.InitContainers {
		check(&pod.Spec.InitContainers[i])
	}
	return role
}

// NodeInfo is what the extender needs of a node, computed once per node change (or once per
// request for schedulers that send full Node objects). It is never modified after creation.
type NodeInfo struct {
	Name string
	Zone string
	// Ready: the node's Ready condition is True and it carries no unreachable/not-ready taint.
	Ready bool
	// Fenced: the node carries LabelNodeFenced=true (fenced for every volume).
	Fenced bool
	Labels map[string]string
}

// NewNodeInfo summarises node; zoneLabel names the label holding its zone.
func NewNodeInfo(node *corev1.Node, zoneLabel string) *NodeInfo {
	n := &NodeInfo{
		Name:   node.Name,
		Zone:   node.Labels[zoneLabel],
		Fenced: node.Labels[swv1.LabelNodeFenced] == swv1.FencedTrue,
		Labels: node.Labels,
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			n.Ready = c.Status == corev1.ConditionTrue
		}
	}
	for _, t := range node.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoExecute && (t.Key == corev1.TaintNodeUnreachable || t.Key == corev1.TaintNodeNotReady) {
			n.Ready = false
		}
	}
	return n
}

// Volume is what the extender knows of one ShareWarden volume a pod serves or mounts.
type Volume struct {
	// Claim is the RWX claim (and the SharedVolume's namespace/name).
	Claim types.NamespacedName
	Phase swv1.Phase
	// ServerNode is the node the volume's server pod is bound to; ServerZone its zone.
	ServerNode string
	ServerZone string
	// FencedNodes are the volume's own fenced nodes (status.fencedNodes).
	FencedNodes []string
	// FailoverFrom is the node the server is being failed over from, while the volume is
	// FailingOver or Fenced.
	FailoverFrom string

	// For server pods only.
	// Location is where the backing volume can be reached and where its data lives.
	Location *Location
	// ConsumerZone is the zone where most of the volume's running consumers are.
	ConsumerZone string
}

func (v *Volume) fenced(node string) bool {
	for _, f := range v.FencedNodes {
		if f == node {
			return true
		}
	}
	return false
}

// State is everything filter and score need to know beyond the pod and the nodes, gathered once
// per request.
type State struct {
	Role Role
	// Synced is false until the informer caches have synced.
	Synced bool
	// Volumes the pod serves (server) or mounts (consumer).
	Volumes []Volume
	// Missing, when set, says which object the decision needs is not in the cache (yet). A
	// server is then kept off every node; a consumer is judged on what is known.
	Missing string
	// ServerCounts[i] is the number of NFS server pods bound to the request's i-th node
	// (servers, prioritize only).
	ServerCounts []int32
}

// Decision reasons, as FailedNodes messages and metric labels.
const (
	ReasonFenced       = "fenced"
	ReasonNotReady     = "not-ready"
	ReasonUnreachable  = "volume-unreachable"
	ReasonFailover     = "failover-source"
	ReasonUnknownNode  = "unknown-node"
	ReasonNotSynced    = "not-synced"
	ReasonMissingFacts = "missing-object"
)
