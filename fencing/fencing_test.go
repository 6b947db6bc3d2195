package fencing

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crfake "sigs.k8s.io/controller-runtime/pkg/client/fake"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

func lease(holder string, seconds int32) *coordinationv1.Lease {
	l := &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{LeaseDurationSeconds: ptr.To(seconds)}}
	if holder != "" {
		l.Spec.HolderIdentity = ptr.To(holder)
	}
	return l
}

func TestVerdict(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		lease    *coordinationv1.Lease
		seenAgo  time.Duration
		margin   time.Duration
		wantWait time.Duration
		wantHold string
	}{
		{"free lease: nothing to fence", lease("", 10), time.Hour, 2 * time.Second, 0, ""},
		{"just renewed", lease("p_1", 10), 0, 2 * time.Second, 12 * time.Second, "p_1"},
		{"expired, margin not passed", lease("p_1", 10), 11 * time.Second, 2 * time.Second, time.Second, "p_1"},
		{"expired and margin passed", lease("p_1", 10), 12 * time.Second, 2 * time.Second, 0, "p_1"},
		{"long gone", lease("p_1", 10), time.Minute, 2 * time.Second, -48 * time.Second, "p_1"},
		{"no duration: the default, as a holder reads it", lease("p_1", 0), 0, 2 * time.Second, DefaultLeaseDuration + 2*time.Second, "p_1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			holder, wait := Verdict(tc.lease, t0, t0.Add(tc.seenAgo), tc.margin)
			if holder != tc.wantHold || wait != tc.wantWait {
				t.Errorf("got (%q, %s), want (%q, %s)", holder, wait, tc.wantHold, tc.wantWait)
			}
		})
	}
}

func TestParseHolder(t *testing.T) {
	pod, uid := ParseHolder("sw-abc_1234-5678")
	if pod != "sw-abc" || uid != "1234-5678" {
		t.Errorf("got %q %q", pod, uid)
	}
	if pod, uid := ParseHolder("no-uid"); pod != "no-uid" || uid != "" {
		t.Errorf("got %q %q", pod, uid)
	}
}

func TestUnfenceable(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 10, 0, 0, time.UTC)
	node := func(ready corev1.ConditionStatus, since time.Duration) *corev1.Node {
		return &corev1.Node{Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: ready, LastTransitionTime: metav1.NewTime(now.Add(-since)),
		}}}}
	}
	for _, tc := range []struct {
		name     string
		node     *corev1.Node
		fenced   time.Duration // ago; 0 = unknown
		ok       bool
		wantWait time.Duration
	}{
		{"not ready", node(corev1.ConditionUnknown, time.Hour), 0, false, 0},
		{"ready long enough", node(corev1.ConditionTrue, 2*time.Minute), 0, true, 0},
		{"ready, settling", node(corev1.ConditionTrue, 20*time.Second), 0, false, 40 * time.Second},
		// A dead node stays Ready in the API for a while: the settle counts from the fencing.
		{"still Ready in the API after dying", node(corev1.ConditionTrue, time.Hour), 5 * time.Second, false, 55 * time.Second},
		{"fenced long ago, ready since", node(corev1.ConditionTrue, 90*time.Second), 5 * time.Minute, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fencedAt time.Time
			if tc.fenced > 0 {
				fencedAt = now.Add(-tc.fenced)
			}
			ok, wait := Unfenceable(tc.node, fencedAt, now, time.Minute)
			if ok != tc.ok || wait != tc.wantWait {
				t.Errorf("got (%v, %s), want (%v, %s)", ok, wait, tc.ok, tc.wantWait)
			}
		})
	}
}

func TestHolderOptionsValidate(t *testing.T) {
	good := HolderOptions{Enabled: true, Namespace: "ns", Identity: "p_1", Duration: 10 * time.Second, RenewInterval: 2 * time.Second, SafetyMargin: 3 * time.Second}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*HolderOptions){
		"no namespace":           func(o *HolderOptions) { o.Namespace = "" },
		"no identity":            func(o *HolderOptions) { o.Identity = "" },
		"fractional duration":    func(o *HolderOptions) { o.Duration = 2500 * time.Millisecond },
		"margin eats duration":   func(o *HolderOptions) { o.SafetyMargin = 10 * time.Second },
		"renew too slow to miss": func(o *HolderOptions) { o.RenewInterval = 4 * time.Second },
	} {
		o := good
		mut(&o)
		if err := o.Validate(); err == nil {
			t.Errorf("%s: accepted %+v", name, o)
		}
	}
	off := HolderOptions{}
	if err := off.Validate(); err != nil {
		t.Errorf("self-fencing off needs nothing else: %v", err)
	}
}

func newHolder(t *testing.T, cs *fake.Clientset, identity string) *Holder {
	t.Helper()
	h, err := NewHolder(HolderOptions{Enabled: true, Namespace: "sw", Identity: identity,
		Duration: 2 * time.Second, RenewInterval: 200 * time.Millisecond, SafetyMargin: 500 * time.Millisecond,
		Labels: map[string]string{"a": "b"}}, cs.CoordinationV1(), "vol")
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestHolderServesOnlyWhileRenewing: a holder takes a free lease, keeps it while renewals
// succeed, and ends its serving context once renewals fail for D - M.
func TestHolderServesOnlyWhileRenewing(t *testing.T) {
	cs := fake.NewClientset()
	// The cut is armed later; the reactor is installed now, before the holder's goroutine
	// reads the reactor chain (the fake does not guard it against concurrent changes).
	var unreachable atomic.Bool
	cs.PrependReactor("*", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if unreachable.Load() {
			return true, nil, errors.New("connection refused")
		}
		return false, nil, nil
	})
	h := newHolder(t, cs, "p_1")
	h.Metrics = NewHolderMetrics(prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serving, err := h.Gate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l, err := cs.CoordinationV1().Leases("sw").Get(ctx, "sw-vol", metav1.GetOptions{})
	if err != nil || ptr.Deref(l.Spec.HolderIdentity, "") != "p_1" || l.Labels["a"] != "b" || l.Labels["sharewarden.io/volume"] != "vol" {
		t.Fatalf("lease after acquire: %+v, %v", l, err)
	}
	time.Sleep(700 * time.Millisecond) // several renewals, all successful
	if serving.Err() != nil {
		t.Fatalf("stopped serving while renewals succeed: %v", context.Cause(serving))
	}
	if histogramCount(t, h.Metrics.renewals) == 0 {
		t.Error("successful renewals were not timed")
	}
	if f := testutil.ToFloat64(h.Metrics.failures); f != 0 {
		t.Errorf("%v renewal failures while the apiserver answers", f)
	}
	// The apiserver becomes unreachable.
	unreachable.Store(true)
	cut := time.Now()
	select {
	case <-serving.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("still serving 5s after renewals started failing")
	}
	if !errors.Is(context.Cause(serving), ErrLeaseLost) {
		t.Errorf("cause %v, want ErrLeaseLost", context.Cause(serving))
	}
	t.Logf("stopped %s after the cut (budget D-M = 1.5s from the last renewal sent)", time.Since(cut))
	if f := testutil.ToFloat64(h.Metrics.failures); f == 0 {
		t.Error("renewals failed until the lease was lost, but no failure was counted")
	}
}

func histogramCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	m := &dto.Metric{}
	if err := h.Write(m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// TestHolderWaitsForAnotherHolder: a lease held by someone else is taken only after it stayed
// unchanged for a full lease duration, or at once once released.
func TestHolderWaitsForAnotherHolder(t *testing.T) {
	cs := fake.NewClientset(&coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "sw", Name: "sw-vol", ResourceVersion: "1"},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("old_1"), LeaseDurationSeconds: ptr.To[int32](2)},
	})
	h := newHolder(t, cs, "new_2")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := h.Gate(ctx); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 2*time.Second {
		t.Errorf("took a live-looking lease after %s, before its 2s duration", waited)
	}

	// Released (as the Fencer does): taken at once.
	cs2 := fake.NewClientset(&coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "sw", Name: "sw-vol", Annotations: map[string]string{swv1.AnnotationFencedHolder: "old_1"}},
		Spec:       coordinationv1.LeaseSpec{LeaseDurationSeconds: ptr.To[int32](2)},
	})
	h2 := newHolder(t, cs2, "new_3")
	start = time.Now()
	if _, err := h2.Gate(ctx); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited >= 2*time.Second {
		t.Errorf("waited out the lease duration (%s) for a lease the Fencer had released", waited)
	}
	l, _ := cs2.CoordinationV1().Leases("sw").Get(ctx, "sw-vol", metav1.GetOptions{})
	if _, ok := l.Annotations[swv1.AnnotationFencedHolder]; ok {
		t.Error("the new holder left the fencing annotations on the lease")
	}
}

// TestHolderLosesToATakeover: when someone else holds the lease at renewal, serving ends at once.
func TestHolderLosesToATakeover(t *testing.T) {
	cs := fake.NewClientset()
	// The takeover's reactors are in place before the holder runs (the fake's reactor chain
	// must not change while the holder's renewals read it) and act once it serves.
	var takenOver atomic.Bool
	cs.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if !takenOver.Load() {
			return false, nil, nil
		}
		return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, "sw-vol", errors.New("changed"))
	})
	cs.PrependReactor("get", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if !takenOver.Load() {
			return false, nil, nil
		}
		return true, lease("other_9", 2), nil
	})
	h := newHolder(t, cs, "p_1")
	h.Metrics = NewHolderMetrics(prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serving, err := h.Gate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	takenOver.Store(true)
	select {
	case <-serving.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("kept serving after another holder took the lease")
	}
	if c := context.Cause(serving); !errors.Is(c, ErrLeaseLost) || !strings.Contains(c.Error(), "other_9") {
		t.Errorf("cause %v", c)
	}
}

// TestHolderRetakesADeletedLease: a lease deleted under a live holder is created again by it,
// and the holder keeps serving; a second holder then waits as for any held lease.
func TestHolderRetakesADeletedLease(t *testing.T) {
	cs := fake.NewClientset()
	h := newHolder(t, cs, "p_1")
	h.Metrics = NewHolderMetrics(prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serving, err := h.Gate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.CoordinationV1().Leases("sw").Delete(ctx, "sw-vol", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var l *coordinationv1.Lease
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if l, err = cs.CoordinationV1().Leases("sw").Get(ctx, "sw-vol", metav1.GetOptions{}); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || ptr.Deref(l.Spec.HolderIdentity, "") != "p_1" || l.Labels["sharewarden.io/volume"] != "vol" {
		t.Fatalf("lease not retaken by its holder: %+v, %v", l, err)
	}
	time.Sleep(2 * time.Second) // past D - M: renewals go on against the new lease
	if serving.Err() != nil {
		t.Fatalf("stopped serving after the lease was deleted: %v", context.Cause(serving))
	}
}

// TestLeaseFor: the lease the controller recreates names the running pod as holder, so the
// Fencer judges it like the one deleted.
func TestLeaseFor(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "sw", Name: "sw-vol", UID: "u-1", Labels: map[string]string{swv1.LabelVolume: "vol"}}}
	now := time.Now()
	l := LeaseFor(pod, map[string]string{"a": "b"}, 0, now)
	holder, wait := Verdict(l, now, now, time.Second)
	if l.Name != "sw-vol" || l.Namespace != "sw" || holder != "sw-vol_u-1" || l.Labels["a"] != "b" || l.Labels[swv1.LabelComponent] != swv1.ComponentNFSServer {
		t.Errorf("lease %+v", l)
	}
	if want := DefaultHolderOptions().Duration + time.Second; wait != want {
		t.Errorf("a fresh lease is judged after %s, want the default duration plus margin %s", wait, want)
	}
	if p, uid := ParseHolder(holder); p != pod.Name || uid != pod.UID {
		t.Errorf("holder %q parses to %s %s", holder, p, uid)
	}
}

// TestFencerFinishesAnInterruptedFencing: a controller stopped right after releasing a stopped
// holder's lease left the old pod and its attachment; the next one finishes the job from the
// released lease alone.
func TestFencerFinishesAnInterruptedFencing(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "sw", Name: "sw-vol", UID: "u-1"}, Spec: corev1.PodSpec{NodeName: "dead"}}
	backing := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "sw", Name: "sw-vol"}, Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "pv-1"}}
	va := &storagev1.VolumeAttachment{ObjectMeta: metav1.ObjectMeta{Name: "va-1"}, Spec: storagev1.VolumeAttachmentSpec{
		NodeName: "dead", Attacher: "disk.example.com", Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: ptr.To("pv-1")}}}
	other := &storagev1.VolumeAttachment{ObjectMeta: metav1.ObjectMeta{Name: "va-2"}, Spec: storagev1.VolumeAttachmentSpec{
		NodeName: "alive", Attacher: "disk.example.com", Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: ptr.To("pv-1")}}}
	released := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "sw", Name: "sw-vol", Annotations: map[string]string{
		swv1.AnnotationFencedHolder: "sw-vol_u-1", swv1.AnnotationFencedNode: "dead"}}, Spec: coordinationv1.LeaseSpec{LeaseDurationSeconds: ptr.To[int32](10)}}
	c := crfake.NewClientBuilder().WithScheme(scheme).WithObjects(pod, backing, va, other, released).Build()
	var steps []Step
	f := &Fencer{Client: c, OnStep: func(_ context.Context, s Step, _ types.NamespacedName) { steps = append(steps, s) }}
	if _, err := f.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "sw", Name: "sw-vol"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(pod), &corev1.Pod{}); !apierrors.IsNotFound(err) {
		t.Errorf("the fenced pod is still there: %v", err)
	}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(va), &storagev1.VolumeAttachment{}); !apierrors.IsNotFound(err) {
		t.Errorf("the dead node's attachment is still there: %v", err)
	}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(other), &storagev1.VolumeAttachment{}); err != nil {
		t.Errorf("another node's attachment was touched: %v", err)
	}
	if want := []Step{StepPodDeleted, StepDetached}; !slices.Equal(steps, want) {
		t.Errorf("steps %v, want %v", steps, want)
	}
	// A replacement pod of the same name is another holder: never deleted for the old one.
	repl := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "sw", Name: "sw-vol", UID: "u-2"}}
	if err := c.Create(context.Background(), repl); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "sw", Name: "sw-vol"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(repl), &corev1.Pod{}); err != nil {
		t.Errorf("the replacement was deleted for the old holder: %v", err)
	}
}
