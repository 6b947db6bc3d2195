package extender_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/test/cluster"
	"github.com/sharewarden/sharewarden/test/fixture"
)

// A server goes to a node holding its data: its backing volume attaches anywhere (no node
// affinity), only the data-nodes annotation says where the replicas are.
func TestServerLandsOnDataNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), caseTimeout)
	defer cancel()
	c := fixture.Client(t, plane)
	ns := namespace(t, ctx, "ext-data")
	for _, tc := range []struct{ name, dataNodes, want string }{
		{"one", "c1", "c1"},
		{"two", "a2", "a2"},
		{"three", "b3", "b3"},
	} {
		v := newVolume(t, ctx, c, ns, tc.name, tc.dataNodes, nil)
		if got := schedule(t, ctx, c, serverPod(t, v)); got != tc.want {
			t.Errorf("server of %s (data on %s) landed on %s", tc.name, tc.dataNodes, got)
		}
	}
}

// Servers of many volumes, none holding data anywhere in particular, spread over the nodes.
func TestServersSpreadOut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), caseTimeout)
	defer cancel()
	c := fixture.Client(t, plane)
	ns := namespace(t, ctx, "ext-spread")
	per := map[string]int{}
	for i := range 2 * len(nodes) {
		v := newVolume(t, ctx, c, ns, fmt.Sprintf("vol-%d", i), "", nil)
		per[schedule(t, ctx, c, serverPod(t, v))]++
	}
	// Servers of earlier cases are gone (each case waits for its namespace to go), so the
	// extender saw only these: each node gets exactly two.
	for _, n := range nodes {
		if per[n.Name] != 2 {
			t.Errorf("servers per node %v: want 2 on each", per)
			break
		}
	}
}

// Consumers stay off fenced nodes and off the node their server is failed over from, and go
// to their server's zone.
func TestConsumersAvoidFencedAndPreferServerZone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), caseTimeout)
	defer cancel()
	c := fixture.Client(t, plane)
	ns := namespace(t, ctx, "ext-consumers")
	claim := boundRWXClaim(t, ctx, c, ns, "data")
	// The server runs on b1; b2 is fenced for this volume.
	createSharedVolume(t, ctx, c, ns, "data", string(claim.UID), func(s *swv1.SharedVolumeStatus) {
		s.Server.NodeName = "b1"
		s.FencedNodes = []string{"b2"}
	})
	n := 0
	place := func() string {
		n++
		return schedule(t, ctx, c, consumerPod(t, ns, fmt.Sprintf("web-%d", n), claim))
	}
	probe := consumerPod(t, ns, "probe", claim)
	waitExtenderRefuses(t, ctx, probe, "b2")
	for range 3 {
		if got := place(); zoneOf(got) != "zone-b" || got == "b2" {
			t.Errorf("consumer on %s: want zone-b, never the fenced b2", got)
		}
	}

	// b1 fenced for every volume (node label): b3 is the only node of the server's zone left.
	setNodeLabel(t, ctx, c, "b1", swv1.LabelNodeFenced, swv1.FencedTrue)
	t.Cleanup(func() { setNodeLabel(t, context.Background(), c, "b1", swv1.LabelNodeFenced, "") })
	waitExtenderRefuses(t, ctx, probe, "b1")
	for range 2 {
		if got := place(); got != "b3" {
			t.Errorf("consumer on %s: want b3 (b1 fenced by label, b2 for the volume)", got)
		}
	}

	// The server is being failed over from b3: no node of zone-b is left.
	setStatus(t, ctx, c, ns, "data", func(s *swv1.SharedVolumeStatus) {
		s.Phase = swv1.PhaseFailingOver
		s.Server.NodeName = "b3"
		s.LastFailover = &swv1.FailoverStatus{StartTime: metav1.Now(), FromNode: "b3", Reason: "LeaseExpired"}
	})
	waitExtenderRefuses(t, ctx, probe, "b3")
	for range 2 {
		if got := place(); zoneOf(got) == "zone-b" {
			t.Errorf("consumer on %s: zone-b is fenced or failing over", got)
		}
	}
}

// Pods without markers are never sent to the extender: kube-scheduler only calls it for pods
// requesting its managedResources.
func TestUnmarkedPodsNeverReachExtender(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), caseTimeout)
	defer cancel()
	c := fixture.Client(t, plane)
	ns := namespace(t, ctx, "ext-plain")
	before := requests(t)
	for i := range 5 {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("plain-%d", i)},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}},
		}
		if node := schedule(t, ctx, c, pod); !slices.ContainsFunc(nodes, func(n cluster.NodeSpec) bool { return n.Name == node }) {
			t.Errorf("plain pod on unknown node %q", node)
		}
	}
	after := requests(t)
	if after["other"] != 0 || after["consumer"] != before["consumer"] || after["server"] != before["server"] {
		t.Errorf("extender requests before %v, after 5 plain pods %v: want unchanged and none of kind other", before, after)
	}

	// The counter is live: one marked pod is counted (filter and prioritize).
	claim := boundRWXClaim(t, ctx, c, ns, "data")
	createSharedVolume(t, ctx, c, ns, "data", string(claim.UID), nil)
	schedule(t, ctx, c, consumerPod(t, ns, "marked", claim))
	if got := requests(t); got["consumer"] < before["consumer"]+2 || got["other"] != 0 {
		t.Errorf("after one consumer pod: requests %v (before %v), want 2 more of kind consumer", got, before)
	}
}

// boundRWXClaim is an RWX claim on the managed class bound to an NFS PV, as the controller
// leaves it.
func boundRWXClaim(t *testing.T, ctx context.Context, c client.Client, ns, name string) *corev1.PersistentVolumeClaim {
	t.Helper()
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "nfs-" + ns + "-" + name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              swv1.DefaultManagedStorageClass,
			ClaimRef:                      &corev1.ObjectReference{Namespace: ns, Name: name},
			PersistentVolumeSource:        corev1.PersistentVolumeSource{NFS: &corev1.NFSVolumeSource{Server: "10.96.0.42", Path: "/export"}},
		},
	}
	if err := c.Create(ctx, pv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), pv) })
	claim := fixture.Claim(ns, name, func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeName = pv.Name })
	if err := c.Create(ctx, claim); err != nil {
		t.Fatal(err)
	}
	waitBound(t, ctx, c, ns, name)
	return claim
}
