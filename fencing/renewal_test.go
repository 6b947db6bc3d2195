package fencing

import (
	"context"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	crfake "sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

func leaseAt(rv, holder string, annotations map[string]string) *coordinationv1.Lease {
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: leaseKey.Namespace, Name: leaseKey.Name, ResourceVersion: rv, Annotations: annotations},
		Spec: coordinationv1.LeaseSpec{LeaseDurationSeconds: ptr.To[int32](10)}}
	if holder != "" {
		l.Spec.HolderIdentity = ptr.To(holder)
	}
	return l
}

func TestIsRenewal(t *testing.T) {
	fenced := map[string]string{swv1.AnnotationFencedHolder: "a_1", swv1.AnnotationFencedNode: "n1"}
	for _, tc := range []struct {
		name     string
		old, cur *coordinationv1.Lease
		want     bool
	}{
		{"same holder, new renewTime", leaseAt("1", "a_1", nil), leaseAt("2", "a_1", nil), true},
		{"new holder", leaseAt("1", "a_1", nil), leaseAt("2", "b_2", nil), false},
		{"taken from nobody", leaseAt("1", "", nil), leaseAt("2", "a_1", nil), false},
		{"released", leaseAt("1", "a_1", nil), leaseAt("2", "", nil), false},
		{"released by the Fencer", leaseAt("1", "a_1", nil), leaseAt("2", "", fenced), false},
		{"fencing annotations cleared by the new holder", leaseAt("1", "a_1", fenced), leaseAt("2", "a_1", nil), false},
		{"fenced node changed", leaseAt("1", "a_1", fenced), leaseAt("2", "a_1", map[string]string{swv1.AnnotationFencedHolder: "a_1", swv1.AnnotationFencedNode: "n2"}), false},
	} {
		if got := IsRenewal(tc.old, tc.cur); got != tc.want {
			t.Errorf("%s: IsRenewal %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A renewal reaches no reconcile: it moves the lease's deadline, whose timer wakes the lease
// once it has stayed unchanged for D plus the margin. Every other change is reconciled at once.
func TestRenewalsOnlyMoveTheDeadline(t *testing.T) {
	wake := make(chan event.GenericEvent, 1)
	done := make(chan struct{})
	defer close(done)
	f := &Fencer{Client: crfake.NewClientBuilder().WithScheme(testScheme(t)).Build(), Wake: wake, Done: done, Config: FencerConfig{Margin: 200 * time.Millisecond}}
	h := leaseEvents(f)
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer q.ShutDown()
	ctx := context.Background()

	h.Update(ctx, event.UpdateEvent{ObjectOld: leaseAt("1", "a_1", nil), ObjectNew: leaseAt("2", "a_1", nil)}, q)
	if q.Len() != 0 {
		t.Fatalf("a renewal was queued for a reconcile")
	}
	select {
	case e := <-wake:
		t.Fatalf("woken for %s right after a renewal of a 10 s lease", e.Object.GetName())
	default:
	}

	h.Update(ctx, event.UpdateEvent{ObjectOld: leaseAt("2", "a_1", nil), ObjectNew: leaseAt("3", "b_2", nil)}, q)
	if q.Len() != 1 {
		t.Fatalf("a new holder was not queued (queue length %d)", q.Len())
	}

	// A 1 s lease renewed once and then no more is woken for a reconcile (which decides).
	short := leaseAt("4", "b_2", nil)
	short.Spec.LeaseDurationSeconds = ptr.To[int32](1)
	h.Update(ctx, event.UpdateEvent{ObjectOld: leaseAt("3", "b_2", nil), ObjectNew: short}, q)
	select {
	case e := <-wake:
		if e.Object.GetName() != leaseKey.Name || e.Object.GetNamespace() != leaseKey.Namespace {
			t.Errorf("woken for %s/%s", e.Object.GetNamespace(), e.Object.GetName())
		}
	case <-time.After(time.Minute):
		t.Fatal("never woken at the deadline")
	}
}

// Reconcile itself arms the deadline instead of asking for a requeue when it can, so a
// lease whose holder keeps renewing is never reconciled again.
func TestReconcileArmsTheDeadline(t *testing.T) {
	c := crfake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(fencingWorld()...).Build()
	wake := make(chan event.GenericEvent, 1)
	done := make(chan struct{})
	defer close(done)
	f := &Fencer{Client: c, Wake: wake, Done: done, Config: FencerConfig{Margin: 2 * time.Second}}
	res, err := f.Reconcile(context.Background(), ctrl.Request{NamespacedName: leaseKey})
	if err != nil || !res.IsZero() {
		t.Fatalf("got %+v, %v; want no requeue, the deadline timer armed", res, err)
	}
	f.mu.Lock()
	armed := f.seen[leaseKey] != nil && f.seen[leaseKey].deadline != nil
	f.mu.Unlock()
	if !armed {
		t.Fatal("no deadline armed for a held lease")
	}
	f.forget(leaseKey)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) != 0 {
		t.Errorf("a forgotten lease is still watched: %v", f.seen)
	}
}
