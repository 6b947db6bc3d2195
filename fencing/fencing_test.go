package fencing

import (
	"context"
	"errors"
	"fmt"
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
	"k8s.io/utils/clock"
	testingclock "k8s.io/utils/clock/testing"
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

// The holders of these tests renew every R and stop D - M after their last renewal sent.
const (
	testRenew  = 200 * time.Millisecond
	testBudget = 2*time.Second - 500*time.Millisecond
)

// testClock is a fake clock that counts what a holder asks of it, so that a test moves time
// only once the holder waits for it: acquire's retries (After) and keep's deadline moves
// (Reset), which come once a successful renewal was taken into account.
type testClock struct {
	*testingclock.FakeClock
	afters, resets atomic.Int64
}

func (c *testClock) After(d time.Duration) <-chan time.Time {
	ch := c.FakeClock.After(d)
	c.afters.Add(1)
	return ch
}

func (c *testClock) NewTimer(d time.Duration) clock.Timer {
	return &countedTimer{Timer: c.FakeClock.NewTimer(d), resets: &c.resets}
}

type countedTimer struct {
	clock.Timer
	resets *atomic.Int64
}

func (t *countedTimer) Reset(d time.Duration) bool {
	active := t.Timer.Reset(d)
	t.resets.Add(1)
	return active
}

// newHolder returns a holder of lease sw/sw-vol (D 2s, R 200ms, M 500ms) on a fake clock
// set to t0.
func newHolder(t *testing.T, cs *fake.Clientset, identity string) (*Holder, *testClock) {
	t.Helper()
	h, err := NewHolder(HolderOptions{Enabled: true, Namespace: "sw", Identity: identity,
		Duration: 2 * time.Second, RenewInterval: testRenew, SafetyMargin: 500 * time.Millisecond,
		Labels: map[string]string{"a": "b"}}, cs.CoordinationV1(), "vol")
	if err != nil {
		t.Fatal(err)
	}
	c := &testClock{FakeClock: testingclock.NewFakeClock(t0)}
	h.clock = c
	return h, c
}

// eventually waits (in real time) until cond holds: until the holder's goroutines have done
// what the test's last step of the fake clock let them do.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// waitKeeping waits until keep has armed its deadline and its renewal ticker.
func waitKeeping(t *testing.T, c *testClock) {
	t.Helper()
	eventually(t, "the renewal loop's timer and ticker", func() bool { return c.Waiters() == 2 })
}

// renewOnce steps c to the next renewal and waits until it moved the deadline: the nth
// successful renewal since the holder started serving.
func renewOnce(t *testing.T, c *testClock, n int) {
	t.Helper()
	c.Step(testRenew)
	eventually(t, fmt.Sprintf("renewal %d taken into account", n), func() bool { return c.resets.Load() == int64(n) })
}

// getLease reads lease sw/sw-vol.
func getLease(t *testing.T, cs *fake.Clientset) *coordinationv1.Lease {
	t.Helper()
	l, err := cs.CoordinationV1().Leases("sw").Get(context.Background(), "sw-vol", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestHolderServesOnlyWhileRenewing: a holder takes a free lease, keeps it while renewals
// succeed, each moving its deadline, and ends its serving context exactly D - M after the last
// renewal it sent once renewals fail.
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
	h, c := newHolder(t, cs, "p_1")
	h.Metrics = NewHolderMetrics(prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serving, err := h.Gate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l := getLease(t, cs)
	if ptr.Deref(l.Spec.HolderIdentity, "") != "p_1" || l.Labels["a"] != "b" || l.Labels["sharewarden.io/volume"] != "vol" || !l.Spec.RenewTime.Time.Equal(t0) {
		t.Fatalf("lease after acquire: %+v", l)
	}
	waitKeeping(t, c)
	// Ten renewals span 2s, past the first deadline (D - M = 1.5s): each successful one
	// moved it.
	const renewals = 10
	for i := 1; i <= renewals; i++ {
		renewOnce(t, c, i)
		if l := getLease(t, cs); !l.Spec.RenewTime.Time.Equal(c.Now()) {
			t.Fatalf("renewal %d: renewTime %s, want %s", i, l.Spec.RenewTime, c.Now())
		}
		if serving.Err() != nil {
			t.Fatalf("stopped serving after %d successful renewals: %v", i, context.Cause(serving))
		}
	}
	if n := histogramCount(t, h.Metrics.renewals); n != renewals {
		t.Errorf("%d renewals timed, want %d", n, renewals)
	}
	if f := testutil.ToFloat64(h.Metrics.failures); f != 0 {
		t.Errorf("%v renewal failures while the apiserver answers", f)
	}

	// The apiserver becomes unreachable: renewals fail, and none moves the deadline.
	unreachable.Store(true)
	lastSent := c.Now()
	c.Step(testRenew)
	eventually(t, "a failed renewal counted", func() bool { return testutil.ToFloat64(h.Metrics.failures) == 1 })
	c.Step(testBudget - testRenew - time.Millisecond)
	if serving.Err() != nil {
		t.Fatalf("stopped serving %s after the last renewal sent, before D - M: %v", c.Since(lastSent), context.Cause(serving))
	}
	c.Step(time.Millisecond)
	select {
	case <-serving.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("still serving %s after the last renewal sent (D - M = %s)", c.Since(lastSent), testBudget)
	}
	if c := context.Cause(serving); !errors.Is(c, ErrLeaseLost) || !strings.Contains(c.Error(), "1.5s") {
		t.Errorf("cause %v, want ErrLeaseLost after 1.5s", c)
	}
	if got := c.resets.Load(); got != renewals {
		t.Errorf("the deadline moved %d times, want %d: a failed renewal moved it", got, renewals)
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
	h, c := newHolder(t, cs, "new_2")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gated := make(chan error, 1)
	go func() {
		_, err := h.Gate(ctx)
		gated <- err
	}()
	// Step R whenever the holder waits to retry, until it holds the lease.
	var waited time.Duration
	for done, deadline := false, time.Now().Add(10*time.Second); !done; {
		select {
		case err := <-gated:
			if err != nil {
				t.Fatal(err)
			}
			done = true
		default:
			switch {
			case time.Now().After(deadline):
				t.Fatalf("lease not taken after %s of fake time", waited)
			case c.afters.Load() == int64(waited/testRenew)+1:
				c.Step(testRenew)
				waited += testRenew
			default:
				time.Sleep(time.Millisecond)
			}
		}
	}
	if waited != 2*time.Second {
		t.Errorf("took a lease held by another after it stayed unchanged %s, want its 2s duration", waited)
	}
	l := getLease(t, cs)
	if ptr.Deref(l.Spec.HolderIdentity, "") != "new_2" || !l.Spec.AcquireTime.Time.Equal(t0.Add(2*time.Second)) || ptr.Deref(l.Spec.LeaseTransitions, 0) != 1 {
		t.Errorf("lease after the takeover: holder %q acquired %s, %d transitions; want new_2 at t0+2s, 1",
			ptr.Deref(l.Spec.HolderIdentity, ""), l.Spec.AcquireTime, ptr.Deref(l.Spec.LeaseTransitions, 0))
	}

	// Released (as the Fencer does): taken at once.
	cs2 := fake.NewClientset(&coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "sw", Name: "sw-vol", Annotations: map[string]string{swv1.AnnotationFencedHolder: "old_1"}},
		Spec:       coordinationv1.LeaseSpec{LeaseDurationSeconds: ptr.To[int32](2)},
	})
	h2, c2 := newHolder(t, cs2, "new_3")
	if _, err := h2.Gate(ctx); err != nil {
		t.Fatal(err)
	}
	if n := c2.afters.Load(); n != 0 {
		t.Errorf("waited %d times for a lease the Fencer had released", n)
	}
	if _, ok := getLease(t, cs2).Annotations[swv1.AnnotationFencedHolder]; ok {
		t.Error("the new holder left the fencing annotations on the lease")
	}
}

// TestHolderLosesToATakeover: when someone else holds the lease at renewal, serving ends at
// once, long before the deadline.
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
	h, c := newHolder(t, cs, "p_1")
	h.Metrics = NewHolderMetrics(prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serving, err := h.Gate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitKeeping(t, c)
	takenOver.Store(true)
	c.Step(testRenew) // one renewal, D - M still 1.3s away
	select {
	case <-serving.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("kept serving after another holder took the lease")
	}
	if c := context.Cause(serving); !errors.Is(c, ErrLeaseLost) || !strings.Contains(c.Error(), "other_9") {
		t.Errorf("cause %v", c)
	}
	if f := testutil.ToFloat64(h.Metrics.failures); f != 1 {
		t.Errorf("%v renewal failures counted, want the one that found the takeover", f)
	}
}

// TestHolderRetakesADeletedLease: a lease deleted under a live holder is created again by it,
// and the holder keeps serving and renewing the new lease.
func TestHolderRetakesADeletedLease(t *testing.T) {
	cs := fake.NewClientset()
	h, c := newHolder(t, cs, "p_1")
	h.Metrics = NewHolderMetrics(prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serving, err := h.Gate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitKeeping(t, c)
	if err := cs.CoordinationV1().Leases("sw").Delete(ctx, "sw-vol", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	renewOnce(t, c, 1)
	l := getLease(t, cs)
	if ptr.Deref(l.Spec.HolderIdentity, "") != "p_1" || l.Labels["sharewarden.io/volume"] != "vol" || !l.Spec.RenewTime.Time.Equal(c.Now()) {
		t.Fatalf("lease not retaken by its holder: %+v", l)
	}
	// Past D - M: renewals go on against the new lease.
	for i := 2; i <= 12; i++ {
		renewOnce(t, c, i)
		if l := getLease(t, cs); !l.Spec.RenewTime.Time.Equal(c.Now()) {
			t.Fatalf("renewal %d: renewTime %s, want %s", i, l.Spec.RenewTime, c.Now())
		}
	}
	if serving.Err() != nil {
		t.Fatalf("stopped serving after the lease was deleted: %v", context.Cause(serving))
	}
	if f := testutil.ToFloat64(h.Metrics.failures); f != 0 {
		t.Errorf("%v renewal failures counted for a recreated lease", f)
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
