package plugin

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/extender"
)

// nodeInfo is the narrowest fwk.NodeInfo: the plugin reads only Node(). Any other method panics
// (the embedded interface is nil), which the tests would show.
type nodeInfo struct {
	fwk.NodeInfo
	node *corev1.Node
}

func (n nodeInfo) Node() *corev1.Node { return n.node }

// cycleState is the narrowest fwk.CycleState: Read and Write.
type cycleState struct {
	fwk.CycleState
	m map[fwk.StateKey]fwk.StateData
}

func newCycle() *cycleState { return &cycleState{m: map[fwk.StateKey]fwk.StateData{}} }

func (c *cycleState) Read(k fwk.StateKey) (fwk.StateData, error) {
	if d, ok := c.m[k]; ok {
		return d, nil
	}
	return nil, fwk.ErrNotFound
}

func (c *cycleState) Write(k fwk.StateKey, v fwk.StateData) { c.m[k] = v }

func mkNode(name, zone string, fenced bool) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelTopologyZone: zone}},
		Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
	}
	if fenced {
		n.Labels[swv1.LabelNodeFenced] = swv1.FencedTrue
	}
	return n
}

func withMarker(p *corev1.Pod, marker corev1.ResourceName) *corev1.Pod {
	p.Spec.Containers = []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{marker: resource.MustParse("1")},
	}}}
	return p
}

func consumer(claim string) *corev1.Pod {
	return withMarker(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "c-" + claim},
		Spec: corev1.PodSpec{Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
		}}}},
	}, swv1.ResourceConsumer)
}

// world: nodes a1, a2 in zone a, b1 in zone b, b2 fenced; volume "data" served from a1 and
// volume "fresh" with no server yet.
func world(t *testing.T, synced bool) *Plugin {
	t.Helper()
	s := extender.NewStore(corev1.LabelTopologyZone, extender.DefaultLocators())
	for _, n := range []*corev1.Node{mkNode("a1", "a", false), mkNode("a2", "a", false), mkNode("b1", "b", false), mkNode("b2", "b", true)} {
		s.UpsertNode(n)
	}
	s.UpsertSharedVolume(&swv1.SharedVolume{
		ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "data"},
		Spec:       swv1.SharedVolumeSpec{ClaimName: "data", ClaimUID: "u1"},
		Status:     swv1.SharedVolumeStatus{Phase: swv1.PhaseReady, Server: swv1.ServerStatus{NodeName: "a1"}},
	})
	s.UpsertSharedVolume(&swv1.SharedVolume{
		ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "fresh"},
		Spec:       swv1.SharedVolumeSpec{ClaimName: "fresh", ClaimUID: "u2"},
		Status:     swv1.SharedVolumeStatus{Phase: swv1.PhaseProvisioning},
	})
	s.SetSynced(synced)
	return NewPluginFor(s)
}

func infos(names ...string) []fwk.NodeInfo {
	zones := map[string]string{"a1": "a", "a2": "a", "b1": "b", "b2": "b"}
	out := make([]fwk.NodeInfo, len(names))
	for i, n := range names {
		out[i] = nodeInfo{node: mkNode(n, zones[n], n == "b2")}
	}
	return out
}

func TestPluginConsumer(t *testing.T) {
	p := world(t, true)
	ctx := context.Background()
	cs := newCycle()
	pod := consumer("data")
	if _, s := p.PreFilter(ctx, cs, pod, nil); !s.IsSuccess() {
		t.Fatalf("PreFilter: %v", s)
	}
	all := infos("a1", "a2", "b1", "b2")
	for _, ni := range all {
		s := p.Filter(ctx, cs, pod, ni)
		name := ni.Node().Name
		switch name {
		case "b2":
			if s.Code() != fwk.UnschedulableAndUnresolvable || !strings.Contains(s.Message(), "fenced") {
				t.Errorf("Filter(b2, fenced) = %v, want UnschedulableAndUnresolvable naming the fence", s)
			}
		default:
			if !s.IsSuccess() {
				t.Errorf("Filter(%s) = %v, want success", name, s)
			}
		}
	}
	passed := all[:3]
	if s := p.PreScore(ctx, cs, pod, passed); !s.IsSuccess() {
		t.Fatalf("PreScore: %v", s)
	}
	// The extender's 0..10 scaled to 0..100: its server's node, its server's zone, elsewhere.
	for name, want := range map[string]int64{"a1": 100, "a2": 90, "b1": 0} {
		got, s := p.Score(ctx, cs, pod, nodeInfo{node: mkNode(name, "", false)})
		if !s.IsSuccess() || got != want {
			t.Errorf("Score(%s) = %d, %v; want %d", name, got, s, want)
		}
	}
}

func TestPluginSkips(t *testing.T) {
	p := world(t, true)
	ctx := context.Background()
	plain := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "plain"}}
	cs := newCycle()
	if _, s := p.PreFilter(ctx, cs, plain, nil); !s.IsSkip() {
		t.Errorf("PreFilter(unmarked pod) = %v, want Skip", s)
	}
	if s := p.PreScore(ctx, cs, plain, infos("a1")); !s.IsSkip() {
		t.Errorf("PreScore(unmarked pod) = %v, want Skip", s)
	}
	// A consumer whose volume has no server yet: every node would score 0.
	cs = newCycle()
	fresh := consumer("fresh")
	if _, s := p.PreFilter(ctx, cs, fresh, nil); !s.IsSuccess() {
		t.Fatalf("PreFilter: %v", s)
	}
	if s := p.PreScore(ctx, cs, fresh, infos("a1", "b1")); !s.IsSkip() {
		t.Errorf("PreScore(consumer without a server) = %v, want Skip", s)
	}
	// Filter without PreFilter's state is an error, not a silent pass.
	if s := p.Filter(ctx, newCycle(), fresh, infos("a1")[0]); s.Code() != fwk.Error {
		t.Errorf("Filter without PreFilter = %v, want Error", s)
	}
}

// TestPluginServerWaitsForSync: before the informers have synced, a server passes no node and
// may pass later (Unschedulable, not Unresolvable), as on the extender.
func TestPluginServerWaitsForSync(t *testing.T) {
	p := world(t, false)
	ctx := context.Background()
	server := withMarker(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "sharewarden-system", Name: "sw-u1", Labels: map[string]string{
		swv1.LabelClaimNamespace: "app", swv1.LabelClaimName: "data", swv1.LabelClaimUID: "u1",
	}}}, swv1.ResourceServer)
	cs := newCycle()
	if _, s := p.PreFilter(ctx, cs, server, nil); !s.IsSuccess() {
		t.Fatalf("PreFilter: %v", s)
	}
	if s := p.Filter(ctx, cs, server, infos("a1")[0]); s.Code() != fwk.Unschedulable || !strings.Contains(s.Message(), "not synced") {
		t.Errorf("Filter(server, not synced) = %v, want Unschedulable, not synced", s)
	}
}

func TestParsePluginArgs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		obj     runtime.Object
		want    string
		wantErr string
	}{
		{name: "none", obj: nil, want: corev1.LabelTopologyZone},
		{name: "empty", obj: &runtime.Unknown{}, want: corev1.LabelTopologyZone},
		{name: "zone label", obj: &runtime.Unknown{Raw: []byte(`{"zoneLabel":"example.com/rack"}`)}, want: "example.com/rack"},
		{name: "bad label", obj: &runtime.Unknown{Raw: []byte(`{"zoneLabel":"a b"}`)}, wantErr: "zoneLabel"},
		{name: "not JSON", obj: &runtime.Unknown{Raw: []byte(`zoneLabel: x`)}, wantErr: "args"},
		{name: "unknown field", obj: &runtime.Unknown{Raw: []byte(`{"zone":"x"}`)}, wantErr: "unknown field"},
		{name: "typed object", obj: &corev1.Pod{}, wantErr: "want a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePluginArgs(tc.obj)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParsePluginArgs = %+v, %v; want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got.ZoneLabel != tc.want {
				t.Fatalf("ParsePluginArgs = %+v, %v; want zoneLabel %q", got, err, tc.want)
			}
		})
	}
}

func FuzzParsePluginArgs(f *testing.F) {
	f.Add([]byte(`{"zoneLabel":"topology.kubernetes.io/zone"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"zoneLabel":""}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		args, err := ParsePluginArgs(&runtime.Unknown{Raw: raw})
		if err == nil && args.ZoneLabel == "" {
			t.Fatalf("accepted %q with an empty zone label", raw)
		}
	})
}

// The shipped plugin configuration enables the plugin on both of the second scheduler's
// profiles, at the extender's weight, with the markers ignored by NodeResourcesFit and args the
// plugin accepts.
func TestShippedPluginConfig(t *testing.T) {
	read := func(name string) []byte {
		raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "scheduler", name))
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	type plugin struct {
		Name   string `json:"name"`
		Weight int    `json:"weight"`
	}
	var doc struct {
		Kind     string `json:"kind"`
		Profiles []struct {
			SchedulerName            string `json:"schedulerName"`
			PercentageOfNodesToScore *int32 `json:"percentageOfNodesToScore"`
			Plugins                  struct {
				MultiPoint struct {
					Enabled []plugin `json:"enabled"`
				} `json:"multiPoint"`
			} `json:"plugins"`
			PluginConfig []struct {
				Name string          `json:"name"`
				Args json.RawMessage `json:"args"`
			} `json:"pluginConfig"`
		} `json:"profiles"`
		Extenders []any `json:"extenders"`
	}
	if err := yaml.Unmarshal(read("plugin-scheduler-config.yaml"), &doc); err != nil {
		t.Fatal(err)
	}
	var second struct {
		Profiles []struct {
			SchedulerName            string `json:"schedulerName"`
			PercentageOfNodesToScore *int32 `json:"percentageOfNodesToScore"`
		} `json:"profiles"`
		Extenders []struct {
			Weight int `json:"weight"`
		} `json:"extenders"`
	}
	if err := yaml.Unmarshal(read("second-scheduler-config.yaml"), &second); err != nil {
		t.Fatal(err)
	}
	if doc.Kind != "KubeSchedulerConfiguration" || len(doc.Extenders) != 0 || len(doc.Profiles) != len(second.Profiles) {
		t.Fatalf("want the second scheduler's %d profiles and no extender: %+v", len(second.Profiles), doc)
	}
	for i, p := range doc.Profiles {
		if p.SchedulerName != second.Profiles[i].SchedulerName || ptr.Deref(p.PercentageOfNodesToScore, -1) != ptr.Deref(second.Profiles[i].PercentageOfNodesToScore, -1) {
			t.Errorf("profile %d: %s, want the second scheduler's %s with the same sample", i, p.SchedulerName, second.Profiles[i].SchedulerName)
		}
		if want := []plugin{{PluginName, second.Extenders[0].Weight}}; !slices.Equal(p.Plugins.MultiPoint.Enabled, want) {
			t.Errorf("profile %s enables %+v, want %+v (the extender's weight)", p.SchedulerName, p.Plugins.MultiPoint.Enabled, want)
		}
		var fit, own bool
		for _, c := range p.PluginConfig {
			switch c.Name {
			case "NodeResourcesFit":
				var args struct {
					IgnoredResources []string `json:"ignoredResources"`
				}
				if err := json.Unmarshal(c.Args, &args); err != nil {
					t.Fatal(err)
				}
				slices.Sort(args.IgnoredResources)
				fit = slices.Equal(args.IgnoredResources, []string{string(swv1.ResourceConsumer), string(swv1.ResourceServer)})
			case PluginName:
				_, err := ParsePluginArgs(&runtime.Unknown{Raw: c.Args})
				own = err == nil
				if err != nil {
					t.Errorf("profile %s: %v", p.SchedulerName, err)
				}
			}
		}
		if !fit || !own {
			t.Errorf("profile %s: NodeResourcesFit ignoring both markers %v, ShareWarden args %v", p.SchedulerName, fit, own)
		}
	}
}
