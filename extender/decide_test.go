package extender

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

// decide runs the request path without HTTP: gather from the store, then filter and score.
func decide(s *Store, pod *corev1.Pod, names []string) (FilterResult, extenderv1.HostPriorityList, []Breakdown) {
	role := RoleOf(pod)
	nodes := make([]*NodeInfo, len(names))
	counts := make([]int32, len(names))
	st := s.Gather(pod, role, names, nodes, counts)
	fr := filter(names, nodes, &st, FilterResult{})
	explain := make([]Breakdown, len(names))
	return fr, score(names, nodes, &st, nil, explain), explain
}

func passedNames(names []string, r FilterResult) []string {
	out := []string{}
	for _, i := range r.Passed {
		out = append(out, names[i])
	}
	return out
}

func keys(m extenderv1.FailedNodesMap) []string {
	return slices.Sorted(maps.Keys(m))
}

// bound is the usual server world: claim app/data (uid-1) with its SharedVolume, backing claim
// sw-uid-1 bound to PV backing.
func bound(pvMods []func(*corev1.PersistentVolume), svMod func(*swv1.SharedVolumeStatus), extra ...any) *Store {
	objs := []any{
		sharedVolume("data", claimUID, svMod),
		claim(sysNS, swv1.ObjectName(claimUID), "b-uid", "backing"),
		pv("backing", pvMods...),
	}
	return world(append(objs, extra...)...)
}

func TestFilterServer(t *testing.T) {
	for _, tc := range []struct {
		name         string
		store        *Store
		pod          *corev1.Pod
		names        []string
		passed       []string
		unresolvable []string
		failed       []string
		message      string // in every rejected node's message
	}{{
		name:   "replicated volume: every healthy node passes",
		store:  bound([]func(*corev1.PersistentVolume){dataNodes("b1,c1")}, nil),
		passed: allNodes,
	}, {
		name:         "local volume: only its node reaches it, the rest permanently",
		store:        bound([]func(*corev1.PersistentVolume){onHosts("b1")}, nil),
		passed:       []string{"b1"},
		unresolvable: []string{"a1", "a2", "b2", "c1"},
		message:      "cannot be reached",
	}, {
		name:         "zonal CSI volume: its zone only",
		store:        bound([]func(*corev1.PersistentVolume){csi, affinity(corev1.LabelTopologyZone, "zone-a")}, nil),
		passed:       []string{"a1", "a2"},
		unresolvable: []string{"b1", "b2", "c1"},
	}, {
		name: "fenced by label, by volume, NotReady, unreachable-tainted",
		store: bound(nil, func(s *swv1.SharedVolumeStatus) { s.FencedNodes = []string{"b2"} },
			node("a1", "zone-a", fencedLabel), node("a2", "zone-a", notReady), node("c1", "zone-c", unreachableTaint)),
		passed:       []string{"b1"},
		unresolvable: []string{"a1", "a2", "b2", "c1"},
	}, {
		name:   "node unknown to the cache: fails, resolvably",
		store:  bound(nil, nil),
		names:  []string{"a1", "zz"},
		passed: []string{"a1"},
		failed: []string{"zz"},
	}, {
		name:    "caches not synced: fail closed",
		store:   func() *Store { s := bound(nil, nil); s.SetSynced(false); return s }(),
		failed:  allNodes,
		message: "not synced",
	}, {
		name:    "SharedVolume missing: fail closed",
		store:   world(claim(sysNS, swv1.ObjectName(claimUID), "b", "backing"), pv("backing")),
		failed:  allNodes,
		message: "SharedVolume app/data not found",
	}, {
		name:    "SharedVolume of another claim with the same name: fail closed",
		store:   world(sharedVolume("data", "other-uid", nil), claim(sysNS, swv1.ObjectName(claimUID), "b", "backing"), pv("backing")),
		failed:  allNodes,
		message: "another claim",
	}, {
		name:    "backing claim missing: fail closed",
		store:   world(sharedVolume("data", claimUID, nil)),
		failed:  allNodes,
		message: "backing claim sharewarden-system/sw-uid-1 not found",
	}, {
		name:    "PV missing: fail closed",
		store:   world(sharedVolume("data", claimUID, nil), claim(sysNS, swv1.ObjectName(claimUID), "b", "backing")),
		failed:  allNodes,
		message: "PersistentVolume backing",
	}, {
		name:   "backing claim not bound yet: the scheduler's volume binding chooses",
		store:  world(sharedVolume("data", claimUID, nil), claim(sysNS, swv1.ObjectName(claimUID), "b", "")),
		passed: allNodes,
	}, {
		name:  "server pod without claim labels: fail closed",
		store: bound(nil, nil),
		pod: func() *corev1.Pod {
			p := serverPod(claimUID, "data", "")
			delete(p.Labels, swv1.LabelClaimName)
			return p
		}(),
		failed:  allNodes,
		message: "lacks",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			pod := tc.pod
			if pod == nil {
				pod = serverPod(claimUID, "data", "")
			}
			names := tc.names
			if names == nil {
				names = allNodes
			}
			r, _, _ := decide(tc.store, pod, names)
			if got := passedNames(names, r); !slices.Equal(got, orEmpty(tc.passed)) {
				t.Errorf("passed %v, want %v", got, tc.passed)
			}
			if got := keys(r.Unresolvable); !slices.Equal(got, orEmpty(tc.unresolvable)) {
				t.Errorf("unresolvable %v, want %v (%v)", got, tc.unresolvable, r.Unresolvable)
			}
			if got := keys(r.Failed); !slices.Equal(got, orEmpty(tc.failed)) {
				t.Errorf("failed %v, want %v (%v)", got, tc.failed, r.Failed)
			}
			for n, msg := range merge(r.Failed, r.Unresolvable) {
				if !strings.Contains(msg, tc.message) {
					t.Errorf("node %s: message %q lacks %q", n, msg, tc.message)
				}
			}
		})
	}
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func merge(a, b extenderv1.FailedNodesMap) map[string]string {
	out := map[string]string{}
	maps.Copy(out, a)
	maps.Copy(out, b)
	return out
}

func TestFilterConsumer(t *testing.T) {
	failingOver := func(phase swv1.Phase) func(*swv1.SharedVolumeStatus) {
		return func(s *swv1.SharedVolumeStatus) {
			s.Phase = phase
			s.Server.NodeName = "b1"
			s.LastFailover = &swv1.FailoverStatus{FromNode: "b1"}
		}
	}
	for _, tc := range []struct {
		name         string
		store        *Store
		pod          *corev1.Pod
		names        []string
		passed       []string
		unresolvable []string
	}{{
		name:   "healthy volume: every node",
		store:  world(sharedVolume("data", claimUID, nil), claim(appNS, "data", claimUID, "pvc-x")),
		passed: allNodes,
	}, {
		name: "fenced by label and by volume",
		store: world(sharedVolume("data", claimUID, func(s *swv1.SharedVolumeStatus) { s.FencedNodes = []string{"b2"} }),
			node("a1", "zone-a", fencedLabel)),
		passed:       []string{"a2", "b1", "c1"},
		unresolvable: []string{"a1", "b2"},
	}, {
		name:         "server failing over from b1",
		store:        world(sharedVolume("data", claimUID, failingOver(swv1.PhaseFailingOver))),
		passed:       []string{"a1", "a2", "b2", "c1"},
		unresolvable: []string{"b1"},
	}, {
		name:         "old server fenced, replacement starting",
		store:        world(sharedVolume("data", claimUID, failingOver(swv1.PhaseFenced))),
		passed:       []string{"a1", "a2", "b2", "c1"},
		unresolvable: []string{"b1"},
	}, {
		name:   "failover over: its source is a node like any other",
		store:  world(sharedVolume("data", claimUID, failingOver(swv1.PhaseReady))),
		passed: allNodes,
	}, {
		name: "the second of two volumes fails over",
		store: world(sharedVolume("data", claimUID, nil), sharedVolume("logs", "uid-2", func(s *swv1.SharedVolumeStatus) {
			s.Phase = swv1.PhaseFailingOver
			s.LastFailover = &swv1.FailoverStatus{FromNode: "c1"}
		})),
		pod:          consumerPod("web", "", "data", "logs"),
		passed:       []string{"a1", "a2", "b1", "b2"},
		unresolvable: []string{"c1"},
	}, {
		name: "caches not synced: fail open, even onto a fenced node",
		store: func() *Store {
			s := world(sharedVolume("data", claimUID, nil), node("a1", "zone-a", fencedLabel))
			s.SetSynced(false)
			return s
		}(),
		passed: allNodes,
	}, {
		name:         "no SharedVolume (yet): judged on node facts only",
		store:        world(node("a1", "zone-a", fencedLabel)),
		passed:       []string{"a2", "b1", "b2", "c1"},
		unresolvable: []string{"a1"},
	}, {
		name:   "unknown node: passes",
		store:  world(sharedVolume("data", claimUID, nil)),
		names:  []string{"zz", "a1"},
		passed: []string{"zz", "a1"},
	}, {
		name:         "SharedVolume of an older claim of the same name is ignored",
		store:        world(sharedVolume("data", "old", func(s *swv1.SharedVolumeStatus) { s.FencedNodes = []string{"a1"} }), claim(appNS, "data", claimUID, "")),
		passed:       allNodes,
		unresolvable: nil,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			pod := tc.pod
			if pod == nil {
				pod = consumerPod("web", "", "data")
			}
			names := tc.names
			if names == nil {
				names = allNodes
			}
			r, _, _ := decide(tc.store, pod, names)
			if got := passedNames(names, r); !slices.Equal(got, orEmpty(tc.passed)) {
				t.Errorf("passed %v, want %v", got, tc.passed)
			}
			if got := keys(r.Unresolvable); !slices.Equal(got, orEmpty(tc.unresolvable)) {
				t.Errorf("unresolvable %v, want %v", got, tc.unresolvable)
			}
			if len(r.Failed) > 0 {
				t.Errorf("consumers are never failed resolvably: %v", r.Failed)
			}
		})
	}
}

func TestFilterOtherPodPassesEverything(t *testing.T) {
	p := consumerPod("plain", "", "data")
	p.Spec.Containers[0].Resources = corev1.ResourceRequirements{}
	s := world(node("a1", "zone-a", fencedLabel))
	s.SetSynced(false)
	r, scores, _ := decide(s, p, allNodes)
	if got := passedNames(allNodes, r); !slices.Equal(got, allNodes) || len(r.Failed)+len(r.Unresolvable) > 0 {
		t.Errorf("passed %v failed %v unresolvable %v", got, r.Failed, r.Unresolvable)
	}
	for _, hp := range scores {
		if hp.Score != 0 {
			t.Errorf("%s scored %d", hp.Host, hp.Score)
		}
	}
}

func TestScoreServer(t *testing.T) {
	otherServers := func(nodes ...string) []any {
		var out []any
		for i, n := range nodes {
			out = append(out, serverPod("other-"+string(rune('a'+i)), "other", n))
		}
		return out
	}
	consumersIn := func(nodes ...string) []any {
		var out []any
		for i, n := range nodes {
			out = append(out, consumerPod("c"+string(rune('a'+i)), n, "data"))
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		store *Store
		want  map[string]int64
	}{{
		name:  "data nodes first (annotation), then spread: nothing runs yet",
		store: bound([]func(*corev1.PersistentVolume){dataNodes("b1, c1")}, nil),
		want:  map[string]int64{"a1": 3, "a2": 3, "b1": 9, "b2": 3, "c1": 9},
	}, {
		name:  "local volume: its host holds the data",
		store: bound([]func(*corev1.PersistentVolume){onHosts("b1")}, nil),
		want:  map[string]int64{"a1": 3, "a2": 3, "b1": 9, "b2": 3, "c1": 3},
	}, {
		name:  "CSI zonal volume: nodes of its segment are near the data",
		store: bound([]func(*corev1.PersistentVolume){csi, affinity(corev1.LabelTopologyZone, "zone-b")}, nil),
		want:  map[string]int64{"a1": 3, "a2": 3, "b1": 6, "b2": 6, "c1": 3},
	}, {
		name:  "spread: fewer servers score higher, relative to the least loaded node",
		store: bound(nil, nil, otherServers("a1", "a1", "a1", "a2", "a2", "b1", "b2", "c1")...),
		want:  map[string]int64{"a1": 1, "a2": 2, "b1": 3, "b2": 3, "c1": 3},
	}, {
		name:  "data outweighs spread",
		store: bound([]func(*corev1.PersistentVolume){dataNodes("a1")}, nil, otherServers("a1", "a1", "a1", "a1")...),
		want:  map[string]int64{"a1": 6, "a2": 3, "b1": 3, "b2": 3, "c1": 3},
	}, {
		name:  "consumers' zone breaks ties",
		store: bound(nil, nil, consumersIn("c1", "c1", "a2")...),
		want:  map[string]int64{"a1": 3, "a2": 3, "b1": 3, "b2": 3, "c1": 4},
	}, {
		name:  "one more server cancels the consumers' zone",
		store: bound(nil, nil, append(consumersIn("c1", "c1"), otherServers("c1")...)...),
		want:  map[string]int64{"a1": 3, "a2": 3, "b1": 3, "b2": 3, "c1": 3},
	}, {
		name:  "all together, clamped to 10",
		store: bound([]func(*corev1.PersistentVolume){dataNodes("c1")}, nil, consumersIn("c1")...),
		want:  map[string]int64{"a1": 3, "a2": 3, "b1": 3, "b2": 3, "c1": 10},
	}, {
		name: "not synced: no preference",
		store: func() *Store {
			s := bound([]func(*corev1.PersistentVolume){dataNodes("c1")}, nil)
			s.SetSynced(false)
			return s
		}(),
		want: map[string]int64{"a1": 0, "a2": 0, "b1": 0, "b2": 0, "c1": 0},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			_, scores, _ := decide(tc.store, serverPod(claimUID, "data", ""), allNodes)
			checkScores(t, scores, tc.want)
		})
	}
}

func TestScoreConsumer(t *testing.T) {
	onB1 := func(s *swv1.SharedVolumeStatus) { s.Server.NodeName = "b1" }
	for _, tc := range []struct {
		name  string
		store *Store
		pod   *corev1.Pod
		want  map[string]int64
	}{{
		name:  "server's node, then its zone",
		store: world(sharedVolume("data", claimUID, onB1)),
		want:  map[string]int64{"a1": 0, "a2": 0, "b1": 10, "b2": 9, "c1": 0},
	}, {
		name:  "the bound server pod wins over a stale status",
		store: world(sharedVolume("data", claimUID, onB1), serverPod(claimUID, "data", "a2")),
		want:  map[string]int64{"a1": 9, "a2": 10, "b1": 0, "b2": 0, "c1": 0},
	}, {
		name: "two volumes: the average",
		store: world(sharedVolume("data", claimUID, onB1), sharedVolume("logs", "uid-2", func(s *swv1.SharedVolumeStatus) {
			s.Server.NodeName = "a1"
		})),
		pod:  consumerPod("web", "", "data", "logs"),
		want: map[string]int64{"a1": 5, "a2": 4, "b1": 5, "b2": 4, "c1": 0},
	}, {
		name: "server being failed over: no preference for where it was",
		store: world(sharedVolume("data", claimUID, func(s *swv1.SharedVolumeStatus) {
			s.Phase, s.Server.NodeName, s.LastFailover = swv1.PhaseFailingOver, "b1", &swv1.FailoverStatus{FromNode: "b1"}
		})),
		want: map[string]int64{"a1": 0, "a2": 0, "b1": 0, "b2": 0, "c1": 0},
	}, {
		name:  "no server yet",
		store: world(sharedVolume("data", claimUID, nil)),
		want:  map[string]int64{"a1": 0, "a2": 0, "b1": 0, "b2": 0, "c1": 0},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			pod := tc.pod
			if pod == nil {
				pod = consumerPod("web", "", "data")
			}
			_, scores, _ := decide(tc.store, pod, allNodes)
			checkScores(t, scores, tc.want)
		})
	}
}

func checkScores(t *testing.T, scores extenderv1.HostPriorityList, want map[string]int64) {
	t.Helper()
	got := map[string]int64{}
	for _, hp := range scores {
		if hp.Score < extenderv1.MinExtenderPriority || hp.Score > extenderv1.MaxExtenderPriority {
			t.Errorf("%s: score %d out of range", hp.Host, hp.Score)
		}
		got[hp.Host] = hp.Score
	}
	if !maps.Equal(got, want) {
		t.Errorf("scores %v, want %v", got, want)
	}
}

func TestClamp(t *testing.T) {
	for in, want := range map[int64]int64{-3: 0, 0: 0, 7: 7, 10: 10, 11: 10, 1 << 40: 10} {
		if got := clamp(in); got != want {
			t.Errorf("clamp(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestRelative(t *testing.T) {
	for _, tc := range []struct {
		name   string
		scores map[string]int64
		want   map[string]int64
	}{
		{"empty", map[string]int64{}, map[string]int64{}},
		{"all equal: nothing", map[string]int64{"a": 9, "b": 9, "c": 9}, map[string]int64{}},
		{"all zero: nothing", map[string]int64{"a": 0, "b": 0}, map[string]int64{}},
		{"consumer with a server: its zone only", map[string]int64{"a": 0, "b": 10, "c": 9, "d": 0}, map[string]int64{"b": 10, "c": 9}},
		{"one zone: the server's node only", map[string]int64{"a": 9, "b": 10, "c": 9}, map[string]int64{"b": 1}},
		{"server: shifted by the lowest", map[string]int64{"a": 3, "b": 9, "c": 4}, map[string]int64{"b": 6, "c": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkScores(t, relative(hostPriorities(tc.scores)), tc.want)
		})
	}
}

// kube-scheduler picks the node with the highest plugin total + weight × 10 × extender score
// (a node missing from the answer: 0); relative scores must pick the same node as full ones.
func TestRelativeKeepsTheSchedulersChoice(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const weight = 5
	for i := range 2000 {
		n := 1 + rng.IntN(8)
		full := map[string]int64{}
		plugins := map[string]int64{}
		for j := range n {
			name := fmt.Sprintf("n%d", j)
			full[name] = rng.Int64N(extenderv1.MaxExtenderPriority + 1)
			plugins[name] = rng.Int64N(300) * 3 // distinct enough that totals seldom tie
		}
		best := func(ext map[string]int64) (string, bool) {
			var top string
			var topScore int64 = -1
			tie := false
			for name, p := range plugins {
				s := p + weight*10*ext[name]
				switch {
				case s > topScore:
					top, topScore, tie = name, s, false
				case s == topScore:
					tie = true
				}
			}
			return top, tie
		}
		rel := map[string]int64{}
		for _, hp := range relative(hostPriorities(full)) {
			rel[hp.Host] = hp.Score
		}
		want, tie := best(full)
		if tie {
			continue // a tie is broken at random: no one right answer
		}
		if got, _ := best(rel); got != want {
			t.Fatalf("case %d: full scores %v pick %s, relative %v pick %s (plugins %v)", i, full, want, rel, got, plugins)
		}
	}
}

func hostPriorities(m map[string]int64) extenderv1.HostPriorityList {
	l := extenderv1.HostPriorityList{}
	for _, name := range slices.Sorted(maps.Keys(m)) {
		l = append(l, extenderv1.HostPriority{Host: name, Score: m[name]})
	}
	return l
}
