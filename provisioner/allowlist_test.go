package provisioner

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

func TestAllowedClients(t *testing.T) {
	pod := func(node string, phase corev1.PodPhase) corev1.Pod {
		return corev1.Pod{Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{Phase: phase}}
	}
	node := func(name string, fenced bool, addrs ...corev1.NodeAddress) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}, Status: corev1.NodeStatus{Addresses: addrs}}
		if fenced {
			n.Labels[swv1.LabelNodeFenced] = swv1.FencedTrue
		}
		return n
	}
	internal := func(ip string) corev1.NodeAddress {
		return corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip}
	}
	nodes := map[string]*corev1.Node{
		"a":      node("a", false, internal("10.0.0.10"), corev1.NodeAddress{Type: corev1.NodeHostName, Address: "a"}, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.1"}),
		"b":      node("b", false, internal("10.0.0.9")),
		"dual":   node("dual", false, internal("fd00::5"), internal("10.0.0.5")),
		"fenced": node("fenced", true, internal("10.0.0.66")),
		"noaddr": node("noaddr", false),
		"junk":   node("junk", false, internal("not-an-ip"), internal("fe80::1%eth0"), internal("10.0.0.7")),
		"same":   node("same", false, internal("10.0.0.9")),
	}
	for _, tc := range []struct {
		name      string
		consumers []corev1.Pod
		fenced    []string
		want      []string
	}{
		{name: "no consumers: nobody", want: []string{}},
		{name: "pending, not scheduled: nobody", consumers: []corev1.Pod{pod("", corev1.PodPending)}, want: []string{}},
		{name: "scheduled but not running yet: kubelet mounts before the pod runs", consumers: []corev1.Pod{pod("a", corev1.PodPending)}, want: []string{"10.0.0.10"}},
		{name: "only InternalIPs", consumers: []corev1.Pod{pod("a", corev1.PodRunning)}, want: []string{"10.0.0.10"}},
		{name: "several nodes, sorted as addresses, once each", consumers: []corev1.Pod{
			pod("a", corev1.PodRunning), pod("b", corev1.PodRunning), pod("a", corev1.PodRunning), pod("same", corev1.PodRunning),
		}, want: []string{"10.0.0.9", "10.0.0.10"}},
		{name: "dual-stack node: both addresses", consumers: []corev1.Pod{pod("dual", corev1.PodRunning)}, want: []string{"10.0.0.5", "fd00::5"}},
		{name: "finished consumers hold no mount", consumers: []corev1.Pod{pod("a", corev1.PodSucceeded), pod("b", corev1.PodFailed)}, want: []string{}},
		{name: "node fenced as a whole: left out", consumers: []corev1.Pod{pod("fenced", corev1.PodRunning), pod("b", corev1.PodRunning)}, want: []string{"10.0.0.9"}},
		{name: "node fenced for this volume: left out", consumers: []corev1.Pod{pod("a", corev1.PodRunning), pod("b", corev1.PodRunning)}, fenced: []string{"a", ""}, want: []string{"10.0.0.9"}},
		{name: "unknown node or one without an address: left out", consumers: []corev1.Pod{pod("gone", corev1.PodRunning), pod("noaddr", corev1.PodRunning)}, want: []string{}},
		{name: "unparsable addresses skipped", consumers: []corev1.Pod{pod("junk", corev1.PodRunning)}, want: []string{"10.0.0.7"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := AllowedClients(tc.consumers, nodes, tc.fenced)
			if !slices.Equal(got, tc.want) {
				t.Errorf("AllowedClients = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestReconcileAllowlist: the reconciler puts the allowlist on the server pod and in the status,
// follows a second consumer and a fenced node, and keeps the NetworkPolicy in step with it.
func TestReconcileAllowlist(t *testing.T) {
	node := func(name, ip string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}}}
	}
	consumer := func(name, node string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: name},
			Spec: corev1.PodSpec{NodeName: node, Volumes: []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	}
	e := newEnv(t, node("n1", "10.0.0.1"), node("n2", "10.0.0.2"), consumer("app-1", "n1"))
	e.r.Config.NetworkPolicy = true
	ctx := context.Background()
	name := "sw-" + e.uid
	check := func(what string, want ...string) {
		t.Helper()
		e.reconcile()
		pod := &corev1.Pod{}
		if !e.get(pod, sysNS, name) {
			t.Fatalf("%s: no server pod", what)
		}
		if got := pod.Annotations[swv1.AnnotationAllowedClients]; got != strings.Join(want, ",") {
			t.Errorf("%s: server pod annotation %q, want %q", what, got, strings.Join(want, ","))
		}
		if !slices.Contains(pod.Spec.Containers[0].Args, "--client-allowlist") {
			t.Errorf("%s: server args %v lack --client-allowlist", what, pod.Spec.Containers[0].Args)
		}
		if a := e.sv().Status.Access; a == nil || !a.Allowlist || !slices.Equal(a.Clients, want) {
			t.Errorf("%s: status.access %+v, want clients %v", what, a, want)
		}
		np := &networkingv1.NetworkPolicy{}
		if !e.get(np, sysNS, name) {
			t.Fatalf("%s: no NetworkPolicy", what)
		}
		if !reflect.DeepEqual(np.Spec, NetworkPolicy(Volume{Claim: testVolume().Claim, Namespace: sysNS, Server: e.r.Config.Server, AllowedClients: want}).Spec) {
			t.Errorf("%s: NetworkPolicy spec %+v not the allowlist's", what, np.Spec)
		}
	}
	check("one consumer", "10.0.0.1")
	if err := e.c.Create(ctx, consumer("app-2", "n2")); err != nil {
		t.Fatal(err)
	}
	check("a second consumer on n2", "10.0.0.1", "10.0.0.2")
	n2 := &corev1.Node{}
	e.get(n2, "", "n2")
	n2.Labels = map[string]string{swv1.LabelNodeFenced: swv1.FencedTrue}
	if err := e.c.Update(ctx, n2); err != nil {
		t.Fatal(err)
	}
	check("n2 fenced", "10.0.0.1")
	e.r.Config.NetworkPolicy = false
	e.reconcile()
	if e.get(&networkingv1.NetworkPolicy{}, sysNS, name) {
		t.Error("NetworkPolicy kept after --network-policy was turned off")
	}
}
