package provisioner

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestServerSpecHash(t *testing.T) {
	v := testVolume()
	base := ServerPod(v).Annotations[AnnotationServerSpecHash]
	if base == "" || base != serverSpecHash(ServerPod(v).Spec) {
		t.Fatalf("server pod hash annotation %q, want the hash of its spec", base)
	}
	for _, c := range []struct {
		name    string
		change  func(*Volume)
		differs bool
	}{
		{"same volume", func(*Volume) {}, false},
		{"fenced nodes to avoid", func(v *Volume) { v.AvoidNodes = []string{"n1"} }, false},
		{"pinned to a node", func(v *Volume) { v.PinNode = "n2" }, false},
		{"new image", func(v *Volume) { v.Server.Image = "img:2" }, true},
		{"new server argument", func(v *Volume) { v.Server.ExtraArgs = []string{"--grace=10s"} }, true},
		{"new pull policy", func(v *Volume) { v.Server.ImagePullPolicy = corev1.PullAlways }, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := testVolume()
			c.change(&w)
			got := ServerPod(w).Annotations[AnnotationServerSpecHash]
			if (got != base) != c.differs {
				t.Fatalf("hash %s, base %s: differs = %v, want %v", got, base, got != base, c.differs)
			}
		})
	}
}

func TestServerPodPinned(t *testing.T) {
	v := testVolume()
	v.AvoidNodes, v.PinNode = []string{"dead"}, "n2"
	a := ServerPod(v).Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		t.Fatal("a pinned server pod has no required node affinity")
	}
	terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 1 || len(terms[0].MatchExpressions) != 2 {
		t.Fatalf("terms %+v; want one term with both requirements (ANDed)", terms)
	}
	in := terms[0].MatchExpressions[1]
	if in.Key != corev1.LabelHostname || in.Operator != corev1.NodeSelectorOpIn || len(in.Values) != 1 || in.Values[0] != "n2" {
		t.Fatalf("pin requirement %+v; want kubernetes.io/hostname In [n2]", in)
	}
}

func TestRollDecision(t *testing.T) {
	const want = "new"
	pod := func(hash, node string, deleting bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AnnotationServerSpecHash: hash}}, Spec: corev1.PodSpec{NodeName: node}}
		if hash == "" {
			p.Annotations = nil
		}
		if deleting {
			p.DeletionTimestamp = &metav1.Time{Time: time.Unix(1, 0)}
		}
		return p
	}
	for _, c := range []struct {
		name          string
		pod           *corev1.Pod
		failingOver   bool
		othersRolling bool
		want          RollAction
	}{
		{"no pod", nil, false, false, RollNone},
		{"current", pod(want, "n1", false), false, false, RollNone},
		{"current while others roll", pod(want, "n1", false), false, true, RollNone},
		{"outdated", pod("old", "n1", false), false, false, RollDelete},
		{"made before hashes existed", pod("", "n1", false), false, false, RollDelete},
		{"outdated while another volume rolls", pod("old", "n1", false), false, true, RollWait},
		{"outdated, already terminating", pod("old", "n1", true), false, false, RollNone},
		{"outdated during a failover", pod("old", "n1", false), true, false, RollNone},
		{"outdated, never scheduled", pod("old", "", false), false, true, RollDelete},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := rollDecision(c.pod, want, c.failingOver, c.othersRolling); got != c.want {
				t.Fatalf("rollDecision = %s, want %s", got, c.want)
			}
		})
	}
}

func TestRollGate(t *testing.T) {
	var g rollGate
	t0 := time.Unix(1000, 0)
	if g.busy("a", t0) || g.pin("a") != "" {
		t.Fatal("a zero gate is busy or pins")
	}
	if !g.acquire("a", "n1", t0) {
		t.Fatal("a free gate refused")
	}
	if !g.busy("b", t0) || g.busy("a", t0) {
		t.Fatal("the holder's gate must be busy for others only")
	}
	if g.acquire("b", "n2", t0.Add(time.Minute)) {
		t.Fatal("a second volume took a held gate")
	}
	if !g.acquire("a", "n1", t0.Add(time.Second)) || g.pin("a") != "n1" || g.pin("b") != "" {
		t.Fatalf("holder pin %q, other %q; want n1 for the holder only", g.pin("a"), g.pin("b"))
	}
	if g.release("b") {
		t.Fatal("a non-holder released the gate")
	}
	if !g.release("a") || g.busy("b", t0) || g.pin("a") != "" {
		t.Fatal("the holder's release did not free the gate")
	}
	// A holder that never finishes (its volume deleted mid-roll) stops blocking others.
	g.acquire("a", "n1", t0)
	if g.busy("b", t0.Add(rollStale)) || !g.acquire("b", "n2", t0.Add(rollStale)) || g.pin("b") != "n2" {
		t.Fatal("a stale holder still blocks the next volume")
	}
}
