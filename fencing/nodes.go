package fencing

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/report"
)

// IndexPodNode indexes pods by the node they are bound to.
const IndexPodNode = "spec.nodeName"

// NodeFencerConfig configures node-level fencing.
type NodeFencerConfig struct {
	// Settle is how long a node must be Ready again before it is unfenced.
	Settle time.Duration
	// EvictConsumers force-deletes pods mounting ShareWarden volumes on a node fenced as a
	// whole, so that their controllers start them elsewhere.
	EvictConsumers bool
	// OutOfService also applies node.kubernetes.io/out-of-service, so that Kubernetes' own
	// non-graceful node shutdown handling runs for every other pod on the node.
	OutOfService bool
}

// NodeFencer fences a node as a whole when a server was fenced off it and the node itself is
// not Ready (its own heartbeat is stale too), and unfences it once it has been Ready again for
// the settle period. Keyed by node.
type NodeFencer struct {
	Client   client.Client
	Recorder events.EventRecorder
	Config   NodeFencerConfig
	Metrics  *Metrics
	Now      func() time.Time
}

func (n *NodeFencer) now() time.Time {
	if n.Now != nil {
		return n.Now()
	}
	return time.Now()
}

// ReadySince returns whether the node is Ready and since when.
func ReadySince(node *corev1.Node) (bool, time.Time) {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue, c.LastTransitionTime.Time
		}
	}
	return false, time.Time{}
}

// Unfenceable tells whether a node fenced at fencedAt has been Ready for at least settle at
// now, counting from the later of its last Ready transition and the fencing. A node is often
// still Ready in the API for a while after it died (until the node lifecycle controller's grace
// period passes), so settle must exceed that grace period: the default 60 s does for the
// default 40 s.
func Unfenceable(node *corev1.Node, fencedAt, now time.Time, settle time.Duration) (bool, time.Duration) {
	ready, since := ReadySince(node)
	if !ready {
		return false, 0
	}
	if fencedAt.After(since) {
		since = fencedAt
	}
	if wait := settle - now.Sub(since); wait > 0 {
		return false, wait
	}
	return true, 0
}

// Reconcile implements reconcile.Reconciler for a node.
func (n *NodeFencer) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	node := &corev1.Node{}
	if err := n.Client.Get(ctx, req.NamespacedName, node); apierrors.IsNotFound(err) {
		return ctrl.Result{}, nil
	} else if err != nil {
		return ctrl.Result{}, fmt.Errorf("getting node: %w", err)
	}
	fenced := node.Labels[swv1.LabelNodeFenced] == swv1.FencedTrue
	ready, _ := ReadySince(node)
	if !fenced {
		if ready {
			return ctrl.Result{}, nil
		}
		svs, err := n.volumesFencedOff(ctx, node.Name)
		if err != nil || len(svs) == 0 {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, n.fenceNode(ctx, node, svs)
	}
	ok, wait := Unfenceable(node, time.Time{}, n.now(), n.Config.Settle)
	if !ok {
		if wait > 0 {
			return ctrl.Result{RequeueAfter: wait}, nil
		}
		return ctrl.Result{}, nil
	}
	patch := client.MergeFrom(node.DeepCopy())
	delete(node.Labels, swv1.LabelNodeFenced)
	node.Spec.Taints = slices.DeleteFunc(node.Spec.Taints, func(t corev1.Taint) bool { return t.Key == corev1.TaintNodeOutOfService })
	if err := n.Client.Patch(ctx, node, patch); err != nil {
		return ctrl.Result{}, fmt.Errorf("unfencing node: %w", err)
	}
	log.FromContext(ctx).Info("node unfenced", "node", node.Name)
	n.event(node, corev1.EventTypeNormal, ReasonUnfenced, "Unfence", fmt.Sprintf("node Ready for %s; ShareWarden servers and consumers may be placed here again", n.Config.Settle))
	return ctrl.Result{}, nil
}

// volumesFencedOff lists the SharedVolumes whose server was fenced off node.
func (n *NodeFencer) volumesFencedOff(ctx context.Context, node string) ([]swv1.SharedVolume, error) {
	list := &swv1.SharedVolumeList{}
	if err := n.Client.List(ctx, list); err != nil {
		return nil, fmt.Errorf("listing shared volumes: %w", err)
	}
	var out []swv1.SharedVolume
	for _, sv := range list.Items {
		if slices.Contains(sv.Status.FencedNodes, node) {
			out = append(out, sv)
		}
	}
	return out, nil
}

func (n *NodeFencer) fenceNode(ctx context.Context, node *corev1.Node, svs []swv1.SharedVolume) error {
	patch := client.MergeFrom(node.DeepCopy())
	if node.Labels == nil {
		node.Labels = map[string]string{}
	}
	node.Labels[swv1.LabelNodeFenced] = swv1.FencedTrue
	if n.Config.OutOfService && !slices.ContainsFunc(node.Spec.Taints, func(t corev1.Taint) bool { return t.Key == corev1.TaintNodeOutOfService }) {
		node.Spec.Taints = append(node.Spec.Taints, corev1.Taint{Key: corev1.TaintNodeOutOfService, Value: "nodeshutdown", Effect: corev1.TaintEffectNoExecute})
	}
	if err := n.Client.Patch(ctx, node, patch); err != nil {
		return fmt.Errorf("fencing node: %w", err)
	}
	n.Metrics.nodeFenced()
	log.FromContext(ctx).Info("node fenced", "node", node.Name, "volumes", len(svs))
	n.event(node, corev1.EventTypeWarning, ReasonNodeFenced, "Fence", fmt.Sprintf(
		"node is not Ready and %d ShareWarden server(s) were fenced off it; no ShareWarden server or consumer is placed here until it is Ready for %s", len(svs), n.Config.Settle))
	if !n.Config.EvictConsumers {
		return nil
	}
	return n.evictConsumers(ctx, node.Name, svs)
}

// evictConsumers force-deletes pods on node that mount one of the volumes.
func (n *NodeFencer) evictConsumers(ctx context.Context, node string, svs []swv1.SharedVolume) error {
	claims := map[string]bool{}
	for _, sv := range svs {
		claims[sv.Namespace+"/"+sv.Spec.ClaimName] = true
	}
	pods := &corev1.PodList{}
	if err := n.Client.List(ctx, pods, client.MatchingFields{IndexPodNode: node}); err != nil {
		return fmt.Errorf("listing pods on node: %w", err)
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		uses := slices.ContainsFunc(swv1.PodClaimNames(p), func(name string) bool { return claims[p.Namespace+"/"+name] })
		if !uses {
			continue
		}
		if err := n.Client.Delete(ctx, p, client.GracePeriodSeconds(0), client.Preconditions{UID: &p.UID}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("evicting consumer %s/%s: %w", p.Namespace, p.Name, err)
		}
		n.event(p, corev1.EventTypeWarning, ReasonEvicted, "Evict", fmt.Sprintf("node %s is fenced; the pod was removed so that it can start elsewhere", node))
	}
	return nil
}

func (n *NodeFencer) event(regarding client.Object, typ, reason, action, msg string) {
	report.Event(n.Recorder, regarding, typ, reason, action, msg)
}
