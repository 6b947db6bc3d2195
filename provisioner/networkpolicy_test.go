package provisioner

import (
	"slices"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

func TestNetworkPolicy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		clients []string
		// wantNFSFrom are the ipBlocks admitted to 2049; nil: no NFS rule at all (nobody).
		wantNFSFrom []string
	}{
		{name: "no consumers: no NFS rule, so nobody (a rule without peers would admit everyone)"},
		{name: "one node", clients: []string{"10.0.0.1"}, wantNFSFrom: []string{"10.0.0.1/32"}},
		{name: "dual-stack", clients: []string{"10.0.0.1", "fd00::1"}, wantNFSFrom: []string{"10.0.0.1/32", "fd00::1/128"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := testVolume()
			v.AllowedClients = tc.clients
			np := NetworkPolicy(v)
			if np.Namespace != "sharewarden-system" || np.Name != swv1.ObjectName(string(v.Claim.UID)) || np.Labels[swv1.LabelClaimUID] != string(v.Claim.UID) {
				t.Errorf("metadata %+v", np.ObjectMeta)
			}
			if sel := np.Spec.PodSelector.MatchLabels; sel[swv1.LabelVolume] != string(v.Claim.UID) || sel[swv1.LabelComponent] != swv1.ComponentNFSServer {
				t.Errorf("selects %v, want the volume's server pod", sel)
			}
			if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
				t.Errorf("policy types %v", np.Spec.PolicyTypes)
			}
			var health, nfs []networkingv1.NetworkPolicyIngressRule
			for _, r := range np.Spec.Ingress {
				if len(r.Ports) != 1 {
					t.Fatalf("rule %+v: want one port", r)
				}
				switch r.Ports[0].Port.IntVal {
				case v.Server.HealthPort:
					health = append(health, r)
				case swv1.NFSPort:
					nfs = append(nfs, r)
				default:
					t.Errorf("unexpected port in %+v", r)
				}
			}
			if len(health) != 1 || len(health[0].From) != 0 {
				t.Errorf("health port rules %+v, want one from anywhere", health)
			}
			if tc.wantNFSFrom == nil {
				if len(nfs) != 0 {
					t.Errorf("NFS rules %+v, want none", nfs)
				}
				return
			}
			if len(nfs) != 1 {
				t.Fatalf("NFS rules %+v, want one", nfs)
			}
			var from []string
			for _, p := range nfs[0].From {
				if p.IPBlock == nil || p.PodSelector != nil || p.NamespaceSelector != nil {
					t.Fatalf("peer %+v: want an ipBlock only", p)
				}
				from = append(from, p.IPBlock.CIDR)
			}
			if !slices.Equal(from, tc.wantNFSFrom) {
				t.Errorf("NFS from %v, want %v", from, tc.wantNFSFrom)
			}
		})
	}
}
