package provisioner

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

// AllowedClients is the client allowlist of a volume's server: the InternalIP addresses of the
// nodes its consumers are scheduled on (kubelet mounts an NFS volume from the node's own
// address), sorted, without duplicates. A consumer counts from the moment it is bound to a node
// (kubelet mounts before the pod runs) until it has finished (Succeeded or Failed: its
// containers are gone, and with them its open files) or its pod object is gone (kubelet lets a
// deleted pod go only once its volumes are unmounted). A node that is fenced, as a whole
// (sharewarden.io/fenced) or for this volume (fenced lists the volume's status.fencedNodes), is
// left out, so its clients are refused at once. nodes holds the nodes by name; a node not
// there is left out (no address is known for it).
func AllowedClients(consumers []corev1.Pod, nodes map[string]*corev1.Node, fenced []string) []string {
	var addrs []netip.Addr
	for _, name := range consumerNodes(consumers) {
		node := nodes[name]
		if node == nil || node.Labels[swv1.LabelNodeFenced] == swv1.FencedTrue || slices.Contains(fenced, name) {
			continue
		}
		for _, a := range node.Status.Addresses {
			if a.Type != corev1.NodeInternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Zone() == "" {
				addrs = append(addrs, ip.Unmap())
			}
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	addrs = slices.Compact(addrs)
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

// consumerNodes are the nodes that may have the volume mounted for consumers, sorted.
func consumerNodes(consumers []corev1.Pod) []string {
	var out []string
	for _, p := range consumers {
		if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		out = append(out, p.Spec.NodeName)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// allowedClients reads the consumers' nodes from the cache and computes the allowlist.
func (r *Reconciler) allowedClients(ctx context.Context, consumers []corev1.Pod, fenced []string) ([]string, error) {
	nodes := map[string]*corev1.Node{}
	for _, name := range consumerNodes(consumers) {
		node := &corev1.Node{}
		if err := r.Client.Get(ctx, client.ObjectKey{Name: name}, node); apierrors.IsNotFound(err) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("getting node %s: %w", name, err)
		}
		nodes[name] = node
	}
	return AllowedClients(consumers, nodes, fenced), nil
}

// syncAllowedClients brings the server pod's allowed-clients annotation to the current list;
// the agent watches it and reloads ganesha's exports.
func (r *Reconciler) syncAllowedClients(ctx context.Context, pod *corev1.Pod, vol Volume) error {
	if !vol.Params.ClientAllowlist || pod == nil || pod.ResourceVersion == "" || pod.DeletionTimestamp != nil {
		return nil
	}
	want := strings.Join(vol.AllowedClients, ",")
	if have, ok := pod.Annotations[swv1.AnnotationAllowedClients]; ok && have == want {
		return nil
	}
	patch := client.MergeFrom(pod.DeepCopy())
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[swv1.AnnotationAllowedClients] = want
	if err := r.Client.Patch(ctx, pod, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("updating the allowed clients of server pod %s: %w", pod.Name, err)
	}
	return nil
}
