package provisioner

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crfake "sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

func TestVolumeCollector(t *testing.T) {
	scheme, err := Scheme()
	if err != nil {
		t.Fatal(err)
	}
	ready := &swv1.SharedVolume{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "data"},
		Spec:       swv1.SharedVolumeSpec{ClaimName: "data", ClaimUID: "uid-1", BackingStorageClass: "local"},
		Status: swv1.SharedVolumeStatus{
			Phase: swv1.PhaseReady, ServiceIP: "10.96.0.9", ConsumerCount: 3, FailoverCount: 2,
			Server:      swv1.ServerStatus{Pod: &swv1.ObjectRef{Namespace: "sw", Name: "sw-uid-1"}, NodeName: "node-b", Ready: true},
			FencedNodes: []string{"node-a"},
		},
	}
	fresh := &swv1.SharedVolume{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-b", Name: "logs"},
		Spec:       swv1.SharedVolumeSpec{ClaimName: "logs", ClaimUID: "uid-2"},
	}
	c := crfake.NewClientBuilder().WithScheme(scheme).WithObjects(ready, fresh).Build()
	elected := make(chan struct{})
	col := NewVolumeCollector(c, elected)

	if n := testutil.CollectAndCount(col, "sharewarden_volume_phase"); n != 0 {
		t.Errorf("a replica that does not lead exported %d phase series, want none", n)
	}
	close(elected)
	want := `
# HELP sharewarden_volume_consumers Running pods that mount the volume's claim (status.consumerCount).
# TYPE sharewarden_volume_consumers gauge
sharewarden_volume_consumers{claim_name="data",claim_namespace="team-a",volume="uid-1"} 3
sharewarden_volume_consumers{claim_name="logs",claim_namespace="team-b",volume="uid-2"} 0
# HELP sharewarden_volume_failovers_total Failovers of the volume, completed and running (status.failoverCount).
# TYPE sharewarden_volume_failovers_total counter
sharewarden_volume_failovers_total{claim_name="data",claim_namespace="team-a",volume="uid-1"} 2
sharewarden_volume_failovers_total{claim_name="logs",claim_namespace="team-b",volume="uid-2"} 0
# HELP sharewarden_volume_fenced_nodes Nodes the volume's servers were fenced off that are not unfenced yet (status.fencedNodes).
# TYPE sharewarden_volume_fenced_nodes gauge
sharewarden_volume_fenced_nodes{claim_name="data",claim_namespace="team-a",volume="uid-1"} 1
sharewarden_volume_fenced_nodes{claim_name="logs",claim_namespace="team-b",volume="uid-2"} 0
# HELP sharewarden_volume_info Where a volume is served: its server's node and pod, the Service IP clients mount, and the backing storage class; always 1.
# TYPE sharewarden_volume_info gauge
sharewarden_volume_info{backing_storage_class="",claim_name="logs",claim_namespace="team-b",server_node="",server_pod="",service_ip="",volume="uid-2"} 1
sharewarden_volume_info{backing_storage_class="local",claim_name="data",claim_namespace="team-a",server_node="node-b",server_pod="sw-uid-1",service_ip="10.96.0.9",volume="uid-1"} 1
`
	if err := testutil.CollectAndCompare(col, strings.NewReader(want), "sharewarden_volume_consumers", "sharewarden_volume_failovers_total",
		"sharewarden_volume_fenced_nodes", "sharewarden_volume_info"); err != nil {
		t.Error(err)
	}
	// One phase series per phase and volume, exactly one of them 1; no phase yet counts as Pending.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(col)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	current := map[string]string{}
	for _, mf := range mfs {
		if mf.GetName() != "sharewarden_volume_phase" {
			continue
		}
		if len(mf.GetMetric()) != 2*len(Phases) {
			t.Errorf("%d phase series, want %d", len(mf.GetMetric()), 2*len(Phases))
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if m.GetGauge().GetValue() == 1 {
				if prev, ok := current[l["volume"]]; ok {
					t.Errorf("volume %s is in phases %s and %s", l["volume"], prev, l["phase"])
				}
				current[l["volume"]] = l["phase"]
			}
		}
	}
	if current["uid-1"] != "Ready" || current["uid-2"] != "Pending" {
		t.Errorf("current phases %v, want uid-1 Ready and uid-2 Pending", current)
	}

	// A cache that cannot list leaves the series out and counts the failure.
	broken := crfake.NewClientBuilder().WithScheme(scheme).WithInterceptorFuncs(interceptor.Funcs{
		List: func(context.Context, client.WithWatch, client.ObjectList, ...client.ListOption) error {
			return errors.New("cache not synced")
		},
	}).Build()
	bcol := NewVolumeCollector(broken, elected)
	if n := testutil.CollectAndCount(bcol, "sharewarden_volume_phase"); n != 0 {
		t.Errorf("%d phase series from a failed list", n)
	}
	if got := bcol.Errors(); got != 1 {
		t.Errorf("collect errors %v, want 1", got)
	}
}
