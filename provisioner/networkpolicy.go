package provisioner

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

// NetworkPolicy builds the volume's NetworkPolicy, a second layer under the export's client
// allowlist for clusters whose CNI enforces policy: ingress to the server pod on TCP 2049 only
// from the allowlist's addresses (each a /32 or /128 ipBlock), and on the agent's health and
// metrics port from anywhere (kubelet probes, Prometheus; it serves no data). With no client
// the NFS rule is left out, which denies NFS to everyone: a rule without peers would admit all.
func NetworkPolicy(v Volume) *networkingv1.NetworkPolicy {
	ns, name := v.ServerKey()
	tcp := corev1.ProtocolTCP
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: v.Labels()},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{swv1.LabelVolume: v.uid(), swv1.LabelComponent: swv1.ComponentNFSServer}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: ptr.To(intstr.FromInt32(v.Server.HealthPort))}},
			}},
		},
	}
	var peers []networkingv1.NetworkPolicyPeer
	for _, c := range v.AllowedClients {
		a, err := netip.ParseAddr(c)
		if err != nil {
			continue
		}
		peers = append(peers, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: netip.PrefixFrom(a, a.BitLen()).String()}})
	}
	if len(peers) > 0 {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{
			From:  peers,
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: ptr.To(intstr.FromInt32(swv1.NFSPort))}},
		})
	}
	return np
}

// ensureNetworkPolicy keeps the volume's NetworkPolicy in step with its allowlist while the
// controller makes them (--network-policy) and the class's allowlist is on, and removes it
// otherwise: a policy left behind would hold NFS to a list nobody updates any more.
func (r *Reconciler) ensureNetworkPolicy(ctx context.Context, vol Volume) error {
	want := NetworkPolicy(vol)
	if !r.Config.NetworkPolicy || !vol.Params.ClientAllowlist {
		_, err := r.deleteOurs(ctx, &networkingv1.NetworkPolicy{ObjectMeta: want.ObjectMeta}, vol.uid())
		return err
	}
	got := &networkingv1.NetworkPolicy{}
	created, p, err := ensure(ctx, r, want, got, vol)
	if err != nil || created {
		return err
	}
	if p != nil {
		return fmt.Errorf("%s", p.Message) // someone else's policy of this name: retried, never adopted
	}
	if apiequality.Semantic.DeepEqual(got.Spec, want.Spec) {
		return nil
	}
	patch := client.MergeFrom(got.DeepCopy())
	got.Spec = want.Spec
	if err := r.Client.Patch(ctx, got, patch); err != nil {
		return fmt.Errorf("updating %s: %w", describe(got), err)
	}
	return nil
}
