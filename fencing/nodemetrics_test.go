package fencing

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	crfake "sigs.k8s.io/controller-runtime/pkg/client/fake"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

func TestNodeCollector(t *testing.T) {
	fenced := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "dead", Labels: map[string]string{swv1.LabelNodeFenced: swv1.FencedTrue}}}
	healthy := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "alive"}}
	c := crfake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(fenced, healthy).Build()
	elected := make(chan struct{})
	col := NewNodeCollector(c, elected)
	if n := testutil.CollectAndCount(col, "sharewarden_node_fenced"); n != 0 {
		t.Errorf("a replica that does not lead exported %d series", n)
	}
	close(elected)
	want := `
# HELP sharewarden_node_fenced 1 for each node fenced as a whole (labelled sharewarden.io/fenced=true): no ShareWarden server or consumer is placed there until it has been Ready for the settle period.
# TYPE sharewarden_node_fenced gauge
sharewarden_node_fenced{node="dead"} 1
`
	if err := testutil.CollectAndCompare(col, strings.NewReader(want), "sharewarden_node_fenced"); err != nil {
		t.Error(err)
	}
}
