package extender

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

// Server counts and consumer zones follow pods as they come, move, finish and go.
func TestStoreFollowsPods(t *testing.T) {
	s := world(sharedVolume("data", claimUID, nil), claim(sysNS, swv1.ObjectName(claimUID), "b", ""))
	counts := func() []int32 {
		c := make([]int32, len(allNodes))
		s.Gather(serverPod(claimUID, "data", ""), RoleServer, allNodes, nil, c)
		return c
	}
	zone := func() string {
		st := s.Gather(serverPod(claimUID, "data", ""), RoleServer, nil, nil, nil)
		return st.Volumes[0].ConsumerZone
	}
	want := func(what string, got, want any) {
		t.Helper()
		if got != want {
			t.Errorf("%s: %v, want %v", what, got, want)
		}
	}

	s.UpsertPod(serverPod("x", "other", "a1"))
	s.UpsertPod(serverPod("y", "other", "a1"))
	s.UpsertPod(serverPod("z", "other", "")) // not bound: not counted
	want("a1 servers", counts()[0], int32(2))
	s.UpsertPod(serverPod("y", "other", "c1")) // rebound elsewhere (a new pod of that name)
	want("a1 servers after move", counts()[0], int32(1))
	want("c1 servers after move", counts()[4], int32(1))
	deleting := serverPod("x", "other", "a1")
	deleting.DeletionTimestamp = &metav1.Time{}
	s.UpsertPod(deleting) // a deleting server frees its node for the replacement
	want("a1 servers while deleting", counts()[0], int32(0))
	s.DeletePod(types.NamespacedName{Namespace: sysNS, Name: "sw-y"})
	want("c1 servers after delete", counts()[4], int32(0))

	want("no consumers", zone(), "")
	s.UpsertPod(consumerPod("c1", "b1", "data"))
	s.UpsertPod(consumerPod("c2", "b2", "data"))
	s.UpsertPod(consumerPod("c3", "a1", "data"))
	want("zone of most consumers", zone(), "zone-b")
	done := consumerPod("c1", "b1", "data")
	done.Status.Phase = corev1.PodSucceeded
	s.UpsertPod(done)
	want("tie broken by name", zone(), "zone-a")
	s.UpsertNode(node("a1", "zone-c")) // relabelled: cached zones are recomputed
	want("after relabel", zone(), "zone-b")
	s.DeleteNode("b2")
	want("consumer on a deleted node", zone(), "zone-c")
}
