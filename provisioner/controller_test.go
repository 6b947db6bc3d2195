package provisioner

import (
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/event"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

func TestLeaseChangedIgnoresRenewals(t *testing.T) {
	l := func(holder string, renew int64, fenced string) *coordinationv1.Lease {
		x := &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{RenewTime: ptr.To(metav1.NewMicroTime(metav1.Unix(renew, 0).Time))}}
		if holder != "" {
			x.Spec.HolderIdentity = ptr.To(holder)
		}
		if fenced != "" {
			x.Annotations = map[string]string{swv1.AnnotationFencedHolder: fenced}
		}
		return x
	}
	p := leaseChanged()
	for _, tc := range []struct {
		name     string
		old, new *coordinationv1.Lease
		want     bool
	}{
		{"renewal", l("a", 1, ""), l("a", 3, ""), false},
		{"new holder", l("a", 1, ""), l("b", 3, ""), true},
		{"fenced", l("a", 1, ""), l("", 1, "a"), true},
		{"released after a clean stop", l("a", 1, ""), l("", 1, ""), true},
	} {
		if got := p.Update(event.UpdateEvent{ObjectOld: tc.old, ObjectNew: tc.new}); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
