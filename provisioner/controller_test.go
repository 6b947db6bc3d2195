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

func TestViewChangedIgnoresStatusWrites(t *testing.T) {
	base := func() *swv1.SharedVolume {
		return &swv1.SharedVolume{
			ObjectMeta: metav1.ObjectMeta{Name: "v", Namespace: "ns", Generation: 1, ResourceVersion: "10",
				Labels: map[string]string{"a": "1"}, Annotations: map[string]string{"b": "2"}, Finalizers: []string{swv1.Finalizer}},
			Status: swv1.SharedVolumeStatus{Phase: swv1.PhasePending},
		}
	}
	p := viewChanged()
	for _, tc := range []struct {
		name   string
		change func(*swv1.SharedVolume)
		want   bool
	}{
		{"status written", func(sv *swv1.SharedVolume) { sv.Status.Phase = swv1.PhaseReady; sv.ResourceVersion = "11" }, false},
		{"nothing but the resource version", func(sv *swv1.SharedVolume) { sv.ResourceVersion = "11" }, false},
		{"spec changed", func(sv *swv1.SharedVolume) { sv.Generation = 2 }, true},
		{"label changed", func(sv *swv1.SharedVolume) { sv.Labels["a"] = "3" }, true},
		{"annotation added", func(sv *swv1.SharedVolume) { sv.Annotations["c"] = "4" }, true},
		{"finalizer removed", func(sv *swv1.SharedVolume) { sv.Finalizers = nil }, true},
		{"owner set", func(sv *swv1.SharedVolume) {
			sv.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "PersistentVolumeClaim", Name: "c", UID: "u"}}
		}, true},
		{"deletion marked", func(sv *swv1.SharedVolume) { sv.DeletionTimestamp = ptr.To(metav1.Now()) }, true},
	} {
		old, cur := base(), base()
		tc.change(cur)
		if got := p.Update(event.UpdateEvent{ObjectOld: old, ObjectNew: cur}); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if !p.Create(event.CreateEvent{Object: base()}) || !p.Delete(event.DeleteEvent{Object: base()}) {
		t.Error("creations and deletions must pass")
	}
}
